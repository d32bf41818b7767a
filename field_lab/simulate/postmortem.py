"""The dark-hours figures written out: summary.json's `household_dark_hours`, the per-day CSV,
a self-contained SVG of dark households over the month with the incidents marked, and the
post-mortem lines ("platform outage day 3 10:00 (2 h): 412 household-hours dark after payment,
97 households"). Pure: text in, text out; the engine writes the files.
"""

from __future__ import annotations

import csv
import io
from html import escape
from typing import Any

from field_lab.simulate.darkness import MS_PER_HOUR, DarkHours, hours
from field_lab.simulate.month import DAY, HOUR, Incident

CSV_NAME = "dark_hours_by_day.csv"
SVG_NAME = "dark_households.svg"
CSV_FIXED = (
    "day",
    "unpaid_h",
    "paid_waiting_h",
    "dark_households",
    "waiting_households",
)


def summary(dark: DarkHours) -> dict[str, Any]:
    """`summary.json`'s `household_dark_hours` (hours, rounded to the millisecond)."""
    return {
        "unpaid": hours(dark.unpaid_ms),
        "paid_waiting": hours(dark.paid_waiting_ms),
        "households": dark.households,
        "by_cause": {cause: hours(v) for cause, v in dark.by_cause_ms.items()},
        "by_incident": {
            name: {
                "hours": hours(inc.ms),
                "households": inc.households,
                "kind": inc.kind,
                "start": inc.start,
            }
            for name, inc in dark.by_incident.items()
        },
    }


def causes(dark: DarkHours) -> list[str]:
    """Every cause with paid-waiting time, in a stable order (the CSV's cause columns)."""
    return sorted(dark.by_cause_ms)


def day_csv(dark: DarkHours) -> str:
    """One row a day: unpaid and paid-waiting hours, each cause's hours, dark households."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = causes(dark)
    writer.writerow([*CSV_FIXED, *(f"{c}_h" for c in names)])
    for row in dark.days:
        writer.writerow(
            [
                row.day,
                hours(row.unpaid_ms),
                hours(row.paid_waiting_ms),
                row.dark_households,
                row.waiting_households,
                *(hours(row.by_cause_ms.get(c, 0)) for c in names),
            ]
        )
    return out.getvalue()


def lines(dark: DarkHours) -> list[str]:
    """The post-mortem table: one line per incident, worst first, then the totals by cause."""
    out = []
    ranked = sorted(dark.by_incident.values(), key=lambda i: (-i.ms, i.start, i.name))
    for inc in ranked:
        out.append(
            f"{inc.name}: {_h(inc.ms)} household-hours dark after payment,"
            f" {inc.households} household{'s' if inc.households != 1 else ''}"
        )
    for cause, v in sorted(dark.by_cause_ms.items(), key=lambda kv: (-kv[1], kv[0])):
        share = v / dark.paid_waiting_ms if dark.paid_waiting_ms else 0.0
        out.append(f"{cause}: {_h(v)} household-hours dark after payment ({share:.0%})")
    out.append(
        f"in all: {_h(dark.dark_ms)} household-hours dark, {_h(dark.unpaid_ms)} unpaid,"
        f" {_h(dark.paid_waiting_ms)} after payment, {dark.households} households"
    )
    return out


def _h(milliseconds: int) -> str:
    """Household-hours for people: whole hours when large, one decimal when small."""
    value = milliseconds / MS_PER_HOUR
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def svg(dark: DarkHours, *, width: int = 900, height: int = 260) -> str:
    """Households dark per hour (all, and after payment) over the run, incidents as bands.

    Self-contained (no scripts, no external fonts), so it can be inlined in report.html."""
    pad_l, pad_r, pad_t, pad_b = 48, 28, 22, 28
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    n = max(1, len(dark.hourly_dark))
    top = max([1, *dark.hourly_dark])
    t_first = (dark.start // HOUR) * HOUR

    def x(t: float) -> float:
        return pad_l + plot_w * min(max((t - t_first) / (n * HOUR), 0.0), 1.0)

    def y(v: float) -> float:
        return pad_t + plot_h * (1 - v / top)

    def steps(series: tuple[int, ...]) -> str:
        points = [f"{x(t_first):.1f},{y(0):.1f}"]
        for i, v in enumerate(series):
            a, b = t_first + i * HOUR, t_first + (i + 1) * HOUR
            points += [f"{x(a):.1f},{y(v):.1f}", f"{x(b):.1f},{y(v):.1f}"]
        points.append(f"{x(t_first + n * HOUR):.1f},{y(0):.1f}")
        return " ".join(points)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11"'
        ' role="img" aria-label="dark households per hour">',
        f'<rect x="{pad_l}" y="{pad_t}" width="{plot_w}" height="{plot_h}" fill="#fafafa"'
        ' stroke="#999"/>',
    ]
    for inc in shown_incidents(dark):
        a, b = x(inc.start), x(inc.end)
        parts.append(
            f'<rect class="incident" x="{a:.1f}" y="{pad_t}" width="{max(b - a, 1.0):.1f}"'
            f' height="{plot_h}" fill="#f4a261" fill-opacity="0.35">'
            f"<title>{escape(inc.name)}</title></rect>"
        )
        parts.append(f'<text x="{a:.1f}" y="{pad_t - 6}" fill="#b5531a">{escape(inc.kind)}</text>')
    parts.append(
        f'<polyline class="dark" fill="#264653" fill-opacity="0.25" stroke="#264653"'
        f' points="{steps(dark.hourly_dark)}"/>'
    )
    parts.append(
        f'<polyline class="waiting" fill="#e76f51" fill-opacity="0.5" stroke="#e76f51"'
        f' points="{steps(dark.hourly_waiting)}"/>'
    )
    days = max(1, round(n * HOUR / DAY))
    every = max(1, days // 10)
    for d in range(0, days + 1, every):
        t = t_first + d * DAY
        parts.append(f'<text x="{x(t):.1f}" y="{height - 10}" text-anchor="middle">day {d}</text>')
    parts.append(f'<text x="{pad_l - 4}" y="{y(top) + 4:.1f}" text-anchor="end">{top}</text>')
    parts.append(f'<text x="{pad_l - 4}" y="{y(0):.1f}" text-anchor="end">0</text>')
    parts.append(
        f'<text x="{pad_l + 4}" y="{pad_t + 12}">households dark per hour'
        " (dark after payment in red)</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def shown_incidents(dark: DarkHours) -> list[Incident]:
    """The incidents the plot marks: those that overlap the run."""
    return [i for i in dark.incidents if i.start < dark.end and i.end > dark.start]


def files(dark: DarkHours) -> dict[str, str]:
    """What the engine writes into the run's directory (name -> text)."""
    return {CSV_NAME: day_csv(dark), SVG_NAME: svg(dark)}
