"""Frame codecs: round trips, the compression rule, and bad bytes never escaping as anything but
FrameError."""

from __future__ import annotations

import contextlib
import zlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_client.protocol.errors import FrameError
from agent_client.protocol.frames import (
    MAX_BODY_BYTES,
    MIN_DEFLATE_BYTES,
    VERSION,
    DownlinkFrame,
    Payment,
    Reason,
    Unknown,
    UplinkFrame,
    decode_downlink,
    decode_uplink,
    encode_downlink,
    encode_uplink,
    runs,
    unruns,
)
from agent_client.protocol.ops import Kind, Operation
from agent_client.strategies import downlink_frames, uplink_frames


@given(uplink_frames())
def test_uplink_round_trip(frame: UplinkFrame) -> None:
    assert decode_uplink(encode_uplink(frame)) == frame


@given(downlink_frames())
def test_downlink_round_trip(frame: DownlinkFrame) -> None:
    assert decode_downlink(encode_downlink(frame)) == frame


@given(uplink_frames(), st.integers(0, 2**20), st.booleans())
def test_the_last_uplink_remembered_is_the_frame_s_own(
    frame: UplinkFrame, cursor: int, compress: bool
) -> None:
    """Encoding the same ops (the same tuple, as a sync sizes its batch and then sends it)
    gives what a fresh encoding of an equal frame gives, whatever header or option changed."""
    first = encode_uplink(frame, compress=compress)
    same_ops = UplinkFrame(frame.handset, cursor, frame.ops)
    assert encode_uplink(same_ops, compress=compress) == encode_uplink(
        UplinkFrame(frame.handset, cursor, tuple(iter(frame.ops))), compress=compress
    )
    assert decode_uplink(encode_uplink(same_ops, compress=compress)).cursor == cursor
    assert encode_uplink(frame, compress=compress) == first
    assert encode_uplink(frame, compress=not compress) == encode_uplink(
        UplinkFrame(frame.handset, frame.cursor, tuple(iter(frame.ops))), compress=not compress
    )


@given(uplink_frames())
def test_compressed_only_when_smaller(frame: UplinkFrame) -> None:
    body = encode_uplink(frame)
    obj = msgpack.unpackb(body)
    if isinstance(obj, bytes):
        assert len(body) < len(zlib.decompress(obj))
    elif len(body) >= MIN_DEFLATE_BYTES:
        assert len(msgpack.packb(zlib.compress(body, 9))) >= len(body)
    else:  # a small frame is never deflated, even when that would save a byte or two
        assert body == encode_uplink(frame, compress=False)


@given(st.sets(st.integers(1, 10**6), max_size=200))
def test_runs_round_trip(seqs: set[int]) -> None:
    assert unruns(runs(seqs), "done") == sorted(seqs)


def test_contiguous_acks_cost_two_integers() -> None:
    assert runs(range(100, 300)) == [100, 200]


def test_sequence_keys_travel_as_deltas() -> None:
    ops = tuple(
        Operation.make(1000 + i, Kind.RECORD_PAYMENT, 1_700_000_000 + i, 7, 500) for i in range(3)
    )
    _, _, _, base_seq, base_at, rows = msgpack.unpackb(encode_uplink(UplinkFrame(3, 0, ops)))
    assert (base_seq, base_at) == (1000, 1_700_000_000)
    assert [row[:3] for row in rows] == [[0, 2, 0], [1, 2, 1], [1, 2, 2]]


@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_frame_errors(body: bytes) -> None:
    for decode in (decode_uplink, decode_downlink):
        with contextlib.suppress(FrameError):
            decode(body)


@given(uplink_frames(), st.data())
def test_mutated_uplink_decodes_or_is_frame_error(frame: UplinkFrame, data: st.DataObject) -> None:
    body = bytearray(msgpack.packb(msgpack.unpackb(encode_uplink(frame))))
    if not body:
        return
    index = data.draw(st.integers(0, len(body) - 1))
    body[index] = data.draw(st.integers(0, 255))
    with contextlib.suppress(FrameError):
        decode_uplink(bytes(body))


