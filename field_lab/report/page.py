"""report.html: one self-contained page (styles, script and data inline; no request leaves it).

Text is rendered here, escaped; the charts are drawn in the browser by `report.js` from the
run's data, inlined as JSON. The page's Content-Security-Policy allows nothing but its own
inline style and script (by hash), so even a stray URL in the data cannot make a request.
Every number carries its summary key path (`data-key`) and format (`data-format`), so the page
can be checked against summary.json.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from importlib import resources
from typing import Any

from field_lab.measure.slo import SLOError, parse_threshold
from field_lab.report.answers import (
    QUESTIONS,
    Answer,
    Figure,
    KeyPath,
    Part,
    Question,
    answer,
    distributors,
    findings,
    invariants,
    lookup,
    overall,
    profiles,
    slo_metric,
)

MAX_CDF_POINTS = 400
"""Per line: a long run's histogram has thousands of buckets; the chart needs no more."""

Column = tuple[str, KeyPath, str]
"""Header, key path within a group, format."""

COLUMNS: dict[str, tuple[Column, ...]] = {
    "sales": (
        ("sale attempts", ("sale_attempts",), "int"),
        ("ended with the light on", ("sale_success_rate",), "pct"),
        ("sale to light on p50 s", ("sale_activation_s", "p50"), "s"),
        ("p95 s", ("sale_activation_s", "p95"), "s"),
        ("max s", ("sale_activation_s", "max"), "s"),
    ),
    "activation": (
        ("payments", ("payments",), "int"),
        ("lights on", ("payments_activated",), "int"),
        ("payment to light on p50 s", ("activation_latency_s", "p50"), "s"),
        ("p95 s", ("activation_latency_s", "p95"), "s"),
        ("p99 s", ("activation_latency_s", "p99"), "s"),
        ("max s", ("activation_latency_s", "max"), "s"),
    ),
    "reports": (
        ("answered", ("report_availability",), "pct"),
        ("reads", ("report_latency_s", "count"), "int"),
        ("p50 s", ("report_latency_s", "p50"), "s"),
        ("p95 s", ("report_latency_s", "p95"), "s"),
        ("p99 s", ("report_latency_s", "p99"), "s"),
        ("max s", ("report_latency_s", "max"), "s"),
    ),
}
"""What each question's per-group table shows."""


