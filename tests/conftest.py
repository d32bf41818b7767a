"""Shared test configuration: Hypothesis profiles.

`default` is fast for local runs, `ci` is what `.ci/run` selects, and `thorough` is for
deliberate hunts (`HYPOTHESIS_PROFILE=thorough make unit`).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=50, deadline=None)
settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