@pytest.mark.parametrize(
    ("obj", "code"),
    [
        ({"v": 1}, "malformed_frame"),
        ([2, 1, 0, 0, 0, []], "unsupported_version"),
        ([VERSION, 1, 0, 0, 0], "malformed_frame"),  # too few fields
        ([VERSION, 1, 0, 1, 0, [5]], "malformed_frame"),  # an op row that is not an array
        ([VERSION, 1, 0, 1, 0, [[]]], "malformed_frame"),  # an op row without d_seq
        ([VERSION, "1", 0, 0, 0, []], "bad_field"),
        ([VERSION, 1, 0, 0, 0, [[0, 2, 0, 5, 1]]], "bad_field"),  # seq 0
        ([VERSION, 1, 0, 1, 0, [[1, 2, 0, 5, 1]]], "bad_field"),  # first d_seq is not 0
        ([VERSION, 1, 0, 1, 0, [[0, 2, 0, 5, 1], [0, 2, 0, 5, 1]]], "bad_field"),
        ([VERSION, 1, 0, 1, 0, [[0, 2, 0, 5, 1], ["1", 2, 0, 5, 1]]], "bad_field"),
    ],
)
def test_invalid_uplink_names_the_problem(obj: object, code: str) -> None:
    with pytest.raises(FrameError) as info:
        decode_uplink(msgpack.packb(obj))
    assert info.value.code == code


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ([0, 2, 0, 5], Reason.BAD_FIELD),  # a field missing
        ([0, 9, 0, 5, 1], Reason.UNKNOWN_KIND),
        ([0, "2", 0, 5, 1], Reason.BAD_FIELD),
        ([0, 2, 0, True, 1], Reason.BAD_FIELD),
        ([0, 0, 0, "", "123"], Reason.BAD_FIELD),
        ([0, 0, 0, "x" * 65, "123"], Reason.BAD_FIELD),
        ([0, 2, 0, 5, 0], Reason.BAD_FIELD),  # amount 0
        ([0, 2, -1, 5, 1], Reason.BAD_FIELD),  # d_at below base_at
        ([0, 2, 2**64 - 1, 5, 1], Reason.BAD_FIELD),  # base_at + d_at past msgpack's integers
        ([0, 2, 0, 5, 1, *range(61)], Reason.BAD_FIELD),  # a row of 65 items
    ],
)
def test_a_bad_operation_is_refused_alone(row: list[object], reason: Reason) -> None:
    good = [1, 2, 0, 7, 100]
    frame = decode_uplink(msgpack.packb([VERSION, 1, 0, 10, 5, [row, good]]))
    assert [(b.seq, b.reason) for b in frame.bad] == [(10, reason)]
    assert frame.ops == (Operation.make(11, Kind.RECORD_PAYMENT, 5, 7, 100),)


@given(uplink_frames(), st.data())
def test_one_garbage_operation_never_poisons_the_batch(
    frame: UplinkFrame, data: st.DataObject
) -> None:
    if not frame.ops:
        return
    raw = encode_uplink(frame, compress=False)
    _, handset, cursor, base_seq, base_at, rows = msgpack.unpackb(raw)
    victim = data.draw(st.integers(0, len(rows) - 1))
    numbers = st.integers(-(2**63), 2**64 - 1)  # every integer msgpack carries
    junk = st.one_of(
        st.integers(-5, 2**40), numbers, st.text(max_size=70), st.booleans(), st.none()
    )
    rows[victim] = [rows[victim][0], *data.draw(st.lists(junk, max_size=8))]
    decoded = decode_uplink(msgpack.packb([VERSION, handset, cursor, base_seq, base_at, rows]))
    seqs = [op.seq for op in frame.ops]
    assert [op.seq for op in decoded.ops] + [b.seq for b in decoded.bad] != []
    assert {op.seq for op in decoded.ops} | {b.seq for b in decoded.bad} == set(seqs)
    kept = [op for op in frame.ops if op.seq != seqs[victim]]
    assert [op for op in decoded.ops if op.seq != seqs[victim]] == kept


def test_trailing_fields_from_a_newer_schema_are_ignored() -> None:
    body = msgpack.packb([VERSION, 1, 0, 1, 10, [[0, 2, 0, 5, 100, "new"]], "new"])
    frame = decode_uplink(body)
    assert frame.ops == (Operation.make(1, Kind.RECORD_PAYMENT, 10, 5, 100),)


def test_entry_kinds_from_a_newer_server_keep_their_place() -> None:
    body = msgpack.packb([VERSION, 5, [], [], 4, [[9, "x"], [1, 7, 100, "MM1"]], 0, "new"])
    frame = decode_downlink(body)
    assert frame.entries == (Unknown(9), Payment(7, 100, "MM1"))
    assert frame.last_entry == 5


def test_oversized_body_and_inflation_bomb_are_refused() -> None:
    with pytest.raises(FrameError) as info:
        decode_uplink(b"\x90" * (MAX_BODY_BYTES + 1))
    assert (info.value.code, info.value.status) == ("too_large", 413)
    bomb = msgpack.packb(zlib.compress(b"\x00" * (4 * 1024 * 1024)))
    with pytest.raises(FrameError) as info:
        decode_uplink(bomb)
    assert (info.value.code, info.value.status) == ("too_large", 413)


def test_a_reason_this_code_does_not_know_is_kept_by_number() -> None:
    body = msgpack.packb([VERSION, 5, [3, 1], [3, 42], 1, [], 0])
    ((seq, reason),) = decode_downlink(body).rejected
    assert (seq, int(reason), reason.name) == (3, 42, "REASON_42")


def test_trailing_garbage_is_refused() -> None:
    with pytest.raises(FrameError):
        decode_uplink(msgpack.packb([VERSION, 1, 0, 0, 0, []]) + b"\x00")


@given(st.binary(max_size=100))
def test_stored_payloads_reload_or_are_frame_errors(content: bytes) -> None:
    with contextlib.suppress(FrameError):
        op = Operation.from_content(1, content)
        assert Operation.from_content(1, op.content()) == op
