"""Attribution of dark time: a hand-checked case, and properties against a per-slot reference."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from field_lab.errors import HarnessError
from field_lab.simulate.darkness import (
    LINK_OUTAGE,
    Dark,
    DarkHours,
    Delivery,
    Outage,
    Stage,
    attribute,
    ms,
)
from field_lab.simulate.month import DAY, HOUR, Incident

H = HOUR


def test_one_payment_during_a_platform_outage() -> None:
    """Day 0 10:00: the customer pays with 30 min of credit left; the platform is down from
    10:00 for 2 h. Dark from 10:30 until the code is typed at 12:00 (the callback lands at
    12:00, the code is issued and typed in the same second): 1.5 h dark after payment, all the
    outage's, nothing unpaid."""
    down = Incident("platform_down", day=0, at_min=600, hours=2)
    delivery = Delivery(
        "m1",
        paid_at=10 * H,
        applied_at=12 * H,
        stages=(
            Stage("operator", 10 * H, 12 * H),
            Stage("platform", 12 * H, 12 * H),
            Stage("delivery", 12 * H, 12 * H, via="sms"),
            Stage("entry", 12 * H, 12 * H),
        ),
    )
    dark = attribute(
        dark=[Dark("m1", 10.5 * H, 12 * H)],
        deliveries=[delivery],
        incidents=[down],
        outages=[],
        start=0,
        end=DAY,
    )
    assert dark.unpaid_ms == 0
    assert dark.paid_waiting_ms == 90 * 60_000
    assert dark.by_cause_ms == {"platform_down": 90 * 60_000}
    assert dark.by_incident[down.name].ms == 90 * 60_000
    assert dark.by_incident[down.name].households == 1
    assert dark.households == 1
    assert dark.hourly_waiting[9:13] == (0, 1, 1, 0)
    assert dark.days[0].waiting_households == 1


def test_after_the_outage_the_stages_own_causes_take_over() -> None:
    """Same payment, but the code reaches the customer by SMS 10 min after the outage and is
    typed 5 min later; before paying the meter was already dark for an hour."""
    down = Incident("platform_down", day=0, at_min=600, hours=2)
    delivery = Delivery(
        "m1",
        10 * H,
        12.25 * H,
        (
            Stage("operator", 10 * H, 12 * H),
            Stage("platform", 12 * H, 12 * H + 60),
            Stage("delivery", 12 * H + 60, 12 * H + 600, via="sms"),
            Stage("entry", 12 * H + 600, 12.25 * H),
        ),
    )
    dark = attribute(
        dark=[Dark("m1", 9 * H, 12.25 * H)],
        deliveries=[delivery],
        incidents=[down],
        outages=[],
        start=0,
        end=DAY,
    )
    assert dark.unpaid_ms == 3_600_000
    assert dark.by_cause_ms == {
        "platform_down": 7_200_000,
        "platform": 60_000,
        "sms_delay": 540_000,
        "customer_entry": 300_000,
    }


def test_an_unapplied_payment_waits_to_the_end_of_the_run_and_link_outages_count() -> None:
    delivery = Delivery(
        "m2",
        DAY + 8 * H,
        None,
        (
            Stage("operator", DAY + 8 * H, DAY + 8 * H + 10),
            Stage("platform", DAY + 8 * H + 10, DAY + 8 * H + 11),
            Stage("delivery", DAY + 8 * H + 11, DAY + 8 * H + 11, via="agent", scope="agent:a"),
        ),
    )
    dark = attribute(
        dark=[Dark("m2", 0, 5 * DAY)],
        deliveries=[delivery],
        incidents=[],
        outages=[Outage("agent:a", DAY + 9 * H, DAY + 10 * H), Outage("agent:b", 0, 2 * DAY)],
        start=0,
        end=2 * DAY,
    )
    assert dark.unpaid_ms == ms(DAY + 8 * H)
    assert dark.by_cause_ms == {
        "operator_latency": 10_000,
        "platform": 1_000,
        LINK_OUTAGE: 3_600_000,
        "agent_delay": ms(16 * H - 11) - 3_600_000,
    }
    assert [d.day for d in dark.days] == [0, 1]
    assert dark.days[0].paid_waiting_ms == 0
    assert dark.days[1].unpaid_ms == ms(8 * H)
    assert len(dark.hourly_dark) == 48


