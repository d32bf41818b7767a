"""meter_sim: a PAYG meter that validates keycodes as device firmware does.

It imports nothing else of this project: it stands for the firmware.

    from meter_sim import Meter
    meter = Meter.nexus(secret_key, "full")
    meter.enter_keycode("*747 951 838 274 41#", now=0.0).outcome   # "applied"

Meters answer as the reference firmware does by default (nexus-embedded v2.0.1; OpenPAYGO's
safer device); `Meter.nexus(..., strict=True)` and `Meter.openpaygo(..., preset="c-example")`
are the named alternatives (docs/meter.md has the table).

For tests: `meter_sim.strategies` draws keycode texts and valid add-credit codes (Hypothesis).
"""

from __future__ import annotations

from meter_sim.errors import (
    ClockError,
    ConfigError,
    CorruptStateError,
    EncodeError,
    MeterError,
    NVError,
)
from meter_sim.meter import KeyResult, Meter, Result
from meter_sim.nexus.policy import NexusPolicy, Quirk
from meter_sim.nv import NVStatus
from meter_sim.openpaygo.policy import TokenPolicy, TokenQuirk
from meter_sim.outcomes import KeyFeedback, Outcome, PaygState
from meter_sim.ratelimit import NexusRateLimit, OpenPaygoBlocking
from meter_sim.storage import FileStorage, MemoryStorage, Storage

__all__ = [
    "ClockError",
    "ConfigError",
    "CorruptStateError",
    "EncodeError",
    "FileStorage",
    "KeyFeedback",
    "KeyResult",
    "MemoryStorage",
    "Meter",
    "MeterError",
    "NVError",
    "NVStatus",
    "NexusPolicy",
    "NexusRateLimit",
    "OpenPaygoBlocking",
    "Outcome",
    "PaygState",
    "Quirk",
    "Result",
    "Storage",
    "TokenPolicy",
    "TokenQuirk",
]
