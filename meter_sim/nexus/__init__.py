"""Angaza Nexus keycode validation as the device firmware does it (full and small protocols).

Pure functions: each takes a finished frame, the device key, the Nexus NV state and the PAYG
state, and returns a `Decision` (outcome, new state, at most one credit action, reason).
"""

from __future__ import annotations

from meter_sim.nexus.full import process_full
from meter_sim.nexus.small import process_small
from meter_sim.nexus.state import (
    NexusState,
    infer_id,
    is_set,
    mask_below,
    set_flag,
    used_ids,
    window_bounds,
    wipe_ids,
)

__all__ = [
    "NexusState",
    "infer_id",
    "is_set",
    "mask_below",
    "process_full",
    "process_small",
    "set_flag",
    "used_ids",
    "window_bounds",
    "wipe_ids",
]
