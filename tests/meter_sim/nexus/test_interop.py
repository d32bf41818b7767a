"""Interop: backend-issued keycodes (nexus-keycode) against the meter, outcome by outcome.

Hypothesis draws a device key, a starting window, a run of increasing ids with code kinds and
amounts, and an application order (out of order, with repeats). `Reference` below restates the
device rules in the plainest form (a set of used ids, pd, credit seconds, an unlocked flag) and
decides each entry without the validator's code; the two must agree on every outcome and on
the credit, window and flag afterwards.

Where the wire cannot tell two ids apart, the reference asks the backend itself: a code
re-inferred to id m is accepted at m only if the backend's code for m is the same keycode (or,
for extended codes, has the same MAC).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import event, given
from hypothesis import strategies as st
from nexus_keycode.protocols.full import FullMessage, FullMessageWipeFlags
from nexus_keycode.protocols.small import (
    AddCreditSmallMessage,
    CustomCommandSmallMessage,
    CustomCommandSmallMessageType,
    ExtendedSmallMessage,
    ExtendedSmallMessageIdInvalidError,
    ExtendedSmallMessageType,
    MaintenanceSmallMessage,
    MaintenanceSmallMessageType,
    PossibleMessageCollisionError,
    SetCreditSmallMessage,
    SmallMessage,
    UnlockSmallMessage,
)

from meter_sim.nexus import NexusState, used_ids
from meter_sim.outcomes import Outcome, PaygState

from .harness import Unit

DAY, HOUR = 86400, 3600
# The small tables, restated independently: every day count the device can credit.
ADD_VALUES = [*range(1, 181), *range(183, 406, 3)]
SET_VALUES = [*range(1, 91), *range(92, 181, 2), *range(184, 361, 4), *range(368, 721, 8)]
SET_VALUES += range(736, 961, 16)


def bucket(values: list[int], days: int) -> int:
    """The device credits the smallest bucket that holds the requested days."""
    return min(v for v in values if v >= days)


@dataclass
class Issued:
    """One backend keycode: what it means, and how to make the same code for another id."""

    id_: int | None
    kind: str
    amount: int
    keycode: str
    at_id: Callable[[int], bool] = lambda _id: False
    """Whether the backend's code of this kind for that id is indistinguishable on the wire."""


@dataclass
class Reference:
    """The device rules in their plainest form."""

    pd: int
    used: set[int] = field(default_factory=set)
    credit: int = 0
    unlocked: bool = False
    restricted: bool = True

    @property
    def payg(self) -> PaygState:
        if self.unlocked:
            return PaygState.UNLOCKED
        return PaygState.ENABLED if self.credit else PaygState.DISABLED

    def window(self) -> range:
        return range(self.pd - 23, self.pd + 41)

    def infer(self, id_: int) -> int:
        return next(i for i in self.window() if i % 64 == id_ % 64)

    def is_used(self, id_: int) -> bool:
        return id_ in self.used and self.pd - 23 <= id_ <= self.pd

    def _advance(self, id_: int) -> None:
        self.pd = max(self.pd, id_)
        self.used = {u for u in self.used if u >= self.pd - 23}

    def mark(self, id_: int) -> None:
        self._advance(id_)
        self.used.add(id_)

    def mark_through(self, id_: int) -> None:
        self._advance(id_)
        self.used |= set(range(self.pd - 23, id_ + 1))

    def wipe_ids(self) -> None:
        self.pd, self.used = 23, set()

    def set_credit(self, seconds: int) -> None:
        self.credit, self.unlocked = seconds, False

    def unlock(self) -> None:
        self.credit, self.unlocked = 0, True

    def enter(self, code: Issued) -> Outcome:
        if code.kind.startswith("maint"):
            return self._maintenance(code.kind)
        assert code.id_ is not None
        if code.kind.startswith("ext"):
            return self._extended(code)
        id_ = self.infer(code.id_)
        if id_ != code.id_ and not code.at_id(id_):
            return Outcome.INVALID
        if self.is_used(id_):
            return Outcome.DUPLICATE
        if code.kind in ("add", "unlock_add"):
            self.mark(id_)
            if self.unlocked:
                return Outcome.DUPLICATE
            if code.kind == "unlock_add":
                self.unlock()
            else:
                self.credit += code.amount
            return Outcome.APPLIED
        self.mark_through(id_)
        if code.kind in ("set", "lock"):
            self.set_credit(code.amount)
        elif code.kind == "unlock":
            self.unlock()
        elif code.kind in ("wipe0", "wipe1"):
            self.set_credit(0)
        elif code.kind in ("restricted", "wipe3"):
            self.restricted = False
        if code.kind in ("wipe1", "wipe2"):
            self.wipe_ids()
        return Outcome.APPLIED

    def _maintenance(self, kind: str) -> Outcome:
        if kind in ("maint0", "maint1"):
            self.set_credit(0)
        if kind in ("maint1", "maint_ids"):
            self.wipe_ids()
        return Outcome.APPLIED

    def _extended(self, code: Issued) -> Outcome:
        assert code.id_ is not None
        for candidate in self.window():
            same_low_bits = candidate % 4 == code.id_ % 4
            if same_low_bits and not self.is_used(candidate) and code.at_id(candidate):
                self.mark_through(candidate)
                self.restricted = False
                if code.kind == "ext_unlock":
                    self.unlock()
                else:
                    self.set_credit(code.amount)
                return Outcome.APPLIED
        return Outcome.INVALID  # a replay lands here too


