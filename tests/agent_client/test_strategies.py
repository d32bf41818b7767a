"""The public strategies (`agent_client.strategies`) keep hypothesis a test-only dependency.

That what they draw encodes and decodes is shown where they are used, in test_frames.
"""

from __future__ import annotations

from pathlib import Path

import agent_client
from tests.imports import imported_roots

PACKAGE = Path(agent_client.__file__).parent


def test_only_the_strategies_module_imports_hypothesis() -> None:
    importers = {m for m, roots in imported_roots(PACKAGE).items() if "hypothesis" in roots}
    assert importers == {"strategies.py"}
