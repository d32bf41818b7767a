"""Errors of the test fixtures, by whose fault they are.

FieldLabError
├── ConfigError
│   └── FixtureError     a fixture was asked for what it cannot be: a bad marker argument,
│                        command-line option or device serial (the test author's to fix)
└── DutError             the device under test could not be reached or talked to
    ├── DutUnreachable     no connection, or it broke (also a ConnectionError)
    └── DutTimeout         `expect` saw no match in time (also a TimeoutError)
"""

from __future__ import annotations

from field_lab.errors import ConfigError, FieldLabError


class FixtureError(ConfigError):
    """A payg fixture was configured wrongly; the message names the marker, option or value."""


class DutError(FieldLabError):
    """Talking to the device under test failed."""


class DutUnreachable(DutError, ConnectionError):
    """The device could not be opened, or its connection broke."""


class DutTimeout(DutError, TimeoutError):
    """The device did not say what was expected in time; the message shows its last lines."""
