"""Non-volatile state: the reference layout, power cuts at every byte, corruption, restarts."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meter_sim import Meter
from meter_sim.credit import Credit
from meter_sim.errors import ConfigError, CorruptStateError
from meter_sim.nexus.state import NexusState
from meter_sim.nv import (
    SLOT_SIZE,
    Kind,
    NVStatus,
    NVStore,
    Snapshot,
    crc16,
    decode_payload,
    decode_slot,
    encode_nexus_state,
    encode_payload,
    encode_slot,
    key_fingerprint,
    quantized,
    slot_size,
)
from meter_sim.openpaygo.state import TokenState
from meter_sim.outcomes import Outcome
from meter_sim.ratelimit import EntryBlock
from meter_sim.storage import FileStorage, MemoryStorage

from .helpers import (
    DAY,
    KEY,
    OPAYGO_KEY,
    OPAYGO_SC,
    full_add,
    full_set,
    full_unlock,
    full_wipe_ids,
    opaygo_token,
)


class PowerCut(Exception):
    pass


class CutStorage(MemoryStorage):
    """A medium that loses power after `budget` more bytes have been written."""

    def __init__(self, initial: bytes, budget: int) -> None:
        super().__init__(initial)
        self.budget = budget

    def write(self, offset: int, data: bytes) -> None:
        if len(data) > self.budget:
            super().write(offset, data[: self.budget])
            self.budget = 0
            raise PowerCut
        self.budget -= len(data)
        super().write(offset, data)


nexus_states = st.builds(
    NexusState,
    pd=st.integers(23, 2**32 - 41),
    received=st.integers(0, 2**24 - 1),
    qc_long=st.integers(0, 15),
    qc_short=st.integers(0, 15),
    restricted=st.booleans(),
)
times = st.floats(-1e11, 1e11, allow_nan=False)  # the i48 ms field holds ±4,000 years
millis = st.integers(-(10**14), 10**14).map(lambda ms: ms / 1000)
credits = st.builds(Credit, until=times, unlocked=st.booleans())


@given(credit=credits, nexus=nexus_states, grace=st.integers(0, 255), clock=times)
def test_nexus_snapshot_round_trips_to_the_millisecond(
    credit: Credit, nexus: NexusState, grace: int, clock: float
) -> None:
    snap = Snapshot(credit=credit, clock=clock, nexus=nexus, grace=grace)
    back = decode_payload(encode_payload(snap), Kind.NEXUS_FULL)
    assert (back.nexus, back.grace, back.credit.unlocked) == (nexus, grace, credit.unlocked)
    # Rounded down, never up (beyond float noise): no credit is invented, no clock is ahead.
    assert credit.until - 0.001 <= back.credit.until <= credit.until + 2 * math.ulp(credit.until)
    assert clock - 0.001 <= back.clock <= clock + 2 * math.ulp(clock)
    assert quantized(back) == back


@given(until=millis, clock=millis)
def test_times_on_the_millisecond_round_trip_exactly(until: float, clock: float) -> None:
    snap = Snapshot(credit=Credit(until, False), clock=clock, nexus=NexusState())
    assert decode_payload(encode_payload(snap), Kind.NEXUS_SMALL) == snap


@given(
    credit=credits,
    count=st.integers(16, 2**32 - 1),
    offsets=st.sets(st.integers(1, 16)),
    invalid=st.integers(0, 2**14 - 1),
    blocked=millis,
    clock=millis,
)
def test_openpaygo_snapshot_round_trips(
    credit: Credit, count: int, offsets: set[int], invalid: int, blocked: float, clock: float
) -> None:
    token = TokenState(count=count, used=frozenset({count} | {count - d for d in offsets}))
    credit = Credit(until=math.floor(credit.until * 1000) / 1000, unlocked=credit.unlocked)
    snap = Snapshot(credit=credit, clock=clock, token=token, block=EntryBlock(invalid, blocked))
    assert decode_payload(encode_payload(snap), Kind.OPENPAYGO) == snap


@given(blocked=times, invalid=st.integers(2**14, 2**16))
def test_an_entry_block_is_never_shortened_by_storage(blocked: float, invalid: int) -> None:
    snap = Snapshot(
        credit=Credit(), clock=0.0, token=TokenState.initial(), block=EntryBlock(invalid, blocked)
    )
    back = decode_payload(encode_payload(snap), Kind.OPENPAYGO).block
    assert back is not None
    # Rounded up, never down (beyond float noise): storage never shortens a block.
    assert blocked - 2 * math.ulp(blocked) <= back.blocked_until <= blocked + 0.001
    assert back.invalid_count == 2**14 - 1  # saturates far past any block's growth


@pytest.mark.parametrize("kind", list(Kind))
def test_a_slot_is_at_most_32_bytes(kind: Kind) -> None:
    assert slot_size(kind) == SLOT_SIZE == 32


def test_a_slot_names_its_kind_key_and_sequence_under_its_crc() -> None:
    snap = Snapshot(credit=Credit(until=1.5), clock=1.0, nexus=NexusState(pd=350, received=5))
    mark = key_fingerprint(KEY)
    raw = encode_slot(snap, Kind.NEXUS_SMALL, 6, mark)
    assert len(raw) == 32
    assert raw[0] == 0xB2  # magic nibble, format version 2
    assert raw[1] == Kind.NEXUS_SMALL << 4 | 2  # sequence modulo 4
    assert int.from_bytes(raw[2:4], "little") == mark
    assert int.from_bytes(raw[-2:], "little") == crc16(raw[:-2])
    assert decode_slot(raw, Kind.NEXUS_SMALL, mark) == (2, snap)
    assert key_fingerprint(KEY) != key_fingerprint(bytes(16))
    assert key_fingerprint(KEY, 1) != key_fingerprint(KEY, 2)


def _observe(meter: Meter, now: float) -> Snapshot:
    snap = meter.snapshot(now)
    return Snapshot(
        credit=snap.credit,
        clock=0.0,
        nexus=snap.nexus,
        grace=snap.grace,
        token=snap.token,
        block=snap.block,
    )


def _boot_nexus(storage: MemoryStorage, now: float) -> Meter:
    return Meter.nexus(KEY, storage=storage, rate_limit=None, now=now)


def test_power_cut_at_every_write_boundary_leaves_old_or_new_state() -> None:
    codes = [
        full_add(1, 24),
        full_add(3, 5),
        full_set(4, 48),
        full_add(5, 1),
        full_unlock(6),
        full_wipe_ids(7),
        full_add(1, 2),
    ]
    medium = MemoryStorage()
    meter = _boot_nexus(medium, 0.0)
    now, cuts = 0.0, 0
    for code in codes:
        now += 600.0
        before_image = medium.read()
        before = _observe(_boot_nexus(MemoryStorage(before_image), now), now)
        meter.enter_keycode(code, now)
        after = _observe(meter, now)
        assert after != before, code
        for budget in range(slot_size(Kind.NEXUS_FULL)):  # torn after `budget` bytes
            storage = CutStorage(before_image, budget)
            victim = _boot_nexus(storage, now)
            with pytest.raises(PowerCut):
                victim.enter_keycode(code, now)
            survivor = _boot_nexus(MemoryStorage(storage.read()), now)
            assert survivor.nv_status in (NVStatus.OK, NVStatus.RECOVERED)
            assert _observe(survivor, now) in (before, after)
            cuts += 1
        complete = CutStorage(before_image, 10**6)
        _boot_nexus(complete, now).enter_keycode(code, now)
        assert _observe(_boot_nexus(MemoryStorage(complete.read()), now), now) == after
    assert cuts == len(codes) * slot_size(Kind.NEXUS_FULL)


def test_every_single_byte_corruption_is_detected() -> None:
    medium = MemoryStorage()
    meter = _boot_nexus(medium, 0.0)
    meter.enter_keycode(full_add(1, 24), 1.0)
    previous = _observe(_boot_nexus(MemoryStorage(medium.read()), 1.0), 1.0)
    meter.enter_keycode(full_add(2, 24), 2.0)
    current = _observe(meter, 2.0)
    image = medium.read()
    for index in range(len(image)):
        for flip in (0x01, 0x80, 0xFF):
            damaged = bytearray(image)
            damaged[index] ^= flip
            survivor = _boot_nexus(MemoryStorage(bytes(damaged)), 2.0)
            assert _observe(survivor, 2.0) in (current, previous)


def test_both_slots_corrupt_is_reported_and_factory_defaults_apply() -> None:
    medium = MemoryStorage()
    meter = _boot_nexus(medium, 0.0)
    meter.enter_keycode(full_add(1, 24), 1.0)
    meter.enter_keycode(full_add(2, 24), 2.0)
    medium.data[:] = bytes(b ^ 0x5A for b in medium.data)
    rebooted = _boot_nexus(medium, 3.0)
    assert rebooted.nv_status is NVStatus.CORRUPT
    assert rebooted.nv_problems
    assert rebooted.credit_remaining(3.0) == 0
    # Factory defaults re-open replay, as the reference documents: the old code works again.
    assert rebooted.enter_keycode(full_add(1, 24), 3.0).outcome is Outcome.APPLIED


def test_decoder_names_what_is_wrong() -> None:
    mark = key_fingerprint(KEY)
    raw = bytearray(
        encode_slot(
            Snapshot(credit=Credit(), clock=0.0, nexus=NexusState()), Kind.NEXUS_FULL, 1, mark
        )
    )
    raw[10] ^= 1
    with pytest.raises(CorruptStateError, match="fails its CRC"):
        decode_slot(bytes(raw), Kind.NEXUS_FULL, mark)
    with pytest.raises(CorruptStateError, match="shorter than 32"):
        decode_slot(bytes(raw[:20]), Kind.NEXUS_FULL, mark)
    with pytest.raises(CorruptStateError, match="payload is 26 bytes"):
        decode_payload(bytes(8), Kind.NEXUS_FULL)


@given(st.binary(max_size=200))
def test_arbitrary_media_never_crash_a_boot(medium: bytes) -> None:
    meter = _boot_nexus(MemoryStorage(medium), 0.0)
    assert meter.nv_status in (NVStatus.FRESH, NVStatus.OK, NVStatus.RECOVERED, NVStatus.CORRUPT)


def test_storage_of_another_kind_is_refused(tmp_path: object) -> None:
    medium = MemoryStorage()
    Meter.openpaygo(OPAYGO_KEY, OPAYGO_SC, storage=medium)
    with pytest.raises(ConfigError, match="separate storage"):
        Meter.nexus(KEY, storage=medium)


def test_storage_of_another_key_or_starting_code_is_refused() -> None:
    nexus = MemoryStorage()
    Meter.nexus(KEY, storage=nexus)
    with pytest.raises(ConfigError, match="another device key"):
        Meter.nexus(bytes(16), storage=nexus)
    token = MemoryStorage()
    Meter.openpaygo(OPAYGO_KEY, OPAYGO_SC, storage=token)
    with pytest.raises(ConfigError, match="another device key"):
        Meter.openpaygo(OPAYGO_KEY, OPAYGO_SC + 1, storage=token)


def test_a_format_1_image_is_refused_not_misread() -> None:
    head = b"PGNV\x01\x01" + (48).to_bytes(2, "little") + (7).to_bytes(4, "little")
    legacy = head + bytes(48)
    legacy += crc16(legacy).to_bytes(2, "little")  # a version-1 slot: header, payload, CRC
    assert len(legacy) == 62
    with pytest.raises(ConfigError, match="format-1 meter image"):
        Meter.nexus(KEY, storage=MemoryStorage(legacy))


def test_rate_limit_survives_power_cycles_and_restarts(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "meter.nv"  # type: ignore[operator]
    meter = Meter.nexus(KEY, storage=FileStorage(path))
    for i in range(6):
        assert meter.enter_keycode("*000000000000000#", 0.0).outcome is Outcome.INVALID, i
    assert meter.enter_keycode(full_add(1, 1), 0.0).outcome is Outcome.RATE_LIMITED
    meter.power_cycle(10.0)
    assert meter.enter_keycode(full_add(1, 1), 10.0).outcome is Outcome.RATE_LIMITED
    restarted = Meter.nexus(KEY, storage=FileStorage(path), now=20.0)
    assert restarted.is_rate_limited(20.0)
    assert restarted.enter_keycode(full_add(1, 1), 20.0 + 720).outcome is Outcome.APPLIED
    assert restarted.is_rate_limited(20.0 + 720)


def test_power_cycle_grants_no_more_than_the_grace_count() -> None:
    meter = Meter.nexus(KEY)
    far = 200 * 720.0  # the bucket is full: 128 attempts banked
    meter.advance(far)
    meter.power_cycle(far)
    results = [meter.enter_keycode("*000000000000000#", far).outcome for _ in range(7)]
    assert results == [Outcome.INVALID] * 6 + [Outcome.RATE_LIMITED]


def test_openpaygo_block_survives_restart(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "opaygo.nv"  # type: ignore[operator]
    meter = Meter.openpaygo(OPAYGO_KEY, OPAYGO_SC, storage=FileStorage(path))
    assert meter.enter_keycode("000000001", 0.0).outcome is Outcome.INVALID
    assert meter.enter_keycode("000000002", 1.0).outcome is Outcome.RATE_LIMITED
    restarted = Meter.openpaygo(OPAYGO_KEY, OPAYGO_SC, storage=FileStorage(path), now=2.0)
    _, token = opaygo_token(1, 3)
    assert restarted.enter_keycode(token, 30.0).outcome is Outcome.RATE_LIMITED
    assert restarted.enter_keycode(token, 61.0).outcome is Outcome.APPLIED
    assert restarted.credit_remaining(61.0) == 3 * DAY


def test_credit_and_used_codes_survive_restart(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "m.nv"  # type: ignore[operator]
    meter = Meter.nexus(KEY, storage=FileStorage(path), rate_limit=None)
    code = full_add(1, 24)
    assert meter.enter_keycode(code, 0.0).outcome is Outcome.APPLIED
    restarted = Meter.nexus(KEY, storage=FileStorage(path), rate_limit=None, now=3600.0)
    assert restarted.credit_remaining(3600.0) == 23 * 3600
    assert restarted.enter_keycode(code, 3600.0).outcome is Outcome.DUPLICATE
    restarted.enter_keycode(full_unlock(2), 3601.0)
    again = Meter.nexus(KEY, storage=FileStorage(path), rate_limit=None, now=3602.0)
    assert again.credit_remaining(1e12) == math.inf


@given(
    credit=credits,
    nexus=nexus_states,
    grace=st.integers(0, 255),
    clock=times,
    seq=st.integers(0, 3),
)
def test_a_save_writes_the_slot_the_snapshot_encodes(
    credit: Credit, nexus: NexusState, grace: int, clock: float, seq: int
) -> None:
    # The meter saves from its parts (`save_state`), never building a Snapshot: the bytes on
    # the medium must be exactly `encode_slot` of the snapshot it stands for.
    snap = Snapshot(credit=credit, clock=clock, nexus=nexus, grace=grace)
    medium = MemoryStorage()
    store = NVStore(medium, Kind.NEXUS_SMALL, 0xBEEF)
    store._seq, store._slot = (seq - 1) & 3, 1
    assert store.save_state(encode_nexus_state(nexus, credit, grace), clock)
    assert bytes(medium.data) == encode_slot(snap, Kind.NEXUS_SMALL, seq, 0xBEEF)
    assert not store.save(snap)  # same state: no second write
