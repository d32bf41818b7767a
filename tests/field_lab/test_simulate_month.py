"""The month model: eager validation that names the key, round trips, seeded generators."""

from __future__ import annotations

import copy
import re
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from field_lab.errors import ConfigError
from field_lab.simulate import month
from field_lab.simulate.month import (
    DAY,
    HABITS,
    HOUR,
    PAY_HOURS,
    AgentHours,
    Coverage,
    Month,
    Plan,
    coverage_of,
    habit_of,
    loads,
    parse,
    payments,
    to_dict,
    village_outages,
    working_windows,
)

EXAMPLE = (Path(__file__).parents[2] / "examples" / "a-month.toml").read_text(encoding="utf-8")


def test_the_example_month_parses_with_names_and_times() -> None:
    scenario, m = month.load(Path(__file__).parents[2] / "examples" / "a-month.toml")
    assert (scenario, m) == loads(EXAMPLE)
    assert scenario.fleet.agents == 20
    assert m.days == 30
    assert m.agents == AgentHours((450, 960), (0, 2, 4), 30)
    assert m.plans["solar-home"].price_per_day == 400
    assert m.coverage["hills"].peak == (22 * 60, 2 * 60)
    names = [i.name for i in m.incidents]
    assert names == [
        "platform outage day 3 10:00 (2 h)",
        "operator callbacks 6 h late day 12 00:00 (24 h)",
        "SMS gateway losing 50 % day 20 00:00 (24 h)",
        "agent 17 phone offline day 8 09:00 (72 h)",
    ]
    down = m.incidents[0]
    assert (down.start, down.end) == (3 * DAY + 10 * HOUR, 3 * DAY + 12 * HOUR)
    assert m.incidents[1].effect_end == 13 * DAY + 6 * HOUR
    assert parse(to_dict(m)) == m


