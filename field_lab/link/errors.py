"""Exceptions raised by field_lab.link.

    LinkError
    ├── ConfigError          a profile, trace or outage file is invalid (the file's author's fault)
    │   ├── ProfileError       a link profile (built-in name or TOML) is invalid
    │   ├── TraceError         a Mahimahi delivery-opportunity trace is malformed
    │   └── OutageFileError    a scripted outage schedule is malformed
    ├── UsageError           the caller misused the core (time ran backwards, unknown stream)
    └── LinkBroken           the emulated link dropped a connection (the radio's fault)
        └── LinkReset          a long outage reset the connection (also a ConnectionResetError)

Every one is a `field_lab.errors.FieldLabError`; config errors are also its `ConfigError`.
Config errors carry `where` (file and line or key) so a user can fix the exact spot; every one is
also a ValueError so argument parsers and callers that catch ValueError keep working.
"""

from __future__ import annotations

from field_lab import errors
from field_lab.errors import FieldLabError


class LinkError(FieldLabError):
    """Root of field_lab.link's errors."""


class ConfigError(LinkError, errors.ConfigError):
    """A configuration input is invalid; `where` names the file/line/key to fix."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


class ProfileError(ConfigError):
    """A link profile is invalid (unknown name, bad TOML, a value out of range)."""


class TraceError(ConfigError):
    """A Mahimahi trace is malformed (not an integer, decreasing, empty, zero-length period)."""


class OutageFileError(ConfigError):
    """A scripted outage schedule is malformed (bad TOML, negative or overlapping outages)."""


class UsageError(LinkError, ValueError):
    """The caller misused the link core: `now` went backwards, or a stream id is unknown."""


class LinkBroken(LinkError):
    """The emulated link broke a connection; nothing the caller did wrong."""


class LinkReset(LinkBroken, ConnectionResetError):
    """An outage outlasted the profile's reset threshold, so open connections were reset."""
