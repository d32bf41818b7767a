"""What a Nexus message does once parsed: the gates and effects both protocols share.

Full and small codes differ in wire format only; the id gate, ADD/SET/WIPE semantics and the
factory test-code limits are the same firmware paths, so they live here once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from enum import IntEnum
from typing import NamedTuple, Protocol

from meter_sim.actions import Action, AddCredit, Decision, SetCredit
from meter_sim.nexus.policy import FIRMWARE, NexusPolicy
from meter_sim.nexus.state import (
    MAX_MESSAGE_ID,
    WINDOW_BELOW_PD,
    NexusState,
    is_set,
    mask_below,
    set_flag,
    wipe_ids,
)
from meter_sim.outcomes import Outcome, PaygState

Verdict = Decision[NexusState]

SHORT_TEST_SECONDS = 127
"""Universal short test ("allow test"): only when DISABLED, unlimited."""
QC_LONG_SECONDS = 3600
"""The one QC length that may stack on an ENABLED unit (small OQC is always this)."""
QC_SHORT_MAX_SECONDS = 600
"""QC codes up to 10 minutes count against the short lifetime limit."""


_APPLIED, _DUPLICATE, _INVALID = Outcome.APPLIED, Outcome.DUPLICATE, Outcome.INVALID
_UNLOCKED = PaygState.UNLOCKED
"""Members read once (an enum attribute costs ~900 instructions on 3.11: `credit._UNLOCKED`)."""
_tuple = tuple.__new__
"""`_tuple(Decision, fields)` is `Decision(*fields)` without the named tuple's Python `__new__`."""


def invalid(state: NexusState, reason: str) -> Verdict:
    return _tuple(Decision, (_INVALID, state, None, reason))


def duplicate(state: NexusState, reason: str) -> Verdict:
    return _tuple(Decision, (_DUPLICATE, state, None, reason))


def applied(state: NexusState, action: Action | None, reason: str) -> Verdict:
    return _tuple(Decision, (_APPLIED, state, action, reason))


def mismatch_reason(id_: int, mac_ok: Callable[[int], bool]) -> str:
    """Why a MAC failed at the inferred id: a code one window-width away was re-inferred.

    Costs at most two more MACs, and only on a failure; the outcome is INVALID either way.
    """
    if id_ >= 64 and mac_ok(id_ - 64):
        return f"below window (code for id {id_ - 64})"
    if mac_ok(id_ + 64):
        return f"above window (code for id {id_ + 64})"
    return "mac mismatch"


def flag_id(id_: int, policy: NexusPolicy) -> int:
    """The id the window functions see: the firmware's `uint16_t` under the truncation quirk."""
    return id_ & MAX_MESSAGE_ID if policy.id16 else id_


class MacOf(Protocol):
    """A protocol's MAC at an id (`full_mac`, `small_mac`): the same shape for both."""

    def __call__(self, key: bytes, id_: int, kind: int, value: int, /) -> int: ...


def admit(
    state: NexusState,
    cid: int,
    mac: int,
    mac_of: MacOf,
    key: bytes,
    kind: int,
    value: int,
    policy: NexusPolicy,
) -> tuple[int, Verdict | None]:
    """The id a code's 6-bit id field names, and the gate's verdict at it (None: it passes).

    The usual code (its MAC matches at a fresh id) is passed without building a MAC check;
    anything else gets `gate`'s verdict."""
    pd = state.pd
    low = pd - WINDOW_BELOW_PD
    id_ = low + (cid - low) % 64  # infer_id(state, cid), inline: cid is 0..63 here
    matched = mac_of(key, id_, kind, value) == mac
    if matched and usual_pass(state, id_):
        return id_, None
    return id_, gate(state, id_, _mac_check(mac_of, key, kind, value, mac), policy, matched)


def _mac_check(mac_of: MacOf, key: bytes, kind: int, value: int, mac: int) -> Callable[[int], bool]:
    """Whether the MAC matches at an id (a closure outside `admit`: one inside would make its
    variables cells, slower to read, on every code)."""
    return lambda id_: mac_of(key, id_, kind, value) == mac


def usual_pass(state: NexusState, id_: int) -> bool:
    """`gate`'s pass for a code whose MAC matched, checked without building a MAC check: the id
    in the 16-bit range and its flag clear (ids above pd read as unused; an inferred id is never
    below the window). False sends the code to `gate` for its verdict."""
    pd = state.pd
    return id_ <= MAX_MESSAGE_ID and (
        id_ > pd or not state.received >> (WINDOW_BELOW_PD - (pd - id_)) & 1
    )


def gate(
    state: NexusState,
    id_: int,
    mac_ok: Callable[[int], bool],
    policy: NexusPolicy = FIRMWARE,
    matched: bool | None = None,
) -> Verdict | None:
    """The check every id-carrying activation passes first: range, MAC, then not yet used.

    `matched`: whether the MAC matches at `id_`, when the caller has computed it already.
    """
    if id_ > MAX_MESSAGE_ID and not policy.id16:
        return invalid(state, f"id {id_} beyond the device's 16-bit id range")
    if not (mac_ok(id_) if matched is None else matched):
        return invalid(state, mismatch_reason(id_, mac_ok))
    # flag_id(id_, policy), inline: past the range check the id fits 16 bits or the quirk is on.
    if is_set(state, id_ & MAX_MESSAGE_ID):
        return duplicate(state, f"id already used (id {id_})")
    return None