def test_the_docs_examples_parse() -> None:
    text = (Path(__file__).parents[2] / "docs" / "simulate.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert len(blocks) == 2
    _, m = loads(blocks[0])
    assert m == Month()  # the documented defaults are the defaults
    _, m = loads(blocks[1])
    assert [i.name for i in m.incidents] == [i.name for i in loads(EXAMPLE)[1].incidents]


def test_a_file_without_a_month_gets_the_default_month() -> None:
    _, m = loads("")
    assert m == Month()
    assert m.incidents == ()


def test_agents_are_resolved_by_index_or_id() -> None:
    _, m = loads(EXAMPLE)
    ids = [f"agent-{i}" for i in range(20)]
    resolved = m.resolve_agents(ids)
    assert resolved.incidents[3].agent == "agent-17"
    assert resolved.incidents[3].scope == month.agent_scope("agent-17")
    assert resolved.incidents[3].name == "agent-17 phone offline day 8 09:00 (72 h)"
    assert (
        m.resolve_agents([f"a{i}" for i in range(20)])
        .incidents[3]
        .name.startswith("agent a17 phone offline")
    )
    assert resolved.resolve_agents(ids) == resolved
    with pytest.raises(ConfigError, match=r"incident\[3\]\.agent: index 17 but the fleet has 5"):
        m.resolve_agents(ids[:5])
    with pytest.raises(ConfigError, match=r"incident\[3\]\.agent: no agent with id 'agent-17'"):
        resolved.resolve_agents(ids[:5])


def test_an_index_and_an_id_of_the_same_agent_are_one_incident_twice() -> None:
    raw = copy.deepcopy(BASE)
    raw["incident"].append({**raw["incident"][3], "agent": "agent-17"})
    m = parse(raw)
    with pytest.raises(ConfigError, match=r"incident\[4\]: the same as incident\[3\]"):
        m.resolve_agents([f"agent-{i}" for i in range(20)])


def test_with_days_revalidates() -> None:
    _, m = loads(EXAMPLE)
    with pytest.raises(ConfigError, match=r"incident\[1\]\.day: expected a number from 0 to 9"):
        m.with_days(10)
    assert m.with_days(31).days == 31


# -- bad input: each names the key -----------------------------------------------------------

BASE: dict[str, Any] = to_dict(loads(EXAMPLE)[1])

BAD: list[tuple[str, Any, str]] = [
    # (path into BASE, bad value, what the error must name)
    ("simulate.days", 0, "simulate.days"),
    ("simulate.days", "30", "simulate.days"),
    ("simulate.days", 2.5, "simulate.days"),
    ("simulate.villages", True, "simulate.villages"),
    ("simulate.agents.hours", ["17:00", "08:00"], "simulate.agents.hours"),
    ("simulate.agents.hours", ["8:00", "17:00"], "simulate.agents.hours[0]"),
    ("simulate.agents.hours", ["08:00"], "simulate.agents.hours"),
    ("simulate.agents.visit_days", [7], "simulate.agents.visit_days[0]"),
    ("simulate.agents.visit_days", [1, 1], "simulate.agents.visit_days"),
    ("simulate.agents.visit_days", [], "simulate.agents.visit_days"),
    ("simulate.agents.jitter_min", -1, "simulate.agents.jitter_min"),
    ("simulate.plans", {}, "simulate.plans"),
    ("simulate.plans.solar-home.price_per_day", 0, "simulate.plans.solar-home.price_per_day"),
    ("simulate.plans.solar-home.habits", {"on_time": 0.5}, "simulate.plans.solar-home.habits"),
    (
        "simulate.plans.solar-home.habits",
        {"on_time": 0.5, "sometimes": 0.5},
        "simulate.plans.solar-home.habits.sometimes",
    ),
    ("simulate.plans.solar-home.late_days", [4, 1], "simulate.plans.solar-home.late_days"),
    ("simulate.coverage.hills.share", 0.5, "simulate.coverage"),
    ("simulate.coverage.hills.outages_per_day", -1, "simulate.coverage.hills.outages_per_day"),
    ("simulate.coverage.hills.peak", ["25:00", "01:00"], "simulate.coverage.hills.peak[0]"),
    ("simulate.coverage.hills.outage_hours", [1], "simulate.coverage.hills.outage_hours"),
    ("incident", {"kind": "platform_down"}, "incident"),
    ("incident.0.kind", "meteor", "incident[0].kind"),
    ("incident.0.day", 30, "incident[0].day"),
    ("incident.0.day", -1, "incident[0].day"),
    ("incident.0.at", "10h", "incident[0].at"),
    ("incident.0.at", 10, "incident[0].at"),
    ("incident.0.hours", 0, "incident[0].hours"),
    ("incident.1.delay_hours", 0, "incident[1].delay_hours"),
    ("incident.2.loss", 1.5, "incident[2].loss"),
    ("incident.3.agent", -2, "incident[3].agent"),
    ("incident.3.agent", "", "incident[3].agent"),
    ("incident.0.loss", 0.5, "incident[0].loss: unknown field"),
    ("incident.2", "sms", "incident[2]"),
]


def _set(raw: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = raw
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def _delete(raw: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    node: Any = raw
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    del node[last]


@pytest.mark.parametrize(("path", "value", "names"), BAD)
def test_bad_values_are_refused_naming_the_key(path: str, value: Any, names: str) -> None:
    raw = copy.deepcopy(BASE)
    _set(raw, path, value)
    with pytest.raises(ConfigError) as caught:
        parse(raw)
    assert str(caught.value).startswith(names), str(caught.value)


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("incident.0.hours", "incident[0].hours: missing"),
        ("incident.1.delay_hours", "incident[1].delay_hours: missing"),
        ("incident.2.loss", "incident[2].loss: missing"),
        ("incident.3.agent", "incident[3].agent: missing"),
    ],
)
def test_missing_incident_keys_are_named(path: str, names: str) -> None:
    raw = copy.deepcopy(BASE)
    _delete(raw, path)
    with pytest.raises(ConfigError, match=names.replace("[", r"\[").replace("]", r"\]")):
        parse(raw)


def test_a_duplicate_incident_is_refused() -> None:
    raw = copy.deepcopy(BASE)
    raw["incident"].append(dict(raw["incident"][0]))
    with pytest.raises(ConfigError, match=r"incident\[4\]: the same as incident\[0\]"):
        parse(raw)


def test_errors_in_the_toml_text_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        loads("[[incident]\nkind=")
    with pytest.raises(ConfigError, match=r"simulate\.colour: unknown field"):
        loads("[simulate]\ncolour = 'red'")
    with pytest.raises(ConfigError, match=r"fleet\.agents"):
        loads("[fleet]\nagents = -1")


KEYS = sorted(
    {"simulate.days", "simulate.villages", "simulate.agents.hours", "simulate.agents.jitter_min"}
    | {p for p, _, _ in BAD}
)
JUNK = st.one_of(
    st.none().map(lambda _: {}),
    st.booleans(),
    st.text(max_size=6),
    st.floats(allow_nan=True),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.lists(st.integers(-5, 30), max_size=3),
    st.dictionaries(st.sampled_from(["kind", "x", "on_time"]), st.integers(-1, 2), max_size=2),
)


@given(st.sampled_from(KEYS), JUNK)
def test_any_value_anywhere_is_taken_or_refused_naming_the_key(path: str, value: Any) -> None:
    """Fuzzing one key: the parse either succeeds and round-trips, or fails naming that key."""
    raw = copy.deepcopy(BASE)
    _set(raw, path, value)
    try:
        m = parse(raw)
    except ConfigError as exc:
        message = str(exc)
    else:
        assert parse(to_dict(m)) == m
        return
    head = path.split(".")
    if head[0] == "incident":
        stem = f"incident[{head[1]}]" if len(head) > 1 else "incident"
    else:
        # a coverage class's share is checked against the others (named by the table)
        stem = "simulate.coverage" if path.endswith(".share") else path
    assert message.startswith(stem), (path, message)


# -- valid months round-trip -----------------------------------------------------------------

clock = st.integers(0, 24 * 60 - 1)
shares = st.lists(st.integers(0, 10), min_size=len(HABITS), max_size=len(HABITS)).filter(
    lambda xs: sum(xs) > 0
)


@st.composite
def months(draw: st.DrawFn) -> Month:
    days = draw(st.integers(1, 40))
    start = draw(st.integers(0, 24 * 60 - 2))
    agents = AgentHours(
        (start, draw(st.integers(start + 1, 24 * 60 - 1))),
        tuple(sorted(draw(st.sets(st.integers(0, 6), min_size=1)))),
        draw(st.integers(0, 180)),
    )
    weights = draw(shares)
    habits = {h: w / 10 for h, w in zip(HABITS, weights, strict=True) if w}
    total = sum(habits.values())
    habits = {h: w / total for h, w in habits.items()}
    lo = draw(st.floats(0, 10))
    plan = Plan(
        draw(st.integers(1, 10_000)),
        draw(st.integers(1, 30)),
        habits,
        (lo, lo + draw(st.floats(0, 10))),
        (lo, lo + 1.0),
    )
    cov = Coverage(
        1.0,
        draw(st.floats(0, 48)),
        (0.5, draw(st.floats(0.5, 72))),
        (draw(clock), draw(clock)),
        draw(st.floats(0, 1)),
    )
    incidents = []
    for kind in draw(st.lists(st.sampled_from(month.INCIDENT_KINDS), max_size=5)):
        incidents.append(
            month.Incident(
                kind,
                draw(st.integers(0, days - 1)),
                draw(clock),
                draw(st.floats(0.01, days * 24.0)),
                draw(st.floats(0.01, 100)) if kind == "operator_delay" else 0.0,
                draw(st.floats(0.01, 1)) if kind == "sms_loss" else 0.0,
                draw(st.one_of(st.integers(0, 99), st.text("ab-1", min_size=1)))
                if kind == "agent_offline"
                else None,
            )
        )
    unique = {i.name: i for i in incidents}
    return Month(
        days,
        draw(st.integers(1, 1000)),
        agents,
        {draw(st.text("abc-", min_size=1, max_size=5)): plan},
        {"c": cov},
        tuple(unique.values()),
    )


@given(months())
def test_valid_months_round_trip(m: Month) -> None:
    assert parse(to_dict(m)) == m


# -- generators ------------------------------------------------------------------------------

plans = st.builds(
    Plan,
    price_per_day=st.integers(1, 1000),
    days_per_payment=st.integers(1, 14),
    late_days=st.tuples(st.floats(0, 3), st.floats(3, 6)),
    advance_days=st.tuples(st.floats(1, 2), st.floats(2, 4)),
)


@given(
    seed=st.integers(0, 2**32),
    customer=st.integers(0, 10**6),
    plan=plans,
    habit=st.sampled_from(HABITS),
    credit_days=st.floats(-5, 10),
    days=st.integers(1, 40),
)
def test_payments_are_seeded_bounded_and_follow_the_habit(
    seed: int, customer: int, plan: Plan, habit: str, credit_days: float, days: int
) -> None:
    kw: dict[str, Any] = {
        "seed": seed,
        "customer": customer,
        "plan": plan,
        "habit": habit,
        "credit_until": credit_days * DAY,
        "days": days,
    }
    made = payments(**kw)
    payments(**{**kw, "customer": customer + 1})  # drawing others changes nothing
    assert payments(**kw) == made
    if habit == "defaulter":
        assert made == ()
    credit_until = credit_days * DAY
    last = -1.0
    for p in made:
        assert 0 <= p.at < days * DAY
        assert PAY_HOURS[0] <= p.at % DAY < PAY_HOURS[1]
        assert p.at > last
        assert (p.amount, p.days) == (
            plan.price_per_day * plan.days_per_payment,
            plan.days_per_payment,
        )
        if habit == "advance" and credit_until >= DAY:
            assert p.at < credit_until  # pays before credit runs out
        if habit == "late" and last >= 0:
            assert p.at >= credit_until + plan.late_days[0] * DAY
        credit_until = max(credit_until, p.at) + p.days * DAY
        last = p.at
    if habit != "defaulter" and credit_until < (days - 7) * DAY:
        pytest.fail(f"a paying customer stopped paying: credit until {credit_until / DAY:.1f}")


def test_habits_follow_the_plan_shares() -> None:
    plan = Plan(habits={"on_time": 0.5, "late": 0.3, "defaulter": 0.2})
    drawn = [habit_of(3, c, plan) for c in range(4000)]
    assert drawn == [habit_of(3, c, plan) for c in range(4000)]
    assert "advance" not in drawn
    assert abs(drawn.count("on_time") / 4000 - 0.5) < 0.04
    assert abs(drawn.count("defaulter") / 4000 - 0.2) < 0.04


coverages = st.builds(
    Coverage,
    share=st.just(1.0),
    outages_per_day=st.floats(0, 6),
    outage_hours=st.tuples(st.floats(0.01, 1), st.floats(1, 8)),
    peak=st.tuples(clock, clock),
    peak_share=st.floats(0, 1),
)


@given(
    seed=st.integers(0, 2**32),
    village=st.integers(0, 10**4),
    cov=coverages,
    days=st.integers(1, 31),
)
def test_village_outages_are_seeded_sorted_disjoint_and_in_the_month(
    seed: int, village: int, cov: Coverage, days: int
) -> None:
    windows = village_outages(seed=seed, village=village, coverage=cov, days=days)
    assert windows == village_outages(seed=seed, village=village, coverage=cov, days=days)
    for a, b in windows:
        assert 0 <= a < b <= days * DAY
    for (_, b), (a, _) in pairwise(windows):
        assert b < a
    if cov.outages_per_day == 0:
        assert windows == ()


def test_outages_start_in_the_peak_window_when_peak_share_is_one() -> None:
    cov = Coverage(outages_per_day=4, outage_hours=(0.1, 0.2), peak=(22 * 60, 2 * 60), peak_share=1)
    windows = village_outages(seed=1, village=2, coverage=cov, days=30)
    assert len(windows) > 60
    for a, _ in windows:
        minute = (a % DAY) / 60
        assert minute >= 22 * 60 or minute < 2 * 60


def test_outage_rate_and_coverage_classes_follow_the_config() -> None:
    cov = Coverage(outages_per_day=2, outage_hours=(0.01, 0.02), peak_share=0)
    count = sum(len(village_outages(seed=4, village=v, coverage=cov, days=30)) for v in range(20))
    assert 1000 < count < 1400  # 20 villages x 30 days x 2 a day (a few merge)
    m = Month(coverage={"good": Coverage(share=0.75), "poor": Coverage(share=0.25)})
    classes = [coverage_of(9, v, m) for v in range(2000)]
    assert abs(classes.count("poor") / 2000 - 0.25) < 0.04


@given(
    seed=st.integers(0, 2**32),
    agent=st.integers(0, 10**4),
    start=st.integers(0, 22 * 60),
    length=st.integers(1, 60 * 8),
    visit=st.sets(st.integers(0, 6), min_size=1),
    jitter=st.integers(0, 180),
    days=st.integers(1, 40),
)
def test_working_windows_are_seeded_and_on_visit_days_within_hours(
    seed: int, agent: int, start: int, length: int, visit: set[int], jitter: int, days: int
) -> None:
    hours = AgentHours((start, min(start + length, 24 * 60 - 1)), tuple(sorted(visit)), jitter)
    windows = working_windows(seed=seed, agent=agent, hours=hours, days=days)
    assert windows == working_windows(seed=seed, agent=agent, hours=hours, days=days)
    assert len(windows) == sum(1 for d in range(days) if d % 7 in visit)
    for a, b in windows:
        day = int(a // DAY)
        assert day % 7 in visit
        assert day * DAY <= a < b <= (day + 1) * DAY
        assert a >= day * DAY + (hours.hours[0] - jitter) * 60 - 1e-6
        assert b <= day * DAY + (hours.hours[1] + jitter) * 60 + 60 + 1e-6
        assert b - a >= 60


def test_late_starters_keep_their_window_inside_the_day() -> None:
    hours = AgentHours((23 * 60 + 50, 23 * 60 + 59), (0, 1, 2, 3, 4, 5, 6), 30)
    for agent in range(50):
        for a, b in working_windows(seed=1, agent=agent, hours=hours, days=3):
            assert int(a // DAY) == int((b - 1e-9) // DAY)
            assert b - a >= 60
