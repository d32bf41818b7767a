"""The per-code shortcuts against the plain definitions they replace (Hypothesis).

Each shortcut in the meter's per-code path (issue 18: 50,000 validations a second) has a
plain reference here, written the obvious way; the shortcut must agree on every input.
"""

from __future__ import annotations

import dataclasses
import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meter_sim.actions import AddCredit, SetCredit, Unlock
from meter_sim.credit import Credit
from meter_sim.frozen import maker
from meter_sim.keypad import (
    IDLE,
    NEXUS_FULL,
    NEXUS_SMALL,
    OPENPAYGO,
    OPENPAYGO_RESTRICTED,
    Keypad,
    frame_of,
    step,
)
from meter_sim.meter import Meter, Result
from meter_sim.nexus.encode import full_activation, small_add_credit
from meter_sim.nexus.full import FullType, deobscure, process_full
from meter_sim.nexus.mac import prng, prng_u32
from meter_sim.nexus.small import ALPHABET, SmallType, decode
from meter_sim.nexus.state import (
    MAX_MESSAGE_ID,
    PD_INITIAL,
    PD_MAX,
    WINDOW_ABOVE_PD,
    WINDOW_BELOW_PD,
    NexusState,
    is_set,
    mask_below,
)
from meter_sim.nv import Kind, decode_payload, encode_nexus_state
from meter_sim.outcomes import Outcome, PaygState

KEY = bytes.fromhex("deadbeef1020304004030201feebdaed")

digits = st.text("0123456789", min_size=14, max_size=14)


def deobscure_digit_by_digit(frame: str) -> str:
    """Nexus full: digit i is (typed digit i - PRNG byte i) mod 10, MAC digits in the clear."""
    pad = prng(int(frame[8:]).to_bytes(4, "little"))
    return "".join(str((int(d) - pad[i]) % 10) for i, d in enumerate(frame[:8])) + frame[8:]


@given(digits)
def test_deobscuring_all_digits_at_once_equals_digit_by_digit(frame: str) -> None:
    assert deobscure(frame) == deobscure_digit_by_digit(frame)


@given(st.text(ALPHABET, min_size=14, max_size=14))
def test_small_decoding_in_base_4_equals_two_bits_a_key(symbols: str) -> None:
    bits = 0
    for symbol in symbols:
        bits = bits << 2 | ALPHABET.index(symbol)
    mac = bits & 0xFFF
    head = bits >> 12 ^ int.from_bytes(prng(mac.to_bytes(2, "big"))[:2], "big")
    assert decode(symbols) == (head >> 10, SmallType(head >> 8 & 3), head & 0xFF, mac)


def framed(pad: Keypad) -> st.SearchStrategy[str]:
    """Key sequences `Meter` hands to whole-code entry: start, symbols, end (or fixed count)."""
    if pad.fixed_length is not None:
        body = st.text(pad.symbols, min_size=pad.fixed_length, max_size=pad.fixed_length)
        return body.map(lambda b: pad.start + b)
    assert pad.end is not None
    end = pad.end
    return st.text(pad.symbols, min_size=0, max_size=40).map(lambda b: pad.start + b + end)


@given(st.data(), st.sampled_from([NEXUS_FULL, NEXUS_SMALL, OPENPAYGO, OPENPAYGO_RESTRICTED]))
def test_a_framed_code_finishes_the_frame_its_keys_step_to(
    data: st.DataObject, pad: Keypad
) -> None:
    keys = data.draw(framed(pad))
    entry, finished = IDLE, None
    for key in keys:
        done = step(pad, entry, key, 100.0)
        entry, finished = done.entry, done.finished
        if finished is not None:
            break
    assert frame_of(pad, keys) == finished


values = st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.none() | st.text()


@given(st.sampled_from([Credit, NexusState, Result, AddCredit]), st.data())
def test_a_maker_builds_what_the_constructor_builds(cls: type, data: st.DataObject) -> None:
    fields = dataclasses.fields(cls)
    args = [data.draw(values) for _ in fields]
    made = maker(cls)(*args)
    assert type(made) is cls
    assert [getattr(made, f.name) for f in fields] == args
    # still frozen (3.11's slotted frozen classes raise TypeError from their __setattr__)
    with pytest.raises((dataclasses.FrozenInstanceError, TypeError)):
        setattr(made, fields[0].name, 1)


def test_a_maker_refuses_a_class_without_slots() -> None:
    @dataclasses.dataclass(frozen=True)
    class Loose:
        a: int

    with pytest.raises(TypeError, match="not a slotted dataclass"):
        maker(Loose)


times = st.floats(-1e9, 1e9, allow_nan=False)


@given(
    until=times,
    unlocked=st.booleans(),
    now=times,
    action=st.builds(AddCredit, st.integers(0, 10**7))
    | st.builds(SetCredit, st.integers(0, 10**7))
    | st.just(Unlock()),
)
def test_credit_apply_follows_the_nexus_product_rules(
    until: float, unlocked: bool, now: float, action: AddCredit | SetCredit | Unlock
) -> None:
    after = Credit(until, unlocked).apply(action, now)
    if isinstance(action, AddCredit):
        assert after == Credit(max(until, now) + action.seconds, unlocked)
    elif isinstance(action, SetCredit):
        assert after == Credit(now + action.seconds, False)
    else:
        assert after == Credit(now, True)
    assert after.state(now) in set(PaygState)


