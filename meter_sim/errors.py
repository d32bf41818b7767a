"""Exceptions raised by meter_sim.

    MeterError
    ├── ConfigError        the caller built a meter with bad parameters (caller's fault)
    ├── ClockError         the caller moved the device clock backwards (caller's fault)
    ├── EncodeError        a keycode was asked for that its protocol cannot carry (caller's fault)
    └── NVError
        └── CorruptStateError   the stored image failed its CRC or layout checks (storage's fault)

Keypad input never raises: any key sequence gets an outcome. These errors are for misuse of
the API and for storage, the two places where the fault is not the person at the keypad.
"""

from __future__ import annotations


class MeterError(Exception):
    """Root of meter_sim's errors."""


class ConfigError(MeterError, ValueError):
    """A meter was configured with values no device could have; fix the arguments."""


class ClockError(MeterError, ValueError):
    """`now` went backwards; the device clock is monotonic, so the caller must not rewind it."""


class EncodeError(MeterError, ValueError):
    """A keycode was asked for with values its protocol cannot carry; fix the arguments."""


class NVError(MeterError):
    """Non-volatile storage could not be read or written."""


class CorruptStateError(NVError):
    """A stored state image is corrupt (bad CRC, length or layout); factory defaults apply."""
