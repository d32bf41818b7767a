"""The Nexus keycode NV block 1 (message-id window, QC counts, custom flag) and its window rules.

Both keycode protocols share one receive window of 64 message ids, [pd-23, pd+40]. Only the
24 ids pd-23..pd carry a "received" bit; ids above pd count as unused, ids below pd-23 are
forgotten (a code for such an id is re-inferred to a different id and fails its MAC).
Every helper here is a pure function returning a new `NexusState`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from meter_sim.errors import ConfigError
from meter_sim.frozen import maker

WINDOW_BELOW_PD = 23
"""Ids pd-23..pd have a received bit (NEXUS_KEYCODE_PRO_RECEIVE_WINDOW_BEFORE_PD)."""
WINDOW_ABOVE_PD = 40
"""Ids up to pd+40 are accepted (NEXUS_KEYCODE_PRO_RECEIVE_WINDOW_AFTER_PD)."""
PD_INITIAL = WINDOW_BELOW_PD
"""Factory value of pd, restored by a wipe of the message ids."""
MAX_MESSAGE_ID = 0xFFFF
"""The firmware's flag functions take 16-bit ids; ids above this are never accepted."""
QC_COUNT_MAX = 15
"""Each QC counter is a nibble of the stored qc_counts byte."""

PD_MAX = 0xFFFFFFFF - WINDOW_ABOVE_PD
"""The highest pd a u32 NV field holds with the whole window above it."""
_MASK_BITS = WINDOW_BELOW_PD + 1
_MASK_ALL = (1 << _MASK_BITS) - 1


@dataclass(frozen=True, slots=True)
class NexusState:
    """What the Nexus NV block 1 holds; validated on construction (it may come from storage)."""

    pd: int = PD_INITIAL
    """Pd index: the highest id applied (or masked) since the last wipe, at least 23."""
    received: int = 0
    """24-bit mask, bit (23 - (pd - id)) for ids pd-23..pd."""
    qc_long: int = 0
    """Long (over 10 minutes) factory QC codes applied, 0..15."""
    qc_short: int = 0
    """Short (10 minutes or less) factory QC codes applied, 0..15."""
    restricted: bool = False
    """Custom flag bit 0: set by the product, cleared by keycodes."""

    def __post_init__(self) -> None:
        if not PD_INITIAL <= self.pd <= PD_MAX:
            raise ConfigError(f"Nexus pd must be in 23..2**32-41, got {self.pd}")
        if not 0 <= self.received <= _MASK_ALL:
            raise ConfigError(f"Nexus received mask must fit 24 bits, got {self.received:#x}")
        if not (0 <= self.qc_long <= QC_COUNT_MAX and 0 <= self.qc_short <= QC_COUNT_MAX):
            name, count = ("qc_long", self.qc_long)
            if 0 <= count <= QC_COUNT_MAX:
                name, count = ("qc_short", self.qc_short)
            raise ConfigError(f"Nexus {name} must be in 0..15, got {count}")


_unchecked = maker(NexusState)


def window_bounds(state: NexusState) -> tuple[int, int]:
    """The inclusive range of ids the device accepts now."""
    return state.pd - WINDOW_BELOW_PD, state.pd + WINDOW_ABOVE_PD


def infer_id(state: NexusState, cid: int, bits: int = 6) -> int:
    """The one id in the window whose low `bits` bits equal the transmitted `cid`.

    Full and small codes send `id & 0x3F` (bits=6); the device takes the first window id
    that matches, which is unique because the window is exactly 64 ids wide.
    """
    modulus = 1 << bits
    if not 0 <= cid < modulus:
        raise ValueError(f"transmitted id {cid} does not fit {bits} bits")
    low = state.pd - WINDOW_BELOW_PD
    return low + (cid - low) % modulus


def is_set(state: NexusState, id_: int) -> bool:
    """Whether `id_` is marked received; ids above pd or below the window read as unused."""
    if id_ > state.pd or id_ < state.pd - WINDOW_BELOW_PD:
        return False
    return bool(state.received >> (WINDOW_BELOW_PD - (state.pd - id_)) & 1)


def used_ids(state: NexusState) -> frozenset[int]:
    """Every id currently marked received (for tests, traces and the lead's display)."""
    low = state.pd - WINDOW_BELOW_PD
    return frozenset(low + bit for bit in range(_MASK_BITS) if state.received >> bit & 1)


def _shift_up_to(state: NexusState, id_: int) -> NexusState:
    """Move the window right so that pd >= id_, dropping bits that fall off its low end."""
    if id_ <= state.pd:
        return state
    increment = id_ - state.pd
    received = 0 if increment > WINDOW_BELOW_PD else state.received >> increment
    return replace(state, pd=id_, received=received)


def set_flag(state: NexusState, id_: int) -> NexusState:
    """Mark one id received (ADD), shifting the window first if the id is above pd."""
    if id_ < state.pd - WINDOW_BELOW_PD:
        raise ValueError(f"id {id_} is below the window; it cannot be marked")
    pd, received = state.pd, state.received
    if id_ > pd:  # shift the window right so that pd == id_ (as _shift_up_to, inline: hot)
        increment = id_ - pd
        pd, received = id_, 0 if increment > WINDOW_BELOW_PD else received >> increment
    received |= 1 << (WINDOW_BELOW_PD - (pd - id_))
    if pd > PD_MAX:  # the one check the new state could fail (the mask is in range)
        raise ConfigError(f"Nexus pd must be in 23..2**32-41, got {pd}")
    return _unchecked(pd, received, state.qc_long, state.qc_short, state.restricted)


def mask_below(state: NexusState, bound: int) -> NexusState:
    """Mark every window id below `bound` received (SET, WIPE and extended codes pass id+1).

    This is why a SET or WIPE with id n voids every unused code below n still in the window.
    """
    top = bound - 1
    if top < state.pd - WINDOW_BELOW_PD:
        return state
    shifted = _shift_up_to(state, top)
    bit = WINDOW_BELOW_PD - (shifted.pd - top)
    return replace(shifted, received=shifted.received | (1 << (bit + 1)) - 1)


def wipe_ids(state: NexusState) -> NexusState:
    """Factory window and QC counts (WIPE targets 1 and 2); the custom flag is kept."""
    return replace(state, pd=PD_INITIAL, received=0, qc_long=0, qc_short=0)
