"""Profiles (built-in and TOML) and scripted outage files: values and precise errors."""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from field_lab.link import (
    BUILTIN_PROFILES,
    ConfigError,
    Outage,
    OutageFileError,
    ProfileError,
    get_profile,
    load_profiles,
    parse_outages,
    parse_profiles,
)
from field_lab.link.outages import OnOff, OutageSchedule


@pytest.mark.parametrize(
    ("name", "rtt", "down", "up", "loss"),
    [
        ("gprs-typ", 0.8, 40_000, 20_000, 0.01),
        ("gprs-bad", 1.5, 20_000, 10_000, 0.03),
        ("edge-typ", 0.4, 120_000, 60_000, 0.01),
        ("3g", 0.3, 750_000, 250_000, 0.005),
    ],
)
def test_builtins_follow_the_design_table(
    name: str, rtt: float, down: float, up: float, loss: float
) -> None:
    profile = BUILTIN_PROFILES[name]
    assert (profile.rtt_s, profile.down_bps, profile.up_bps) == (rtt, down, up)
    assert profile.loss is not None
    assert profile.loss.mean_loss == pytest.approx(loss)


def test_offline_and_perfect() -> None:
    assert BUILTIN_PROFILES["offline"].offline
    perfect = BUILTIN_PROFILES["perfect"]
    assert not perfect.offline
    assert math.isinf(perfect.down_bps)
    assert perfect.loss is None
    assert BUILTIN_PROFILES["gprs-bad"].outages is not None


def test_toml_profile_with_units_and_base() -> None:
    profiles = parse_profiles(
        """
        [profile.village]
        base = "gprs-typ"
        rtt_ms = 950
        down_kbps = 32
        loss = 0.02
        loss_burst = 3.0
        queue_bytes = 16000
        outage_mean_up_s = 120
        outage_mean_down_s = 10

        [profile.ge]
        gilbert_elliott = { p = 0.01, r = 0.3 }
        """
    )
    village = profiles["village"]
    assert village.rtt_s == pytest.approx(0.95)
    assert village.down_bps == 32_000
    assert village.up_bps == 20_000  # from the base
    assert village.loss is not None
    assert village.loss.mean_loss == pytest.approx(0.02)
    assert village.outages == OnOff(120.0, 10.0)
    assert village.queue_bytes == 16_000
    assert profiles["ge"].loss is not None
    assert profiles["ge"].loss.p == 0.01
    assert math.isinf(profiles["ge"].down_bps)  # base defaults to perfect


def test_trace_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "up.trace").write_text("300\n")
    (tmp_path / "p.toml").write_text('[profile.t]\nup_trace = "up.trace"\n')
    profile = load_profiles(tmp_path / "p.toml")["t"]
    assert profile.up_trace is not None
    assert profile.rate_bps("up") == pytest.approx(40_000)


@pytest.mark.parametrize(
    ("text", "where", "fragment"),
    [
        ("[profile.a]\nrtt = 5\n", "profile.a", "unknown keys ['rtt']"),
        ('[profile.a]\nrtt_ms = "fast"\n', "profile.a.rtt_ms", "expected a number"),
        ("[profile.a]\nrtt_ms = true\n", "profile.a.rtt_ms", "expected a number"),
        ("[profile.a]\nrtt_ms = -1\n", "rtt_s", "must be finite and >= 0"),
        ("[profile.a]\nrtt_ms = 100\njitter_ms = 200\n", "jitter_s", "must not exceed"),
        ('[profile.a]\nbase = "lte"\n', "profile.a.base", "unknown built-in 'lte'"),
        ("[profile.a]\nloss_burst = 3\n", "profile.a.loss_burst", "needs `loss`"),
        ("[profile.a]\nloss = 1.5\n", "profile.a", "loss must be within"),
        ("[profile.a]\nloss = 0.1\ngilbert_elliott = {p=0.1, r=0.2}\n", "profile.a", "not both"),
        ("[profile.a]\ngilbert_elliott = {p = 0.1}\n", "gilbert_elliott", "needs p and r"),
        ("[profile.a]\nqueue_bytes = 1.5\n", "profile.a.queue_bytes", "expected an integer"),
        ("[profile.a]\nqueue_bytes = 10\n", "queue_bytes", "at least one MTU"),
        ("[profile.a]\noutage_mean_up_s = 10\n", "profile.a", "both"),
        ("[profile.a]\nup_trace = 5\n", "profile.a.up_trace", "file path"),
        ("[profile]\n", "p.toml", "no profiles"),
        ("[other]\n", "p.toml", "unknown top-level"),
        ("[profile.a\n", "p.toml", "invalid TOML"),
    ],
)
def test_profile_errors_name_the_key(text: str, where: str, fragment: str) -> None:
    with pytest.raises(ProfileError) as info:
        parse_profiles(text, "p.toml")
    assert where in info.value.where
    assert fragment in str(info.value)


