"""Request signing, freshness and replay rules, and the clock-offset estimate."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_client.protocol.auth import (
    MAX_SKEW_MS,
    SIG_HEADER,
    HandsetKey,
    Stamper,
    parse_claim,
    verify,
)
from agent_client.protocol.errors import AuthError

KEY = HandsetKey.from_seed(bytes(range(32)))
NOW = 1_800_000_000_000


def signed(body: bytes = b"frame", ts: int = NOW, path: str = "/v1/sync") -> dict[str, str]:
    return KEY.headers("POST", path, body, 7, ts)


def check(
    headers: dict[str, str], body: bytes = b"frame", last: int = 0, path: str = "/v1/sync"
) -> None:
    verify(parse_claim(headers), KEY.public, "POST", path, body, now_ms=NOW, last_ms=last)


def test_good_signature_verifies() -> None:
    check(signed())


@pytest.mark.parametrize(
    ("headers", "body", "last", "path", "code"),
    [
        (signed(), b"frame!", 0, "/v1/sync", "bad_signature"),
        (signed(), b"frame", 0, "/v1/other", "bad_signature"),
        (signed(ts=NOW - MAX_SKEW_MS - 1), b"frame", 0, "/v1/sync", "stale_timestamp"),
        (signed(ts=NOW + MAX_SKEW_MS + 1), b"frame", 0, "/v1/sync", "stale_timestamp"),
        (signed(), b"frame", NOW, "/v1/sync", "replayed_request"),
        ({**signed(), SIG_HEADER: "!!"}, b"frame", 0, "/v1/sync", "bad_signature"),
        ({**signed(), SIG_HEADER: "AAAA"}, b"frame", 0, "/v1/sync", "bad_signature"),
        ({"X-Handset": "7"}, b"frame", 0, "/v1/sync", "missing_auth"),
        ({**signed(), "X-Time": "-5"}, b"frame", 0, "/v1/sync", "missing_auth"),
        ({**signed(), "X-Handset": "٣"}, b"frame", 0, "/v1/sync", "missing_auth"),
    ],
)
def test_bad_claims_are_refused_with_a_code(
    headers: dict[str, str], body: bytes, last: int, path: str, code: str
) -> None:
    with pytest.raises(AuthError) as info:
        check(headers, body, last, path)
    assert info.value.code == code


def test_other_key_is_refused() -> None:
    other = HandsetKey.generate()
    with pytest.raises(AuthError):
        verify(
            parse_claim(signed()), other.public, "POST", "/v1/sync", b"frame", now_ms=NOW, last_ms=0
        )


@given(st.lists(st.integers(0, 10**13), min_size=1, max_size=50), st.integers(-(10**9), 10**9))
def test_stamps_strictly_increase(clock: list[int], offset: int) -> None:
    stamper = Stamper(offset_ms=offset)
    stamps = [stamper.stamp(local) for local in clock]
    assert all(b > a for a, b in itertools.pairwise(stamps))


@given(
    st.integers(-(10**8), 10**8),
    st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 5000)), min_size=1, max_size=20),
)
def test_offset_estimate_within_half_the_best_round_trip(
    true_offset: int, legs: list[tuple[int, int]]
) -> None:
    """Whatever the split of each round trip, the estimate errs by at most half the best RTT."""
    stamper = Stamper(window=len(legs))
    local = 1_000_000
    for up, down in legs:
        server = local + up + true_offset
        stamper.observe(local, local + up + down, server)
        local += up + down + 10
    best = min(up + down for up, down in legs)
    assert abs(stamper.offset_ms - true_offset) <= best // 2 + 1


header_values = st.one_of(st.text(max_size=30), st.from_regex(r"[0-9]{1,20}", fullmatch=True))


@given(st.dictionaries(st.sampled_from(["X-Handset", "X-Time", "X-Sig", "Other"]), header_values))
def test_any_headers_parse_or_are_auth_errors(headers: dict[str, str]) -> None:
    try:
        claim = parse_claim(headers)
    except AuthError:
        return
    assert claim.handset >= 1
    assert len(claim.signature) == 64
