"""meter_sim: a PAYG meter that validates keycodes as device firmware does.

It imports nothing else of this project: it stands for the firmware.
"""

from __future__ import annotations

from meter_sim.errors import ClockError, ConfigError, CorruptStateError, MeterError, NVError
from meter_sim.outcomes import KeyFeedback, Outcome, PaygState

__all__ = [
    "ClockError",
    "ConfigError",
    "CorruptStateError",
    "KeyFeedback",
    "MeterError",
    "NVError",
    "Outcome",
    "PaygState",
]