@pytest.mark.parametrize(
    "make",
    [
        lambda: Stage("cooking", 0, 1),
        lambda: Stage("delivery", 0, 1),
        lambda: Stage("platform", 0, 1, via="sms"),
        lambda: Stage("entry", 2, 1),
        lambda: Dark("m", 2, 1),
        lambda: Delivery("m", 0, None, ()),
        lambda: Delivery("m", 0, 5, (Stage("operator", 1, 5),)),
        lambda: Delivery("m", 0, 5, (Stage("operator", 0, 2), Stage("entry", 3, 5))),
        lambda: Delivery("m", 0, 6, (Stage("operator", 0, 5),)),
    ],
)
def test_inconsistent_records_are_the_harness_fault(make: object) -> None:
    with pytest.raises(HarnessError):
        make()  # type: ignore[operator]


# -- properties against a per-slot reference ------------------------------------------------
#
# Every time in the generated cases is a multiple of SLOT seconds, so the answer is constant
# over each slot and the reference can classify slot by slot, straight from the rules.

SLOT = 900  # 15 min
SLOTS = 2 * 96  # two days
METERS = ("m0", "m1", "m2")
SCOPES = ("", "agent:a", "agent:b", "village:1")
OWN = {
    ("operator", ""): "operator_latency",
    ("platform", ""): "platform",
    ("delivery", "sms"): "sms_delay",
    ("delivery", "agent"): "agent_delay",
    ("delivery", "metrics"): "metrics_delay",
    ("entry", ""): "customer_entry",
}
HITS = {
    "platform_down": {
        ("operator", ""),
        ("platform", ""),
        ("delivery", "agent"),
        ("delivery", "metrics"),
    },
    "operator_delay": {("operator", "")},
    "sms_loss": {("delivery", "sms")},
    "agent_offline": {("delivery", "agent")},
}

slot = st.integers(0, SLOTS)


@st.composite
def stages_from(draw: st.DrawFn, paid: int) -> tuple[Stage, ...]:
    kinds = draw(st.lists(st.sampled_from(list(OWN)), min_size=1, max_size=4))
    out, t = [], paid
    for name, via in kinds:
        length = draw(st.integers(0, 24))
        scope = draw(st.sampled_from(SCOPES))
        out.append(Stage(name, t * SLOT, (t + length) * SLOT, via=via, scope=scope))
        t += length
    return tuple(out)


@st.composite
def deliveries(draw: st.DrawFn) -> Delivery:
    paid = draw(st.integers(0, SLOTS - 1))
    stages = draw(stages_from(paid))
    applied = draw(st.booleans())
    return Delivery(
        draw(st.sampled_from(METERS)),
        paid * SLOT,
        stages[-1].end if applied else None,
        stages,
    )


@st.composite
def incidents(draw: st.DrawFn) -> Incident:
    kind = draw(st.sampled_from(sorted(HITS)))
    return Incident(
        kind,
        draw(st.integers(0, 1)),
        draw(st.integers(0, 95)) * 15,
        draw(st.integers(1, 40)) / 4,
        draw(st.integers(1, 16)) / 4 if kind == "operator_delay" else 0.0,
        0.5 if kind == "sms_loss" else 0.0,
        draw(st.sampled_from(["a", "b"])) if kind == "agent_offline" else None,
    )


@dataclass(frozen=True)
class Case:
    dark: list[Dark]
    deliveries: list[Delivery]
    incidents: list[Incident]
    outages: list[Outage]
    end: int


