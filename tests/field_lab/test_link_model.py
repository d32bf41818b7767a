"""The analytical model and floor against the reference's computed tables (§D)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from field_lab.link import BUILTIN_PROFILES, expected_transfer_time, floor_seconds, one_way_time

# §D: 60 B/record + 32 B batch frame up, a 40 B ACK down; the "Floor" rows include headers and
# the loss penalty, which is what expected_transfer_time computes (rounded to 0.1 s there).
REFERENCE_FLOOR_ROWS = [
    ("gprs-typ", (0.9, 1.4, 6.0)),
    ("edge-typ", (0.5, 0.6, 2.3)),
    ("gprs-bad", (1.9, 2.8, 12.5)),
]


@pytest.mark.parametrize(("name", "row"), REFERENCE_FLOOR_ROWS)
def test_model_reproduces_the_reference_floor_rows(name: str, row: tuple[float, ...]) -> None:
    profile = BUILTIN_PROFILES[name]
    for records, expected in zip((1, 20, 200), row, strict=True):
        model = expected_transfer_time(profile, 60 * records + 32, 40)
        assert model == pytest.approx(expected, abs=0.1 + 0.05 * expected), records


def test_floor_is_the_design_formula() -> None:
    gprs = BUILTIN_PROFILES["gprs-typ"]
    assert floor_seconds(gprs, 12_032, 40) == pytest.approx(0.8 + 12_032 * 8 / 20_000 + 0.008)
    assert floor_seconds(gprs, 100, 100, warm=False) == pytest.approx(1.6 + 0.04 + 0.02)
    assert math.isinf(floor_seconds(BUILTIN_PROFILES["offline"], 1, 1))
    assert floor_seconds(BUILTIN_PROFILES["perfect"], 10**6, 10**6) == 0.0
    with pytest.raises(ValueError):
        floor_seconds(gprs, -1, 0)


def test_model_is_never_below_the_floor() -> None:
    for profile in BUILTIN_PROFILES.values():
        if profile.offline:
            continue
        for up, down in [(1, 1), (1000, 10_000), (50_000, 200)]:
            assert expected_transfer_time(profile, up, down) >= floor_seconds(profile, up, down)


@given(
    st.sampled_from(["gprs-typ", "gprs-bad", "edge-typ", "3g"]),
    st.integers(0, 200_000),
    st.integers(0, 200_000),
    st.integers(1, 5_000),
)
def test_model_grows_with_bytes_and_with_cold_starts(
    name: str, up: int, down: int, extra: int
) -> None:
    profile = BUILTIN_PROFILES[name]
    base = expected_transfer_time(profile, up, down)
    assert expected_transfer_time(profile, up + extra, down) > base
    assert expected_transfer_time(profile, up, down + extra) > base
    assert expected_transfer_time(profile, up, down, warm=False) > base
    assert expected_transfer_time(profile, up, down, awake=False) == pytest.approx(
        base + profile.wakeup_s
    )


def test_one_way_rejects_negative_sizes_and_offline_is_infinite() -> None:
    with pytest.raises(ValueError):
        one_way_time(BUILTIN_PROFILES["3g"], "up", -1)
    assert math.isinf(one_way_time(BUILTIN_PROFILES["offline"], "down", 10))