@given(st.integers(0, 2**32 - 1))
def test_the_full_protocols_prng_packs_its_seed_as_four_little_endian_bytes(seed: int) -> None:
    assert prng_u32(seed) == prng(seed.to_bytes(4, "little"))


@given(until=times, unlocked=st.booleans(), now=times)
def test_credit_remaining_is_max_of_zero_and_what_is_left(
    until: float, unlocked: bool, now: float
) -> None:
    left = Credit(until, unlocked).remaining(now)
    assert left == (math.inf if unlocked else max(0.0, until - now))


@given(
    state=st.builds(
        NexusState,
        pd=st.integers(PD_INITIAL, PD_MAX),
        received=st.integers(0, 2**24 - 1),
        qc_long=st.integers(0, 15),
        qc_short=st.integers(0, 15),
        restricted=st.booleans(),
    ),
    credit=st.builds(Credit, times, st.booleans()),
    grace=st.integers(0, 255),
)
def test_the_nexus_state_encodes_as_its_documented_fields(
    state: NexusState, credit: Credit, grace: int
) -> None:
    """pd u32, mask u24, QC u8, flags u8, grace u8, credit until i48 ms (docs in `nv`)."""
    plain = struct.pack(
        "<I3sBBB",
        state.pd,
        state.received.to_bytes(3, "little"),
        state.qc_long << 4 | state.qc_short,
        state.restricted | credit.unlocked << 1,
        grace,
    )
    encoded = encode_nexus_state(state, credit, grace)
    assert encoded[:10] == plain
    assert decode_payload(encoded + bytes(10), Kind.NEXUS_FULL).nexus == state


@given(
    pd=st.integers(PD_INITIAL, MAX_MESSAGE_ID - WINDOW_ABOVE_PD),
    offset=st.integers(-WINDOW_BELOW_PD, WINDOW_ABOVE_PD),
    kind=st.sampled_from([FullType.ADD_CREDIT, FullType.SET_CREDIT]),
    hours=st.integers(0, 99_998),
)
def test_a_full_code_in_the_window_applies_at_its_own_id(
    pd: int, offset: int, kind: FullType, hours: int
) -> None:
    """The inferred id and the digits (type, id, body) read from the deobscured code."""
    id_ = pd + offset
    state = NexusState(pd=pd)
    frame = full_activation(KEY, id_, kind, hours)[1:-1]
    decision = process_full(frame, secret_key=KEY, state=state, payg=PaygState.ENABLED)
    assert decision.outcome is Outcome.APPLIED
    if kind is FullType.ADD_CREDIT:
        assert decision.action == AddCredit(hours * 3600)
        assert decision.reason == f"add {hours} h, id {id_}"
        assert is_set(decision.state, id_)
    else:
        assert decision.action == SetCredit(hours * 3600)
        assert decision.reason == f"set {hours} h, id {id_}"
        assert decision.state == mask_below(state, id_ + 1)


@given(until=times, unlocked=st.booleans(), now=times)
def test_credit_reading_is_remaining_and_state(until: float, unlocked: bool, now: float) -> None:
    credit = Credit(until, unlocked)
    assert credit.reading(now) == (credit.remaining(now), credit.state(now))


def _nexus_texts(small: bool) -> st.SearchStrategy[str]:
    """Genuine codes near a fresh meter's window (new, replayed, out of window) and noise."""
    ids, amounts = st.integers(0, 200), st.integers(0, 30)
    if small:
        genuine = st.builds(lambda i, d: small_add_credit(KEY, i, d + 1), ids, amounts)
        framed = st.text("2345", min_size=10, max_size=16).map(lambda s: f"1{s}")
        noise = framed | st.text("12345 -", max_size=18)
    else:
        kinds = st.sampled_from([FullType.ADD_CREDIT, FullType.SET_CREDIT, FullType.WIPE_STATE])
        genuine = st.builds(lambda i, k, h: full_activation(KEY, i, k, h % 4), ids, kinds, amounts)
        framed = st.text("0123456789", max_size=32).map(lambda s: f"*{s}#")
        noise = framed | st.text("0123456789*# -", max_size=20)
    return genuine | noise


@given(st.data(), st.booleans())
def test_a_nexus_code_without_separators_answers_as_one_with_them(
    data: st.DataObject, small: bool
) -> None:
    """`enter_keycode` takes a short cut for a code typed as issued (keypad keys only);
    a separator sends the same code the long way: both meters must agree throughout."""
    protocol = "small" if small else "full"
    texts = data.draw(st.lists(_nexus_texts(small), max_size=12))
    quick = Meter.nexus(KEY, protocol, rate_limit=None)
    plain = Meter.nexus(KEY, protocol, rate_limit=None)
    for n, text in enumerate(texts):
        now = float(n)
        assert quick.enter_keycode(text, now) == plain.enter_keycode(f" {text}", now)
        assert quick.snapshot(now) == plain.snapshot(now)
