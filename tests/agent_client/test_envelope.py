"""Sync v2's envelope: what is sealed opens to the same claim and frame, and any change to a
byte the tag covers (handset, time, frame, tag) is caught."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_client.protocol import envelope
from agent_client.protocol.errors import AuthError, FrameError, ProtocolError
from agent_client.protocol.frames import MAX_MS
from agent_client.protocol.ops import U32

seeds = st.binary(min_size=32, max_size=32)
handsets = st.integers(1, U32)
times = st.integers(0, MAX_MS)
frames = st.binary(max_size=300)


@given(seeds, handsets, times, frames)
def test_a_sealed_body_opens_and_verifies(seed: bytes, handset: int, ts: int, frame: bytes) -> None:
    key = envelope.sync_key(seed)
    claim, opened = envelope.open_envelope(envelope.seal(key, handset, ts, frame))
    assert (claim.handset, claim.ts_ms, opened) == (handset, ts, frame)
    envelope.check_tag(claim, key, opened)


@given(seeds, handsets, times, frames.filter(bool), st.data())
def test_any_flipped_byte_is_refused(
    seed: bytes, handset: int, ts: int, frame: bytes, data: st.DataObject
) -> None:
    key = envelope.sync_key(seed)
    body = bytearray(envelope.seal(key, handset, ts, frame))
    i = data.draw(st.integers(0, len(body) - 1))
    body[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(ProtocolError):
        verify(key, bytes(body))


def verify(key: bytes, body: bytes) -> None:
    claim, opened = envelope.open_envelope(body)
    envelope.check_tag(claim, key, opened)


@given(seeds, seeds.filter(lambda s: s != bytes(32)), handsets, times, frames)
def test_another_handsets_key_does_not_verify(
    seed: bytes, other: bytes, handset: int, ts: int, frame: bytes
) -> None:
    if seed == other:
        return
    claim, opened = envelope.open_envelope(
        envelope.seal(envelope.sync_key(other), handset, ts, frame)
    )
    with pytest.raises(AuthError, match="tag"):
        envelope.check_tag(claim, envelope.sync_key(seed), opened)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "malformed_frame"),
        (b"\xc1", "malformed_frame"),
        (bytes.fromhex("9601"), "malformed_frame"),  # truncated
        (bytes.fromhex("960107280000 90".replace(" ", "")), "unsupported_version"),  # a v1 frame
        (bytes.fromhex("930207") + bytes.fromhex("01"), "missing_auth"),
        (bytes.fromhex("94020000c410") + bytes(16), "missing_auth"),  # handset 0
        (bytes.fromhex("94020701c408") + bytes(8), "missing_auth"),  # short tag
    ],
)
def test_bad_envelopes_are_refused_by_name(body: bytes, code: str) -> None:
    with pytest.raises((FrameError, AuthError)) as info:
        envelope.open_envelope(body)
    assert info.value.code == code
