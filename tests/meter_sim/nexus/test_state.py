"""The Nexus window helpers against a set-of-ids model, plus NV-state validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from meter_sim.errors import ConfigError
from meter_sim.nexus import (
    NexusState,
    infer_id,
    is_set,
    mask_below,
    set_flag,
    used_ids,
    window_bounds,
    wipe_ids,
)


class WindowMachine(RuleBasedStateMachine):
    """Random set_flag / mask_below / wipe_ids sequences versus a plain set of used ids."""

    def __init__(self) -> None:
        super().__init__()
        self.state = NexusState(qc_long=3, qc_short=2, restricted=True)
        self.pd = 23
        self.used: set[int] = set()

    def _advance(self, id_: int) -> None:
        self.pd = max(self.pd, id_)
        self.used = {u for u in self.used if u >= self.pd - 23}

    @rule(offset=st.integers(-23, 40))
    def flag(self, offset: int) -> None:
        id_ = self.pd + offset
        self.state = set_flag(self.state, id_)
        self._advance(id_)
        self.used.add(id_)

    @rule(offset=st.integers(-23, 40))
    def mask(self, offset: int) -> None:
        id_ = self.pd + offset
        self.state = mask_below(self.state, id_ + 1)
        self._advance(id_)
        self.used |= set(range(self.pd - 23, id_ + 1))

    @rule()
    def wipe(self) -> None:
        self.state = wipe_ids(self.state)
        self.pd, self.used = 23, set()

    @invariant()
    def agrees(self) -> None:
        assert self.state.pd == self.pd
        assert used_ids(self.state) == self.used
        low, high = window_bounds(self.state)
        assert all(is_set(self.state, i) == (i in self.used) for i in range(low - 3, high + 3))

    @invariant()
    def flag_survives_wipes(self) -> None:
        assert self.state.restricted


TestWindowMachine = WindowMachine.TestCase


@given(pd=st.integers(23, 100_000), cid=st.integers(0, 63))
def test_infer_id_is_the_unique_window_match(pd: int, cid: int) -> None:
    state = NexusState(pd=pd)
    low, high = window_bounds(state)
    matches = [i for i in range(low, high + 1) if i & 0x3F == cid]
    assert matches == [infer_id(state, cid)]


@given(pd=st.integers(23, 100_000), trunc=st.integers(0, 3))
def test_infer_id_two_bits(pd: int, trunc: int) -> None:
    state = NexusState(pd=pd)
    assert infer_id(state, trunc, bits=2) == window_bounds(state)[0] + (trunc - pd + 23) % 4


def test_infer_id_rejects_oversized_cid() -> None:
    with pytest.raises(ValueError):
        infer_id(NexusState(), 64)


def test_set_flag_below_window_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        set_flag(NexusState(pd=100), 76)


def test_mask_below_zero_and_below_window_change_nothing() -> None:
    state = set_flag(NexusState(pd=100), 90)
    assert mask_below(state, 0) == state
    assert mask_below(state, 77) == state


def test_wipe_ids_resets_qc_counts_but_not_the_flag() -> None:
    state = NexusState(pd=300, received=0xFFFFFF, qc_long=5, qc_short=4, restricted=True)
    assert wipe_ids(state) == NexusState(restricted=True)


def test_window_shift_drops_bits_that_fall_off() -> None:
    state = set_flag(set_flag(NexusState(), 0), 10)
    assert used_ids(set_flag(state, 33)) == {10, 33}
    assert used_ids(set_flag(state, 57)) == {57}  # shift of 34 > 23 clears the mask


@pytest.mark.parametrize(
    "fields",
    [
        {"pd": 22},
        {"pd": 2**32},
        {"received": 1 << 24},
        {"received": -1},
        {"qc_long": 16},
        {"qc_short": -1},
    ],
)
def test_state_validation(fields: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        NexusState(**fields)  # type: ignore[arg-type]
