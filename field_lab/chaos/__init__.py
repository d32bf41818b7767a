"""Faults, abuse and load: crash the handset and the platform, cut their connections, skew
their clocks, and judge what is left with the lab's own Jepsen-style checkers."""

from __future__ import annotations

from field_lab.errors import HarnessError


class ChaosError(HarnessError):
    """The fault harness itself failed (a process would not start, a run would not settle);
    the system under test is not to blame."""
