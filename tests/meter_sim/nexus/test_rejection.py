"""What the meter refuses: tampered codes, foreign keys, replays, garbage, and its own cost.

Tampering and foreign-key checks use a fixed, seeded sample rather than Hypothesis: a 12-bit
small MAC is forged by chance about once in 4096 tries, so those tests assert a measured
acceptance count stays under a tight bound derived from the MAC size, deterministically.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nexus_keycode.protocols.full import FullMessage, FullMessageWipeFlags
from nexus_keycode.protocols.small import (
    AddCreditSmallMessage,
    ExtendedSmallMessage,
    ExtendedSmallMessageIdInvalidError,
    ExtendedSmallMessageType,
    PossibleMessageCollisionError,
    SetCreditSmallMessage,
    SmallMessage,
)

import meter_sim.nexus.full
import meter_sim.nexus.mac
import meter_sim.nexus.small
from meter_sim.errors import ConfigError
from meter_sim.nexus import NexusState, process_full, process_small
from meter_sim.nexus.policy import FIRMWARE, STRICT, NexusPolicy
from meter_sim.outcomes import Outcome, PaygState
from meter_sim.strategies import keycode_texts

from .harness import KEY_SAMPLE, Unit

SEED = 20261126
START = NexusState(pd=40)


def full_samples(count: int) -> Iterator[tuple[bytes, str]]:
    rng = random.Random(SEED)
    for _ in range(count):
        key, id_ = rng.randbytes(16), rng.randint(17, 80)
        kind = rng.randrange(4)
        if kind == 0:
            message = FullMessage.add_credit(id_=id_, hours=rng.randint(0, 99999), secret_key=key)
        elif kind == 1:
            message = FullMessage.set_credit(id_=id_, hours=rng.randint(0, 99998), secret_key=key)
        elif kind == 2:
            message = FullMessage.unlock(id_=id_, secret_key=key)
        else:
            flags = rng.choice(list(FullMessageWipeFlags))
            message = FullMessage.wipe_state(id_=id_, flags=flags, secret_key=key)
        yield key, message.to_keycode(prefix="", suffix="", separator="")


def small_samples(count: int, extended: bool) -> Iterator[tuple[bytes, str]]:
    rng = random.Random(SEED + extended)
    ext = ExtendedSmallMessageType.SET_CREDIT_WIPE_RESTRICTED_FLAG
    produced = 0
    while produced < count:
        key, id_, days = rng.randbytes(16), rng.randint(17, 80), rng.randint(1, 405)
        try:
            if extended:
                message: SmallMessage = ExtendedSmallMessage(
                    ext, id_=id_, days=days, secret_key=key
                )
            elif rng.random() < 0.5:
                message = AddCreditSmallMessage(id_=id_, days=days, secret_key=key)
            else:
                message = SetCreditSmallMessage(id_=id_, days=days, secret_key=key)
        except (PossibleMessageCollisionError, ExtendedSmallMessageIdInvalidError):
            continue
        produced += 1
        yield key, message.to_keycode(separator="")[1:]


def tampered(frame: str, alphabet: str) -> Iterator[str]:
    for position, original in enumerate(frame):
        for replacement in alphabet:
            if replacement != original:
                yield frame[:position] + replacement + frame[position + 1 :]


def full_outcome(frame: str, key: bytes, policy: NexusPolicy = STRICT) -> Outcome:
    return process_full(
        frame, secret_key=key, state=START, payg=PaygState.ENABLED, policy=policy
    ).outcome


def small_outcome(symbols: str, key: bytes, policy: NexusPolicy = STRICT) -> Outcome:
    return process_small(
        symbols, secret_key=key, state=START, payg=PaygState.ENABLED, policy=policy
    ).outcome


def tamper_all(
    samples: Iterator[tuple[bytes, str]], alphabet: str, outcome: Callable[[str, bytes], Outcome]
) -> tuple[int, int]:
    """(tries, accepted) over every single-symbol change of every (valid) sample code."""
    trials = accepted = 0
    for key, frame in samples:
        assert outcome(frame, key) is Outcome.APPLIED
        for forged in tampered(frame, alphabet):
            trials += 1
            accepted += outcome(forged, key) is not Outcome.INVALID
    return trials, accepted


def test_strict_full_single_digit_tampering_is_always_refused() -> None:
    trials, accepted = tamper_all(full_samples(60), "0123456789", full_outcome)
    assert trials == 60 * 14 * 9
    # A 6-digit MAC is forged about once per million tries; wipe reserved digits are checked.
    assert accepted == 0


def _bound(trials: int, candidates: int) -> int:
    """The most chance 12-bit MAC matches expected over `candidates` ids per try, plus 3.

    The sample is seeded, so the count is fixed (1 of 4200 regular, 3 of 4200 extended);
    the bound says what rate would still be acceptable for the MAC size.
    """
    return trials * candidates // 4096 + 3


def test_small_single_symbol_tampering_is_refused_but_for_mac_chance() -> None:
    trials, accepted = tamper_all(small_samples(100, extended=False), "2345", small_outcome)
    assert trials == 100 * 14 * 3
    # One candidate id per code, except where a flipped type bit makes it an extended code.
    assert accepted <= _bound(trials, 2)


def test_extended_single_symbol_tampering_within_the_16_candidate_rate() -> None:
    trials, accepted = tamper_all(small_samples(100, extended=True), "2345", small_outcome)
    assert trials == 100 * 14 * 3
    assert accepted <= _bound(trials, 16)


def test_codes_for_another_key_are_invalid() -> None:
    rng = random.Random(SEED + 99)
    for key, frame in full_samples(100):
        other = rng.randbytes(16)
        assert other != key
        assert full_outcome(frame, other) is Outcome.INVALID
    wrong = sum(
        small_outcome(frame, rng.randbytes(16)) is not Outcome.INVALID
        for _, frame in small_samples(300, extended=False)
    )
    assert wrong <= _bound(300, 1)


def test_full_replays() -> None:
    unit = Unit(KEY_SAMPLE)
    add = FullMessage.add_credit(id_=30, hours=5, secret_key=KEY_SAMPLE).to_keycode()
    set_ = FullMessage.set_credit(id_=31, hours=5, secret_key=KEY_SAMPLE).to_keycode()
    assert [unit.full(add).outcome, unit.full(add).outcome] == [Outcome.APPLIED, Outcome.DUPLICATE]
    assert [unit.full(set_).outcome, unit.full(set_).outcome] == [
        Outcome.APPLIED,
        Outcome.DUPLICATE,
    ]
    later = FullMessage.add_credit(id_=70, hours=1, secret_key=KEY_SAMPLE).to_keycode()
    assert unit.full(later).outcome is Outcome.APPLIED
    stale = unit.full(add)  # id 30 is now below the window [47, 110]
    assert (stale.outcome, stale.reason) == (Outcome.INVALID, "below window (code for id 30)")


def test_extended_replay_is_invalid_not_duplicate() -> None:
    ext = ExtendedSmallMessageType.SET_CREDIT_WIPE_RESTRICTED_FLAG
    code = ExtendedSmallMessage(ext, id_=9, days=30, secret_key=KEY_SAMPLE).to_keycode()
    unit = Unit(KEY_SAMPLE)
    assert unit.small(code).outcome is Outcome.APPLIED
    replay = unit.small(code)
    assert replay.outcome is Outcome.INVALID
    assert "no unused window id" in replay.reason


def test_out_of_window_ids_are_invalid() -> None:
    unit = Unit(KEY_SAMPLE)
    too_high = FullMessage.add_credit(id_=64, hours=1, secret_key=KEY_SAMPLE).to_keycode()
    assert unit.full(too_high).outcome is Outcome.INVALID  # window is [0, 63]
    small = AddCreditSmallMessage(id_=70, days=1, secret_key=KEY_SAMPLE).to_keycode()
    assert unit.small(small).outcome is Outcome.INVALID
    assert unit.nexus == NexusState()


@given(frame=st.text(max_size=40))
def test_full_parser_never_raises_on_text(frame: str) -> None:
    decision = process_full(frame, secret_key=KEY_SAMPLE, state=START, payg=PaygState.ENABLED)
    assert decision.outcome in Outcome
    if decision.outcome is Outcome.INVALID:
        assert decision.state == START
        assert decision.action is None
        assert decision.reason


@given(
    frame=st.text(alphabet="0123456789", max_size=32),
    payg=st.sampled_from(PaygState),
    demo=st.booleans(),
    nomac=st.booleans(),
    policy=st.sampled_from([STRICT, FIRMWARE]),
)
def test_full_parser_never_raises_on_digits(
    frame: str, payg: PaygState, demo: bool, nomac: bool, policy: NexusPolicy
) -> None:
    decision = process_full(
        frame,
        secret_key=KEY_SAMPLE,
        state=START,
        payg=payg,
        payg_id="12345678",
        policy=policy,
        allow_demo=demo,
        allow_nomac_id=nomac,
    )
    if decision.outcome is Outcome.INVALID:
        assert decision.action is None
        # Only the firmware's WIPE with an unknown target masks ids and still says INVALID.
        assert decision.state == START or (not policy.strict and "masked" in decision.reason)


@given(symbols=st.text(max_size=20), policy=st.sampled_from([STRICT, FIRMWARE]))
def test_small_parser_never_raises_on_text(symbols: str, policy: NexusPolicy) -> None:
    decision = process_small(
        symbols, secret_key=KEY_SAMPLE, state=START, payg=PaygState.ENABLED, policy=policy
    )
    assert decision.outcome in Outcome
    if decision.outcome is Outcome.INVALID:
        assert (decision.state, decision.action) == (START, None)


@given(keycode=keycode_texts("nexus-small"), payg=st.sampled_from(PaygState))
def test_small_parser_never_raises_on_symbols(keycode: str, payg: PaygState) -> None:
    symbols = keycode.removeprefix("1")  # the start key is the keypad's, not the frame's
    decision = process_small(symbols, secret_key=KEY_SAMPLE, state=START, payg=payg)
    if decision.outcome is Outcome.INVALID:
        assert (decision.state, decision.action) == (START, None)


@pytest.mark.parametrize("key", [b"", b"\x00" * 15, b"\x00" * 17])
def test_bad_key_is_a_configuration_error(key: bytes) -> None:
    with pytest.raises(ConfigError):
        process_full("1", secret_key=key, state=START, payg=PaygState.ENABLED)
    with pytest.raises(ConfigError):
        process_small("2" * 14, secret_key=key, state=START, payg=PaygState.ENABLED)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("", "empty frame"),
        ("1" * 31, "frame of 31 keys is longer than 30"),
        ("12a4", "frame holds a key that is not a digit"),
        ("١٢٣٤٥٦٧٨٩٠١٢٣٤", "frame holds a key that is not a digit"),
    ],
)
def test_full_input_reasons(frame: str, reason: str) -> None:
    decision = process_full(frame, secret_key=KEY_SAMPLE, state=START, payg=PaygState.ENABLED)
    assert (decision.outcome, decision.reason) == (Outcome.INVALID, reason)


class SipHashCounter:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = meter_sim.nexus.mac.siphash24

        def counting(key: bytes, data: bytes) -> int:
            self.calls += 1
            return real(key, data)

        monkeypatch.setattr(meter_sim.nexus.mac, "siphash24", counting)
        # both protocols' deobscuring call the PRNG's SipHash themselves (inline, per code)
        monkeypatch.setattr(meter_sim.nexus.full, "siphash24", counting)
        monkeypatch.setattr(meter_sim.nexus.small, "siphash24", counting)


def test_validation_costs_a_few_siphash_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = SipHashCounter(monkeypatch)
    full = FullMessage.add_credit(id_=41, hours=3, secret_key=KEY_SAMPLE)
    frame = full.to_keycode(prefix="", suffix="", separator="")
    assert full_outcome(frame, KEY_SAMPLE) is Outcome.APPLIED
    assert counter.calls == 2  # PRNG + MAC
    counter.calls = 0
    assert full_outcome(frame, bytes(16)) is Outcome.INVALID
    assert counter.calls <= 4  # plus the below/above-window diagnosis
    counter.calls = 0
    small = AddCreditSmallMessage(id_=41, days=3, secret_key=KEY_SAMPLE)
    assert small_outcome(small.to_keycode(separator="")[1:], KEY_SAMPLE) is Outcome.APPLIED
    assert counter.calls == 2
    ext = ExtendedSmallMessageType.SET_CREDIT_WIPE_RESTRICTED_FLAG
    code = ExtendedSmallMessage(ext, id_=20, days=3, secret_key=KEY_SAMPLE)
    counter.calls = 0
    assert small_outcome(code.to_keycode(separator="")[1:], bytes(16)) is Outcome.INVALID
    assert counter.calls <= 1 + 16  # PRNG + at most 16 candidate ids