def show(value: Any, fmt: str) -> str:
    """A summary value as the page prints it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if fmt == "text" or isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if fmt == "int":
        return str(int(value))
    if fmt == "pct":
        return f"{100 * value:.1f} %"
    if fmt == "s":
        v = float(value)
        digits = 0 if v >= 100 else 1 if v >= 10 else 2 if v >= 1 else 3
        return f"{v:.{digits}f}"
    return f"{value:.4g}"


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def figure(doc: Mapping[str, Any], fig: Figure, tag: str = "span", kind: str = "") -> str:
    """One summary value, with its key path and format for whoever checks the page."""
    key = json.dumps(list(fig.path), ensure_ascii=False)
    cls = f"fig {kind}".strip()
    return (
        f'<{tag} class="{cls}" data-key="{_attr(key)}" data-format="{fig.format}">'
        f"{escape(show(lookup(doc, fig.path), fig.format))}</{tag}>"
    )


def sentence(doc: Mapping[str, Any], parts: Iterable[Part]) -> str:
    return "".join(
        figure(doc, part) if isinstance(part, Figure) else escape(part) for part in parts
    )


def group_table(
    doc: Mapping[str, Any], caption: str, groups: Sequence[tuple[str, KeyPath]], key: str
) -> str:
    columns = COLUMNS[key]
    head = "".join(f'<th class="num">{escape(h)}</th>' for h, _, _ in columns)
    rows = []
    for name, prefix in groups:
        cells = "".join(
            figure(doc, Figure((*prefix, *path), fmt), "td") for _, path, fmt in columns
        )
        rows.append(f'<tr><th scope="row">{escape(name)}</th>{cells}</tr>')
    return (
        f"<table><caption>{escape(caption)}</caption>"
        f'<thead><tr><th scope="col"></th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _slo_list(doc: Mapping[str, Any], labels: Sequence[str]) -> str:
    if not labels:
        return ""
    items = "".join(
        f"<li><code>{escape(label)}</code>: observed "
        + figure(doc, Figure(("slo", label, "observed"), "num"))
        + ", "
        + _status(doc, ("slo", label, "status"))
        + "</li>"
        for label in labels
    )
    return f'<ul class="slos">{items}</ul>'


def _status(doc: Mapping[str, Any], path: KeyPath) -> str:
    """A verdict word, styled by what it says."""
    word = str(lookup(doc, path))
    kind = "good" if word == "pass" else "waived" if word.startswith("waived") else "bad"
    return figure(doc, Figure(path, "text"), kind=f"status {kind}")


def question_card(doc: Mapping[str, Any], a: Answer) -> str:
    q: Question = a.question
    verdict_class = {"yes": "good", "no": "bad"}.get(a.verdict, "unknown")
    parts = [
        f'<section class="question" id="q-{q.key}">',
        f"<h3>{escape(q.title)} "
        f'<span class="verdict {verdict_class}" data-verdict="{_attr(a.verdict)}">'
        f"{escape(a.verdict)}</span></h3>",
        f'<p class="reason">{escape(a.reason)}.</p>',
        f"<p>{sentence(doc, findings(q, (), doc))}.</p>",
        _slo_list(doc, a.slos),
    ]
    by_distributor = distributors(doc)
    if q.key == "reports":
        parts.append(group_table(doc, "per distributor", by_distributor, q.key))
        parts.append(
            '<p class="note">Distributors read reports from the office, not over the agents\''
            " links, so this question is asked per distributor.</p>"
        )
    else:
        parts.append(group_table(doc, "per link profile", profiles(doc), q.key))
        if doc.get("by_distributor"):
            parts.append(group_table(doc, "per distributor", by_distributor, q.key))
    parts.append("</section>")
    return "".join(parts)


def invariant_table(doc: Mapping[str, Any]) -> str:
    rows = []
    for inv in invariants(doc):
        examples = ", ".join(inv.examples[:10])
        rows.append(
            f'<tr><th scope="row"><code>{escape(inv.name)}</code></th>'
            f"<td>{escape(inv.meaning)}</td>"
            + figure(doc, Figure((inv.name,), "int"), "td")
            + f'<td class="evidence {inv.status}" data-evidence="{inv.name}">'
            f"{escape(inv.status)}</td>"
            f'<td class="examples">{escape(examples)}</td></tr>'
        )
    return (
        "<table><caption>What the judge found, on public evidence only</caption>"
        '<thead><tr><th>check</th><th>holds when</th><th class="num">violations</th>'
        "<th>evidence</th><th>examples</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def slo_table(doc: Mapping[str, Any]) -> str:
    slo: Mapping[str, Any] = doc.get("slo") or {}
    if not slo:
        return "<p>The scenario sets no threshold.</p>"
    rows = "".join(
        f'<tr><th scope="row"><code>{escape(slo_metric(label))}</code></th>'
        + figure(doc, Figure(("slo", label, "threshold"), "text"), "td")
        + figure(doc, Figure(("slo", label, "observed"), "num"), "td")
        + "<td>"
        + _status(doc, ("slo", label, "status"))
        + "</td></tr>"
        for label in slo
    )
    return (
        "<table><caption>SLO thresholds declared by the scenario</caption>"
        '<thead><tr><th>metric</th><th>threshold</th><th class="num">observed</th>'
        "<th>verdict</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>"
    )


def facts(doc: Mapping[str, Any]) -> str:
    items = (
        ("scenario", ("scenario", "name"), "text"),
        ("seed", ("scenario", "seed"), "int"),
        ("field time s", ("scenario", "duration_s"), "num"),
        ("handsets", ("handsets",), "int"),
        ("devices", ("devices",), "int"),
        ("client", ("adapter",), "text"),
        ("wall time s", ("wall_s",), "num"),
    )
    return (
        '<dl class="facts">'
        + "".join(
            f"<div><dt>{escape(name)}</dt><dd>{figure(doc, Figure(path, fmt))}</dd></div>"
            for name, path, fmt in items
            if lookup(doc, path) is not None
        )
        + "</dl>"
    )


def _thin(points: Sequence[tuple[float, float]]) -> list[list[float]]:
    """At most MAX_CDF_POINTS points of a CDF, always keeping its last."""
    if len(points) <= MAX_CDF_POINTS:
        return [[x, y] for x, y in points]
    step = len(points) / MAX_CDF_POINTS
    kept = [points[int(i * step)] for i in range(MAX_CDF_POINTS - 1)] + [points[-1]]
    return [[x, y] for x, y in kept]


def _activation_slo(doc: Mapping[str, Any]) -> list[dict[str, float]]:
    """The percentile thresholds on activation time, for the CDF chart to mark."""
    marks = []
    for label, v in (doc.get("slo") or {}).items():
        if slo_metric(label) != "activation_s":
            continue
        try:
            t = parse_threshold("activation_s", str(v.get("threshold")))
        except SLOError:
            continue
        if t.percentile is not None:
            marks.append({"p": t.percentile, "limit": t.limit})
    return marks


def chart_data(
    doc: Mapping[str, Any],
    cdfs: Mapping[str, Sequence[tuple[float, float]]],
    series: Sequence[Mapping[str, float]],
) -> dict[str, Any]:
    lines = []
    for name, prefix in profiles(doc):
        key = name if prefix else "all"
        lines.append(
            {
                "name": name,
                "count_key": [*prefix, "activation_latency_s", "count"],
                "count": lookup(doc, (*prefix, "activation_latency_s", "count")),
                "points": _thin(cdfs.get(key, ())),
            }
        )
    columns = list(series[0]) if series else []
    return {
        "cdf": lines,
        "activation_slo": _activation_slo(doc),
        "series": {c: [row.get(c) for row in series] for c in columns},
    }


def embed_json(data: object) -> str:
    """JSON safe inside a <script> element: no `<`, `>` or `&` can close or open a tag."""
    text = json.dumps(data, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _asset(name: str) -> str:
    return resources.files("field_lab.report").joinpath(name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def render(
    doc: Mapping[str, Any],
    cdfs: Mapping[str, Sequence[tuple[float, float]]],
    series: Sequence[Mapping[str, float]],
) -> str:
    """The page for one run: `doc` is its summary, `cdfs` the activation latency CDF points
    ("all" and per link profile), `series` the once-a-second samples (timeseries.csv)."""
    style, script = _asset("report.css"), _asset("report.js")
    policy = (
        f"default-src 'none'; script-src {_sha256(script)}; style-src {_sha256(style)};"
        " img-src data:; base-uri 'none'; form-action 'none'"
    )
    run = str(doc.get("run", ""))
    cards = "".join(question_card(doc, answer(q, doc)) for q in QUESTIONS)
    data = embed_json(chart_data(doc, cdfs, series))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_attr(policy)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>field-lab run {escape(run)}</title>
<style>{style}</style>
</head>
<body>
<header>
<h1>field-lab run <span class="run">{escape(run)}</span></h1>
{facts(doc)}
<p class="overall" data-slo-pass="{_attr(doc.get("slo_pass"))}">SLOs: {escape(overall(doc))}.</p>
</header>
<main>
<h2>The three questions</h2>
{cards}
<h2>Charts</h2>
<figure class="chart" id="chart-cdf"><figcaption>Activation latency CDF (payment to light on,
from the planned payment time)</figcaption></figure>
<figure class="chart" id="chart-sales"><figcaption>Sales and activations over time
(cumulative)</figcaption></figure>
<figure class="chart" id="chart-queue"><figcaption>Outbox queue depth and links down over
time</figcaption></figure>
<h2>Invariants</h2>
{invariant_table(doc)}
<h2>SLOs</h2>
{slo_table(doc)}
</main>
<footer>Written by field-lab; the same figures are in summary.json beside this file.</footer>
<script id="report-data" type="application/json">{data}</script>
<script>{script}</script>
</body>
</html>
"""