@st.composite
def cases(draw: st.DrawFn) -> Case:
    darks = [
        Dark(draw(st.sampled_from(METERS)), a * SLOT, (a + n) * SLOT)
        for a, n in draw(st.lists(st.tuples(slot, st.integers(0, 60)), max_size=6))
    ]
    outages = [
        Outage(draw(st.sampled_from(SCOPES[1:])), a * SLOT, (a + n) * SLOT)
        for a, n in draw(st.lists(st.tuples(slot, st.integers(0, 30)), max_size=4))
    ]
    unique = {i.name: i for i in draw(st.lists(incidents(), max_size=4))}
    return Case(
        darks,
        draw(st.lists(deliveries(), max_size=5)),
        list(unique.values()),
        outages,
        draw(st.integers(SLOTS // 2, SLOTS)) * SLOT,
    )


def run(case: Case, incidents: list[Incident] | None = None) -> DarkHours:
    return attribute(
        dark=case.dark,
        deliveries=case.deliveries,
        incidents=case.incidents if incidents is None else incidents,
        outages=case.outages,
        start=0,
        end=case.end,
    )


def reference(case: Case) -> tuple[Counter[str], Counter[str], dict[str, set[str]]]:
    """(ms per cause incl. "unpaid", ms per incident, households per incident), slot by slot."""
    causes: Counter[str] = Counter()
    by_incident: Counter[str] = Counter()
    households: dict[str, set[str]] = {}
    ranked = sorted(enumerate(case.incidents), key=lambda p: (p[1].start, p[0]))
    for meter in METERS:
        for k in range(case.end // SLOT):
            t = k * SLOT
            if not any(d.meter == meter and d.start <= t < d.end for d in case.dark):
                continue
            pending = [
                p
                for p in case.deliveries
                if p.meter == meter
                and p.paid_at <= t < (case.end if p.applied_at is None else p.applied_at)
            ]
            if not pending:
                causes["unpaid"] += SLOT * 1000
                continue
            p = min(pending, key=lambda p: p.paid_at)  # stable: first listed among equals
            stage = next((s for s in p.stages if s.start <= t < s.end), p.stages[-1])
            key = (stage.name, stage.via if stage.name == "delivery" else "")
            cause, name = OWN[key], None
            if stage.scope and any(
                o.scope == stage.scope and o.start <= t < o.end for o in case.outages
            ):
                cause = LINK_OUTAGE
            for _, inc in ranked:
                if (
                    inc.start <= t < inc.effect_end
                    and stage.start < inc.end
                    and key in HITS[inc.kind]
                    and (inc.kind != "agent_offline" or stage.scope == f"agent:{inc.agent}")
                ):
                    cause, name = inc.kind, inc.name
                    break
            causes[cause] += SLOT * 1000
            if name is not None:
                by_incident[name] += SLOT * 1000
                households.setdefault(name, set()).add(meter)
    return causes, by_incident, households


@given(cases())
def test_every_dark_slot_goes_to_exactly_the_cause_the_rules_name(case: Case) -> None:
    dark = run(case)
    causes, by_incident, households = reference(case)
    assert dark.unpaid_ms == causes.pop("unpaid", 0)
    assert dark.by_cause_ms == {c: v for c, v in causes.items() if v}
    assert {n: i.ms for n, i in dark.by_incident.items() if i.ms} == dict(by_incident)
    assert {n: i.households for n, i in dark.by_incident.items() if i.ms} == {
        n: len(m) for n, m in households.items()
    }


@given(cases())
def test_the_sums_add_up_exactly(case: Case) -> None:
    dark = run(case)
    total = 0
    for meter in METERS:
        slots = {
            k
            for d in case.dark
            if d.meter == meter
            for k in range(int(d.start) // SLOT, int(d.end) // SLOT)
            if k * SLOT < case.end
        }
        total += len(slots) * SLOT * 1000
    assert dark.unpaid_ms + dark.paid_waiting_ms == total
    assert sum(dark.by_cause_ms.values()) == dark.paid_waiting_ms
    assert sum(i.ms for i in dark.by_incident.values()) == sum(
        v for c, v in dark.by_cause_ms.items() if c in HITS
    )
    assert sum(d.unpaid_ms for d in dark.days) == dark.unpaid_ms
    assert sum(d.paid_waiting_ms for d in dark.days) == dark.paid_waiting_ms
    for d in dark.days:
        assert sum(d.by_cause_ms.values()) == d.paid_waiting_ms
        assert d.waiting_households <= d.dark_households <= dark.households
    assert all(w <= a for w, a in zip(dark.hourly_waiting, dark.hourly_dark, strict=True))
    assert max(dark.hourly_dark, default=0) <= dark.households
    # hour by hour: a meter dark for a whole hour is counted in it
    assert sum(dark.hourly_dark) * 3_600_000 >= total


@given(cases(), st.data())
def test_moving_an_incident_away_hands_its_hours_to_what_else_explains_them(
    case: Case, data: st.DataObject
) -> None:
    if not case.incidents:
        return
    i = data.draw(st.integers(0, len(case.incidents) - 1))
    gone = case.incidents[i]
    moved = list(case.incidents)
    moved[i] = replace(gone, day=5)  # after the run
    before, after = run(case), run(case, moved)
    assert (after.unpaid_ms, after.paid_waiting_ms) == (before.unpaid_ms, before.paid_waiting_ms)
    assert after.by_incident[moved[i].name].ms == 0
    freed = before.by_incident[gone.name].ms
    for name, inc in before.by_incident.items():
        if name != gone.name:
            assert after.by_incident[name].ms >= inc.ms  # the others only gain
    for cause in set(before.by_cause_ms) | set(after.by_cause_ms):
        delta = after.by_cause_ms.get(cause, 0) - before.by_cause_ms.get(cause, 0)
        assert delta >= (-freed if cause == gone.kind else 0), cause
    if len(case.incidents) == 1 and not case.outages:
        # alone, its hours all go to the stages' own causes
        own = set(OWN.values())
        assert set(after.by_cause_ms) <= own
        gained = sum(after.by_cause_ms.values()) - sum(
            v for c, v in before.by_cause_ms.items() if c in own
        )
        assert gained == freed


def test_an_operator_delay_covers_callbacks_made_in_its_window_only() -> None:
    """Callbacks 6 h late on day 0 from 08:00 for 2 h: a payment at 09:30 waits for its
    callback until 15:30, all the incident's; one at 10:30 (after the window) is the operator's."""
    late = Incident("operator_delay", day=0, at_min=480, hours=2, delay_hours=6)

    def paid(meter: str, at: float, callback: float) -> Delivery:
        return Delivery(
            meter,
            at,
            callback,
            (Stage("operator", at, callback), Stage("entry", callback, callback)),
        )

    dark = attribute(
        dark=[Dark("early", 9.5 * H, 15.5 * H), Dark("after", 10.5 * H, 11.5 * H)],
        deliveries=[paid("early", 9.5 * H, 15.5 * H), paid("after", 10.5 * H, 11.5 * H)],
        incidents=[late],
        outages=[],
        start=0,
        end=DAY,
    )
    assert dark.by_incident[late.name].ms == ms(6 * H)
    assert dark.by_incident[late.name].households == 1
    assert dark.by_cause_ms == {"operator_delay": ms(6 * H), "operator_latency": ms(H)}


def test_a_window_that_starts_mid_day_counts_only_inside_it() -> None:
    dark = attribute(
        dark=[Dark("m", 0, 2 * DAY)],
        deliveries=[],
        incidents=[],
        outages=[],
        start=0.5 * DAY,
        end=1.25 * DAY,
    )
    assert dark.unpaid_ms == ms(0.75 * DAY)
    assert [(d.day, d.unpaid_ms) for d in dark.days] == [(0, ms(0.5 * DAY)), (1, ms(0.25 * DAY))]
    assert len(dark.hourly_dark) == 18
    assert set(dark.hourly_dark) == {1}