@given(st.text(max_size=300))
def test_arbitrary_profile_text_gives_profiles_or_a_config_error(text: str) -> None:
    try:
        profiles = parse_profiles(text)
    except ConfigError:
        return
    assert profiles


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)  # ints and floats, including inf and nan, are TOML as Python prints them


toml_values = st.one_of(
    st.booleans(),
    st.integers(-(10**6), 10**7),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["gprs-typ", "nope", "", "x.trace"]),
)
profile_keys = st.sampled_from(
    ["base", "rtt_ms", "down_kbps", "up_kbps", "jitter_ms", "loss", "loss_burst",
     "retransmit_ms", "wakeup_ms", "idle_s", "reset_after_s", "queue_bytes", "mtu",
     "header_bytes", "outage_mean_up_s", "outage_mean_down_s", "bogus"]
)  # fmt: skip


@given(st.dictionaries(profile_keys, toml_values, max_size=8))
def test_any_profile_table_gives_a_valid_profile_or_a_profile_error(
    table: dict[str, object],
) -> None:
    text = "[profile.p]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in table.items())
    try:
        profile = parse_profiles(text, "p.toml")["p"]
    except ProfileError as exc:
        where = exc.where
    else:
        assert profile.rtt_s >= 0
        assert profile.jitter_s <= profile.rtt_s
        assert profile.queue_bytes >= profile.mtu > profile.header_bytes >= 0
        assert profile.loss is None or 0.0 <= profile.loss.mean_loss < 1.0
        return
    assert where.startswith("p.toml") or "profile 'p'" in where  # the error says where


def test_get_profile_lists_what_exists() -> None:
    custom = parse_profiles("[profile.mine]\nrtt_ms = 10\n")
    assert get_profile("mine", custom).rtt_s == pytest.approx(0.01)
    assert get_profile("3g", custom) is BUILTIN_PROFILES["3g"]
    with pytest.raises(ProfileError, match="mine"):
        get_profile("lte", custom)


def test_outage_script() -> None:
    outages = parse_outages(
        "[[outage]]\nstart_s = 10\nduration_s = 5\n[[outage]]\nstart_s = 20\nduration_s = 1.5\n"
    )
    assert outages == [Outage(10.0, 5.0), Outage(20.0, 1.5)]
    assert parse_outages("") == []


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[[outage]]\nstart_s = 1\n", "expected a number"),
        ("[[outage]]\nstart_s = -1\nduration_s = 1\n", "start_s"),
        ("[[outage]]\nstart_s = 1\nduration_s = 0\n", "duration_s"),
        ("[[outage]]\nstart_s = 1\nduration_s = true\n", "expected a number"),
        ("[[outage]]\nstart_s = 1\nduration_s = 1\nwhy = 2\n", "unknown keys"),
        ("[[outage]]\nstart_s=0\nduration_s=5\n[[outage]]\nstart_s=3\nduration_s=1\n", "before"),
        ("outage = 3\n", "array of tables"),
        ("[x]\n", "unknown top-level"),
        ("[[outage]\n", "invalid TOML"),
    ],
)
def test_outage_errors(text: str, fragment: str) -> None:
    with pytest.raises(OutageFileError, match=fragment):
        parse_outages(text, "o.toml")


@given(st.text(max_size=300))
def test_arbitrary_outage_text_gives_outages_or_an_error(text: str) -> None:
    try:
        outages = parse_outages(text)
    except OutageFileError:
        return
    assert all(a.end_s <= b.start_s for a, b in itertools.pairwise(outages))


def test_schedule_stalls_busy_time_across_outages() -> None:
    schedule = OutageSchedule([Outage(1.0, 2.0), Outage(4.0, 1.0)])
    assert schedule.up_time_end(0.0, 0.5) == 0.5
    assert schedule.up_time_end(0.5, 1.0) == 3.5  # 0.5 s before, the rest after the outage
    assert schedule.up_time_end(1.5, 1.0) == 4.0  # starts when the first outage ends
    assert schedule.up_time_end(2.0, 1.5) == 5.5
    assert schedule.next_up(2.0) == 3.0
    assert schedule.next_up(3.5) == 3.5


def test_random_outages_are_seeded_and_have_the_right_duty_cycle() -> None:
    def down_share(seed: int) -> float:
        schedule = OutageSchedule(onoff=OnOff(60.0, 20.0), rng=random.Random(seed))
        schedule.first_ending_after(200_000.0)
        known = [o for o in schedule.known() if o.end_s <= 200_000.0]
        return sum(o.duration_s for o in known) / 200_000.0

    assert down_share(1) == down_share(1)
    assert down_share(1) != down_share(2)
    assert down_share(1) == pytest.approx(20 / 80, rel=0.1)
