"""The lab's errors, by whose fault they are.

    FieldLabError
    ├── ConfigError     the user's input is wrong (scenario, fixture, link file, CLI): exit 2
    │   └── BudgetError   the machine cannot give the run the file descriptors it needs
    └── HarnessError    the lab itself could not run or could not trust its figures: exit 107
        ├── AuditError    a platform's audit API answered outside the contract
        └── PlatformGone  the platform (or a shard) stopped answering mid-run

A failed check is none of these: it is a verdict about the system under test.
"""

from __future__ import annotations


class FieldLabError(Exception):
    """Root of every error field_lab raises on purpose."""


class ConfigError(FieldLabError, ValueError):
    """A configuration input is invalid; the message names the file, key or flag to fix."""


class HarnessError(FieldLabError, RuntimeError):
    """The lab itself failed (not the system under test's fault); its figures cannot be trusted."""


class AuditError(HarnessError):
    """The platform's audit API refused the lab or answered outside the audit contract."""


class BudgetError(ConfigError):
    """The run needs more file descriptors than this machine lets the process have."""


class PlatformGone(HarnessError):
    """The platform stopped answering during the run, or a shard of the run died."""