def run(unit: Unit, ref: Reference, codes: list[Issued], order: list[int], small: bool) -> None:
    for step, index in enumerate(order):
        code = codes[index % len(codes)]
        unit.payg_override = ref.payg
        expected = ref.enter(code)
        decision = unit.small(code.keycode) if small else unit.full(code.keycode)
        context = (step, code.kind, code.id_, decision.reason)
        event(f"{code.kind}: {expected.value}")
        assert decision.outcome is expected, context
        assert (unit.credit, unit.unlocked) == (ref.credit, ref.unlocked), context
        assert (unit.nexus.pd, set(used_ids(unit.nexus))) == (ref.pd, ref.used), context
        assert unit.nexus.restricted is ref.restricted, context


keys = st.binary(min_size=16, max_size=16)
orders = st.lists(st.integers(0, 63), min_size=1, max_size=18)


@st.composite
def id_runs(draw: st.DrawFn, kinds: list[str]) -> tuple[int, list[tuple[int, str]]]:
    """A device pd and increasing ids, each with a kind, starting inside the window."""
    pd = draw(st.integers(23, 3000))
    first = draw(st.integers(pd - 23, pd + 30))
    gaps = draw(st.lists(st.integers(1, 4), min_size=1, max_size=10))
    ids = [first + sum(gaps[:i]) for i in range(len(gaps))]
    return pd, [(id_, draw(st.sampled_from(kinds))) for id_ in ids]


FULL_KINDS = ["add"] * 4 + ["set", "set", "unlock", "wipe0", "wipe1", "wipe2", "wipe3"]
WIPE_FLAGS = {
    "wipe0": FullMessageWipeFlags.TARGET_FLAGS_0,
    "wipe1": FullMessageWipeFlags.TARGET_FLAGS_1,
    "wipe2": FullMessageWipeFlags.WIPE_IDS_ALL,
    "wipe3": FullMessageWipeFlags.WIPE_RESTRICTED_FLAG,
}


def full_code(kind: str, id_: int, hours: int, key: bytes) -> FullMessage:
    if kind == "add":
        return FullMessage.add_credit(id_=id_, hours=hours, secret_key=key)
    if kind == "set":
        return FullMessage.set_credit(id_=id_, hours=hours, secret_key=key)
    if kind == "unlock":
        return FullMessage.unlock(id_=id_, secret_key=key)
    return FullMessage.wipe_state(id_=id_, flags=WIPE_FLAGS[kind], secret_key=key)


@given(key=keys, run_=id_runs(FULL_KINDS), hours=st.lists(st.integers(0, 99998)), order=orders)
def test_full_codes_match_reference(
    key: bytes, run_: tuple[int, list[tuple[int, str]]], hours: list[int], order: list[int]
) -> None:
    pd, plan = run_
    codes = []
    for n, (id_, kind) in enumerate(plan):
        amount = hours[n] if n < len(hours) else 24
        text = full_code(kind, id_, amount, key).to_keycode()

        def at_id(other: int, kind: str = kind, amount: int = amount, text: str = text) -> bool:
            return bool(full_code(kind, other, amount, key).to_keycode() == text)

        codes.append(Issued(id_, kind, amount * HOUR, text, at_id))
    unit = Unit(key, nexus=NexusState(pd=pd, restricted=True))
    run(unit, Reference(pd), codes, order, small=False)


