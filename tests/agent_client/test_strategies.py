"""The public strategies (`agent_client.strategies`) keep hypothesis a test-only dependency.

That what they draw encodes and decodes is shown where they are used, in test_frames.
"""

from __future__ import annotations

import ast
from pathlib import Path

import agent_client

PACKAGE = Path(agent_client.__file__).parent


def test_only_the_strategies_module_imports_hypothesis() -> None:
    importers = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            if any(name.split(".")[0] == "hypothesis" for name in names):
                importers.add(path.relative_to(PACKAGE).as_posix())
    assert importers == {"strategies.py"}
