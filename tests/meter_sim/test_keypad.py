"""Key-by-key entry against a simple model of the reference front end."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from meter_sim.keypad import (
    ENTRY_TIMEOUT_SECONDS,
    MAX_FRAME_KEYS,
    NEXUS_FULL,
    NEXUS_SMALL,
    OPENPAYGO_RESTRICTED,
    Entry,
    Keypad,
    step,
)
from meter_sim.outcomes import KeyFeedback

PADS = [NEXUS_FULL, NEXUS_SMALL, OPENPAYGO_RESTRICTED]


def type_keys(pad: Keypad, keys: str, now: float = 0.0) -> list[str]:
    entry, finished = Entry(), []
    for key in keys:
        done = step(pad, entry, key, now)
        entry = done.entry
        if done.finished is not None:
            finished.append(done.finished)
    return finished


def test_full_frame_is_what_lies_between_start_and_end() -> None:
    assert type_keys(NEXUS_FULL, "*12345678901234#") == ["12345678901234"]


def test_start_key_restarts_entry() -> None:
    assert type_keys(NEXUS_FULL, "*999*123#") == ["123"]


def test_keys_before_start_are_rejected() -> None:
    done = step(NEXUS_FULL, Entry(), "5", 0.0)
    assert done.feedback is KeyFeedback.REJECTED
    assert done.entry == Entry()


def test_small_frame_finishes_on_fourteenth_symbol_without_end_key() -> None:
    assert type_keys(NEXUS_SMALL, "1" + "2345" * 3 + "23") == ["2345" * 3 + "23"]


def test_idle_timeout_discards_partial_frame() -> None:
    entry = step(NEXUS_FULL, Entry(), "*", 0.0).entry
    entry = step(NEXUS_FULL, entry, "1", 10.0).entry
    # 16 s after the last key is still in time; a moment later it is not.
    assert step(NEXUS_FULL, entry, "2", 10.0 + ENTRY_TIMEOUT_SECONDS).entry.frame == "12"
    late = step(NEXUS_FULL, entry, "2", 10.0 + ENTRY_TIMEOUT_SECONDS + 0.001)
    assert late.feedback is KeyFeedback.REJECTED
    assert late.entry.frame is None


def test_overlong_frame_stays_overlong() -> None:
    (frame,) = type_keys(NEXUS_FULL, "*" + "1" * 100 + "#")
    assert len(frame) == MAX_FRAME_KEYS + 1


@given(pad=st.sampled_from(PADS), keys=st.text(max_size=80))
def test_any_key_sequence_is_handled(pad: Keypad, keys: str) -> None:
    for frame in type_keys(pad, keys):
        assert set(frame) <= set(pad.symbols)
        assert len(frame) <= MAX_FRAME_KEYS + 1


class EntryMachine(RuleBasedStateMachine):
    """The pure entry machine against a direct model: a buffer, a last-key time, a timeout."""

    def __init__(self) -> None:
        super().__init__()
        self.pad = NEXUS_FULL
        self.entry = Entry()
        self.now = 0.0
        self.model: str | None = None
        self.model_last = 0.0
        self.finished: list[str] = []
        self.model_finished: list[str] = []

    @rule(dt=st.floats(min_value=0, max_value=40, allow_nan=False))
    def wait(self, dt: float) -> None:
        self.now += dt

    @rule(key=st.sampled_from("0123456789*#x"))
    def press(self, key: str) -> None:
        if self.model is not None and self.now - self.model_last > ENTRY_TIMEOUT_SECONDS:
            self.model = None
        if key == "*":
            self.model = ""
        elif key == "#" and self.model is not None:
            self.model_finished.append(self.model)
            self.model = None
        elif key.isdigit() and self.model is not None:
            self.model = (self.model + key)[: MAX_FRAME_KEYS + 1]
        if self.model is not None:
            self.model_last = self.now if key != "x" else self.model_last
        done = step(self.pad, self.entry, key, self.now)
        self.entry = done.entry
        if done.finished is not None:
            self.finished.append(done.finished)

    @precondition(lambda self: self.model is not None)
    @invariant()
    def same_buffer(self) -> None:
        assert self.entry.frame == self.model

    @invariant()
    def same_frames(self) -> None:
        assert self.finished == self.model_finished


TestEntryMachine = EntryMachine.TestCase