SMALL_KINDS = ["add"] * 3 + ["set", "set", "lock", "unlock_add", "unlock", "restricted", "ext"]
SMALL_KINDS += ["ext", "ext_unlock", "maint0", "maint1", "maint_ids"]
MAINTENANCE = {
    "maint0": MaintenanceSmallMessageType.WIPE_STATE_0,
    "maint1": MaintenanceSmallMessageType.WIPE_STATE_1,
    "maint_ids": MaintenanceSmallMessageType.WIPE_IDS_ALL,
}


def small_message(kind: str, id_: int, days: int, key: bytes) -> SmallMessage:
    if kind == "add":
        return AddCreditSmallMessage(id_=id_, days=days, secret_key=key)
    if kind in ("set", "lock"):
        return SetCreditSmallMessage(id_=id_, days=0 if kind == "lock" else days, secret_key=key)
    if kind == "unlock_add":
        return UnlockSmallMessage(id_=id_, secret_key=key)
    if kind == "unlock":
        return SetCreditSmallMessage(id_=id_, days=SmallMessage.UNLOCK_FLAG, secret_key=key)
    if kind == "restricted":
        wipe = CustomCommandSmallMessageType.WIPE_RESTRICTED_FLAG
        return CustomCommandSmallMessage(id_, wipe, key)
    if kind.startswith("ext"):
        ext_days = SmallMessage.UNLOCK_FLAG if kind == "ext_unlock" else days
        ext = ExtendedSmallMessageType.SET_CREDIT_WIPE_RESTRICTED_FLAG
        return ExtendedSmallMessage(ext, id_=id_, days=ext_days, secret_key=key)
    return MaintenanceSmallMessage(type_=MAINTENANCE[kind], secret_key=key)


def extended_auth(id_: int, days: int, kind: str, key: bytes) -> int:
    ext = ExtendedSmallMessageType.SET_CREDIT_WIPE_RESTRICTED_FLAG
    ext_days = SmallMessage.UNLOCK_FLAG if kind == "ext_unlock" else days
    body = ExtendedSmallMessage.generate_set_credit_wipe_restricted_flag_body(id_, ext_days)
    return int(ExtendedSmallMessage._compute_auth(id_, ext, body, key))


def credited_days(kind: str, days: int) -> int:
    if kind == "add":
        return bucket(ADD_VALUES, days)
    return 0 if days == 0 or kind == "lock" else bucket(SET_VALUES, days)


@given(key=keys, run_=id_runs(SMALL_KINDS), days=st.lists(st.integers(0, 960)), order=orders)
def test_small_codes_match_reference(
    key: bytes, run_: tuple[int, list[tuple[int, str]]], days: list[int], order: list[int]
) -> None:
    pd, plan = run_
    codes = []
    for n, (id_, kind) in enumerate(plan):
        wanted = days[n] if n < len(days) else 30
        wanted = max(1, min(wanted, 405)) if kind == "add" else wanted
        try:
            message = small_message(kind, id_, wanted, key)
        except (PossibleMessageCollisionError, ExtendedSmallMessageIdInvalidError):
            continue  # the backend refuses this id; it would issue the next one instead
        text = message.to_keycode()
        if kind.startswith("ext"):
            auth = message.compressed_message_bits[-12:].uint

            def at_id(other: int, k: str = kind, d: int = wanted, auth: int = auth) -> bool:
                return extended_auth(other, d, k, key) == auth
        else:

            def at_id(other: int, k: str = kind, d: int = wanted, text: str = text) -> bool:
                return bool(small_message(k, other, d, key).to_keycode() == text)

        is_maintenance = kind.startswith("maint")
        amount = credited_days(kind, wanted) * DAY
        codes.append(Issued(None if is_maintenance else id_, kind, amount, text, at_id))
    if not codes:
        return
    unit = Unit(key, nexus=NexusState(pd=pd, restricted=True))
    run(unit, Reference(pd), codes, order, small=True)
