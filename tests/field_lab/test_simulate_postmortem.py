"""The written figures: summary, CSV, SVG and post-mortem lines agree with the attribution."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import xml.etree.ElementTree as ET

from hypothesis import given

from field_lab.simulate import postmortem
from field_lab.simulate.darkness import Dark, DarkHours, Delivery, Stage, attribute, hours
from field_lab.simulate.month import DAY, HOUR, Incident
from tests.field_lab.test_simulate_darkness import Case, cases, run

SVG = "{http://www.w3.org/2000/svg}"


def month_like() -> DarkHours:
    """Three households over three days, a platform outage and an operator delay."""
    down = Incident("platform_down", day=1, at_min=600, hours=2)
    late = Incident("operator_delay", day=2, at_min=0, hours=24, delay_hours=6)

    def paid(meter: str, at: float, applied: float, via: str = "sms") -> Delivery:
        mid = (at + applied) / 2
        return Delivery(
            meter,
            at,
            applied,
            (Stage("operator", at, mid), Stage("delivery", mid, applied, via=via)),
        )

    return attribute(
        dark=[
            Dark("a", 0.5 * DAY, DAY + 12 * HOUR),
            Dark("b", DAY + 10 * HOUR, DAY + 13 * HOUR),
            Dark("c", 2 * DAY + HOUR, 3 * DAY),
        ],
        deliveries=[
            paid("a", DAY + 10 * HOUR, DAY + 12 * HOUR),
            paid("b", DAY + 10 * HOUR, DAY + 13 * HOUR, via="agent"),
            paid("c", 2 * DAY + 2 * HOUR, 2 * DAY + 9 * HOUR),
        ],
        incidents=[down, late],
        outages=[],
        start=0,
        end=3 * DAY,
    )


def test_the_summary_has_the_issues_fields_in_hours() -> None:
    dark = month_like()
    s = postmortem.summary(dark)
    assert json.loads(json.dumps(s)) == s
    assert set(s) >= {"unpaid", "paid_waiting", "by_cause", "by_incident"}
    assert s["by_incident"]["platform outage day 1 10:00 (2 h)"] == {
        "hours": 3.0,
        "households": 2,
        "kind": "platform_down",
        "start": DAY + 10 * HOUR,
    }
    assert math.isclose(s["paid_waiting"], sum(s["by_cause"].values()), abs_tol=1e-6)
    assert s["unpaid"] == hours(dark.unpaid_ms)


def test_the_hand_checked_figures() -> None:
    """a: paid 10:00 day 1, code by SMS at 12:00: the operator stage 10-11 is the outage's,
    the SMS stage 11-12 is not held up by the platform (2 h dark after payment: 1 + 1).
    b: paid 10:00, agent delivery from 11:30 to 13:00: 10:00-12:00 is the outage's, 12-13
    the agent's. c: paid day 2 02:00 while callbacks run 6 h late: operator 02:00-05:30 is
    the delay's, SMS 05:30-09:00 the SMS's; dark 01:00-02:00 unpaid, and after 09:00 unpaid."""
    dark = month_like()
    h = 3_600_000
    assert dark.by_cause_ms == {
        "platform_down": 3 * h,
        "sms_delay": h + int(3.5 * h),
        "agent_delay": h,
        "operator_delay": int(3.5 * h),
    }
    assert dark.by_incident["platform outage day 1 10:00 (2 h)"].households == 2
    assert postmortem.lines(dark)[:2] == [
        "operator callbacks 6 h late day 2 00:00 (24 h): 3.5 household-hours dark after"
        " payment, 1 household",
        "platform outage day 1 10:00 (2 h): 3.0 household-hours dark after payment, 2 households",
    ]


def _check_csv(dark: DarkHours) -> None:
    text = postmortem.day_csv(dark)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(dark.days)
    s = postmortem.summary(dark)
    header = next(csv.reader(io.StringIO(text)))
    assert header == [*postmortem.CSV_FIXED, *(f"{c}_h" for c in sorted(s["by_cause"]))]
    n = max(1, len(rows))
    tol = n * 1e-7
    assert math.isclose(sum(float(r["unpaid_h"]) for r in rows), s["unpaid"], abs_tol=tol)
    assert math.isclose(
        sum(float(r["paid_waiting_h"]) for r in rows), s["paid_waiting"], abs_tol=tol
    )
    for cause, total in s["by_cause"].items():
        assert math.isclose(sum(float(r[f"{cause}_h"]) for r in rows), total, abs_tol=tol)
    for row, day in zip(rows, dark.days, strict=True):
        assert int(row["day"]) == day.day
        assert int(row["dark_households"]) == day.dark_households
        assert int(row["waiting_households"]) == day.waiting_households
        parts = sum(float(row[f"{c}_h"]) for c in s["by_cause"])
        assert math.isclose(parts, float(row["paid_waiting_h"]), abs_tol=1e-6)


def _check_svg(dark: DarkHours) -> None:
    root = ET.fromstring(postmortem.svg(dark))
    assert root.tag == f"{SVG}svg"
    assert list(root.iter(f"{SVG}script")) == []
    bands = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "incident"]
    titles = [b.findtext(f"{SVG}title") for b in bands]
    assert titles == [i.name for i in dark.incidents if i.start < dark.end]
    lines = {p.get("class"): p.get("points", "") for p in root.iter(f"{SVG}polyline")}
    top = max([1, *dark.hourly_dark])
    frame = next(r for r in root.iter(f"{SVG}rect") if r.get("class") is None)
    y0, plot_h = float(frame.get("y", 0)), float(frame.get("height", 0))
    for name, series in (("dark", dark.hourly_dark), ("waiting", dark.hourly_waiting)):
        ys = [float(p.split(",")[1]) for p in lines[name].split()]
        values = [round((1 - (y - y0) / plot_h) * top, 3) for y in ys[1:-1:2]]
        assert values == [float(v) for v in series], name
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert str(top) in labels


def test_csv_and_svg_of_the_hand_case() -> None:
    dark = month_like()
    _check_csv(dark)
    _check_svg(dark)
    assert set(postmortem.files(dark)) == {postmortem.CSV_NAME, postmortem.SVG_NAME}


@given(cases())
def test_csv_svg_and_lines_agree_with_the_summary(case: Case) -> None:
    dark = run(case)
    _check_csv(dark)
    _check_svg(dark)
    s = postmortem.summary(dark)
    lines = postmortem.lines(dark)
    assert len(lines) == len(s["by_incident"]) + len(s["by_cause"]) + 1
    for line in lines[: len(s["by_incident"])]:
        name, rest = line.split(": ", 1)
        m = re.fullmatch(r"([\d,.]+) household-hours dark after payment, (\d+) households?", rest)
        assert m is not None, line
        figure = s["by_incident"][name]
        assert int(m[2]) == figure["households"]
        assert math.isclose(float(m[1].replace(",", "")), figure["hours"], abs_tol=0.5)
    total = re.search(r"([\d,.]+) household-hours dark, ([\d,.]+) unpaid", lines[-1])
    assert total is not None
    assert math.isclose(float(total[2].replace(",", "")), s["unpaid"], abs_tol=0.5)