def mask_through(state: NexusState, id_: int, policy: NexusPolicy = FIRMWARE) -> NexusState:
    """mask_below(id + 1) as the firmware computes it (a 16-bit bound under the quirk)."""
    if policy.id16:
        return mask_below(state, (flag_id(id_, policy) + 1) & MAX_MESSAGE_ID)
    return mask_below(state, id_ + 1)


def add_credit(
    state: NexusState,
    payg: PaygState,
    id_: int,
    action: Action,
    what: str,
    policy: NexusPolicy = FIRMWARE,
) -> Verdict:
    """ADD consumes its id; on an unlocked unit it changes nothing else and answers DUPLICATE."""
    flagged = id_ & MAX_MESSAGE_ID if policy.id16 else id_  # flag_id(id_, policy), inline
    # The firmware marks pd's own bit for an id below the window.
    consumed = set_flag(state, flagged if flagged >= state.pd - WINDOW_BELOW_PD else state.pd)
    if payg is _UNLOCKED:
        return duplicate(consumed, f"unit unlocked: id {id_} consumed without credit")
    return _tuple(Decision, (_APPLIED, consumed, action, f"{what}, id {id_}"))


def set_credit(
    state: NexusState,
    id_: int,
    action: Action | None,
    what: str,
    *,
    clear_restricted: bool,
    policy: NexusPolicy = FIRMWARE,
) -> Verdict:
    """SET voids every unused id up to its own, then applies even to an unlocked unit."""
    masked = mask_through(state, id_, policy)
    if clear_restricted:
        masked = replace(masked, restricted=False)
    return applied(masked, action, f"{what}, id {id_}")


class WipeTarget(IntEnum):
    """Full WIPE target digit; small maintenance functions 0..2 use the same numbers."""

    CREDIT = 0
    CREDIT_AND_IDS = 1
    IDS = 2
    RESTRICTED_FLAG = 3


class _WipeEffect(NamedTuple):
    wipe_ids: bool
    action: Action | None
    clear_restricted: bool


WIPE_EFFECTS: dict[WipeTarget, _WipeEffect] = {
    WipeTarget.CREDIT: _WipeEffect(False, SetCredit(0), False),
    WipeTarget.CREDIT_AND_IDS: _WipeEffect(True, SetCredit(0), False),
    WipeTarget.IDS: _WipeEffect(True, None, False),
    WipeTarget.RESTRICTED_FLAG: _WipeEffect(False, None, True),
}


def wipe(state: NexusState, target: WipeTarget, what: str) -> Verdict:
    """Apply a wipe target (after any mask_below the caller owes)."""
    effect = WIPE_EFFECTS[target]
    after = wipe_ids(state) if effect.wipe_ids else state
    if effect.clear_restricted:
        after = replace(after, restricted=False)
    return applied(after, effect.action, f"{what}: wipe {target.name.lower()}")


def short_test(state: NexusState, payg: PaygState) -> Verdict:
    """The universal short test: +127 s on a DISABLED unit, otherwise valid but no effect."""
    if payg is PaygState.DISABLED:
        return applied(state, AddCredit(SHORT_TEST_SECONDS), "short test")
    return duplicate(state, f"short test refused: unit {payg.value}")


def qc_test(
    state: NexusState, payg: PaygState, seconds: int, policy: NexusPolicy = FIRMWARE
) -> Verdict:
    """A factory QC code: lifetime-limited, never on an unlocked unit, only 60 min stacks."""
    if payg is PaygState.UNLOCKED:
        return duplicate(state, "QC refused: unit unlocked")
    if seconds != QC_LONG_SECONDS and payg is not PaygState.DISABLED:
        return duplicate(state, "QC refused: only the 60-minute code applies to an enabled unit")
    if seconds <= QC_SHORT_MAX_SECONDS:
        if state.qc_short >= policy.qc_short_lifetime_max:
            return duplicate(state, "QC refused: short QC lifetime limit reached")
        counted = replace(state, qc_short=state.qc_short + 1)
    else:
        if state.qc_long >= policy.qc_long_lifetime_max:
            return duplicate(state, "QC refused: long QC lifetime limit reached")
        counted = replace(state, qc_long=state.qc_long + 1)
    return applied(counted, AddCredit(seconds), f"QC test {seconds // 60} min")


__all__ = [
    "QC_LONG_SECONDS",
    "SHORT_TEST_SECONDS",
    "WIPE_EFFECTS",
    "Verdict",
    "WipeTarget",
    "add_credit",
    "applied",
    "duplicate",
    "flag_id",
    "gate",
    "invalid",
    "mask_through",
    "qc_test",
    "set_credit",
    "short_test",
    "wipe",
]
