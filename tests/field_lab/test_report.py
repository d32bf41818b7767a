"""report.html: the page a run leaves for people, checked as text and in a real browser.

The run behind these pages is made by the lab's own pieces (RunStats with recorded latencies,
SLO verdicts from `evaluate`, a judge Verdict with a violation whose key is hostile HTML) and
summarised by `output.summary`, exactly as `field-lab run` writes summary.json.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from field_lab.check.judge import Verdict
from field_lab.check.keys import FIGURES
from field_lab.lab import output
from field_lab.lab.stats import RunStats
from field_lab.measure.history import SetCheck
from field_lab.measure.slo import evaluate
from field_lab.report import answers, page
from field_lab.scenario import DEFAULT

from . import browser

HOSTILE = '</script><script>document.title="owned"</script><img src="http://evil.test/x">'


def a_run(
    *, name: str = "20261130-run", distributors: bool = False
) -> tuple[dict[str, Any], RunStats, list[dict[str, float]]]:
    """A small run's summary, as summary.json holds it, with the stats and series behind it."""
    doc, stats, series, by_distributor = _a_run()
    doc = {**copy.deepcopy(doc), "run": name}  # the name is only ever the summary's "run"
    if distributors:
        doc["by_distributor"] = copy.deepcopy(by_distributor)
    return doc, stats, series


@functools.cache
def _a_run() -> tuple[dict[str, Any], RunStats, list[dict[str, float]], dict[str, Any]]:
    rng = random.Random(7)
    stats = RunStats()
    for profile, scale in (("3g", 4.0), ("gprs-bad", 30.0)):
        for _ in range(60):
            for group in stats.groups(profile):
                group.activation.record(0.5 + rng.expovariate(1 / scale))
                group.payment_unactivated.add(rng.random() < 0.05)
                group.sale_failed.add(rng.random() < 0.1)
                group.sale_activation.record(1 + rng.expovariate(1 / scale))
    for _ in range(50):
        stats.report.record(rng.uniform(0.002, 0.4))
        stats.report_failed.add(False)
    stats.report_failed.add(True)
    clean = SetCheck(40, 40, (), (), (), 0, ())
    verdict = Verdict(
        ops=SetCheck(40, 40, (HOSTILE,), (), (), 0, ()),
        payments=clean,
        credit=None,  # no meter evidence: credit checks unchecked
        strays=(),
        keycodes_twice=(),
        undelivered=(),
        pending=0,
    )
    stats.checks = verdict.figures()
    scenario = replace(
        DEFAULT,
        slo={
            **DEFAULT.slo,
            "activation_s": ["p(95)<300"],
            "report_s": ["p(99)<0.001"],  # fails: question 3 is answered "no"
        },
    )
    verdicts = evaluate(scenario.thresholds, stats.metrics())
    series = [
        {
            "t_s": float(t),
            "sales": float(t),
            "sales_ok": float(max(0, t - 2)),
            "activations": float(t // 2),
            "keycodes_received": 0.0,
            "queue_depth": float(t % 7),
            "links_down": 3.0 if 10 <= t < 18 else 0.0,
            "handsets": 10.0,
        }
        for t in range(40)
    ]
    extra = {
        "wall_s": 12.5,
        "handsets": 10,
        "devices": 40,
        "checks": verdict.checks(),
        "check_details": verdict.details(),
        "adapter": "compact",
    }
    doc = output.summary("20261130-run", scenario, stats, verdicts, extra)
    by_distributor = {
        "Acme <Solar> & Co": {
            **output.figures(stats.by_profile["3g"]),
            "report_availability": 1.0,
            "report_latency_s": output._latency(stats.report),
        },
        "dots.in.name": {
            **output.figures(stats.by_profile["gprs-bad"]),
            "report_availability": 0.5,
            "report_latency_s": output._latency(stats.report),
        },
    }
    as_json = json.loads(json.dumps([doc, by_distributor], allow_nan=False))
    return as_json[0], stats, series, as_json[1]


def render(doc: dict[str, Any], stats: RunStats, series: list[dict[str, float]]) -> str:
    return page.render(doc, output.activation_cdfs(stats), series)


# -- what the page's numbers must equal ---------------------------------------------------------


def check_figure(doc: Mapping[str, Any], key: str, fmt: str, text: str) -> None:
    """A number the page shows equals the summary's, to the digits shown."""
    path = json.loads(key)
    expected = answers.lookup(doc, path)
    where = f"{path} shows {text!r}, summary has {expected!r}"
    if expected is None:
        assert text == "–", where
    elif fmt == "text":
        assert text == str(expected), where
    elif fmt == "int":
        assert int(text) == expected, where
    elif fmt == "pct":
        assert text.endswith(" %"), where
        assert abs(float(text[:-2]) - 100 * expected) <= 0.05 + 1e-9, where
    elif fmt == "s":
        decimals = len(text.partition(".")[2])
        assert abs(float(text) - expected) <= 0.5 * 10**-decimals + 1e-9, where
    else:
        assert fmt == "num", where
        assert math.isclose(float(text), expected, rel_tol=5e-4, abs_tol=1e-12), where


def check_figures(doc: Mapping[str, Any], figures: Sequence[Sequence[str]]) -> set[str]:
    """Every figure shown equals the summary; returns the key paths shown (as JSON)."""
    for key, fmt, text in figures:
        check_figure(doc, key, fmt, text)
    return {json.dumps(json.loads(key), ensure_ascii=False) for key, _, _ in figures}


def expected_keys(doc: Mapping[str, Any]) -> set[str]:
    """Figures the page must show: each question per link profile, invariants, SLOs."""
    keys = {json.dumps([name]) for name in FIGURES}
    for prefix in ([], *(["by_profile", p] for p in doc["by_profile"])):
        keys.add(json.dumps([*prefix, "sale_success_rate"]))
        keys.add(json.dumps([*prefix, "activation_latency_s", "p95"]))
        keys.add(json.dumps([*prefix, "activation_latency_s", "count"]))  # the CDF's legend
    for d in doc.get("by_distributor") or {}:
        keys.add(json.dumps(["by_distributor", d, "report_availability"], ensure_ascii=False))
    keys.add(json.dumps(["report_availability"]))
    keys |= {json.dumps(["slo", label, "observed"]) for label in doc["slo"]}
    return keys


class Figures(HTMLParser):
    """The figures of a page as its HTML has them (before any script runs)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[list[str]] = []
        self.scripts = 0
        self._open: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.scripts += tag == "script"
        if a.get("data-key") is not None:
            self._open = [a["data-key"] or "", a.get("data-format") or "", ""]

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open[2] += data

    def handle_endtag(self, tag: str) -> None:
        if self._open is not None:
            self.found.append(self._open)
            self._open = None


def parsed(html: str) -> Figures:
    figures = Figures()
    figures.feed(html)
    return figures


# -- the page as text ---------------------------------------------------------------------------


def test_every_number_on_the_page_is_the_summarys() -> None:
    doc, stats, series = a_run()
    figures = parsed(render(doc, stats, series))
    shown = check_figures(doc, figures.found)
    # the CDF legend's counts are drawn by the script; the rest is in the HTML itself
    missing = expected_keys(doc) - shown
    assert all("activation_latency_s" in k and "count" in k for k in missing), missing


def test_hostile_text_is_escaped_everywhere() -> None:
    doc, stats, series = a_run(name=HOSTILE, distributors=True)
    html = render(doc, stats, series)
    assert parsed(html).scripts == 2  # the data and the charts; nothing the data smuggled in
    assert "<img" not in html
    assert HOSTILE not in html
    assert "&lt;/script&gt;" in html  # the run name and the lost key, as text
    data = html.split('<script id="report-data" type="application/json">')[1].split("</script>")[0]
    assert json.loads(data)["cdf"][0]["name"] == "all links"


def test_the_answers_follow_the_runs_verdicts() -> None:
    doc, _, _ = a_run()
    got = {q.key: answers.answer(q, doc).verdict for q in answers.QUESTIONS}
    assert got == {"sales": "no", "activation": "yes", "reports": "no"}  # see a_run's SLOs
    for label in doc["slo"]:
        if label.startswith("report_s"):
            doc["slo"][label] = {**doc["slo"][label], "status": "pass", "pass": True}
        if label.startswith("sale_failed"):
            doc["slo"][label] = {**doc["slo"][label], "status": "unchecked", "pass": False}
    got = {q.key: answers.answer(q, doc).verdict for q in answers.QUESTIONS}
    assert got == {"sales": "not shown", "activation": "yes", "reports": "no"}
    doc["slo"] = {}
    assert {answers.answer(q, doc).verdict for q in answers.QUESTIONS} == {"no threshold"}


@pytest.mark.parametrize(
    ("statuses", "verdict", "reason"),
    [
        ([], "no threshold", "the scenario sets no threshold on it"),
        (["pass"], "yes", "1 of 1 threshold held"),
        (["pass", "waived (unchecked)"], "yes", "2 of 2 thresholds held"),
        (["pass", "no samples"], "not shown", "1 of 2 thresholds had nothing to judge"),
        (["fail", "unchecked", "pass"], "no", "1 of 3 thresholds failed"),
    ],
)
def test_a_questions_verdict_counts_its_thresholds(
    statuses: list[str], verdict: str, reason: str
) -> None:
    assert answers.verdict_of(statuses) == (verdict, reason)


def test_invariants_say_verified_violated_or_unchecked_from_the_judge() -> None:
    doc, _, _ = a_run()
    assert set(answers.INVARIANTS) == set(FIGURES)
    found = {inv.name: inv for inv in answers.invariants(doc)}
    assert found["lost_ops"].status == "violated"
    assert found["lost_ops"].examples == (HOSTILE,)
    assert found["duplicate_ops"].status == "verified"
    assert found["overcredited_meters"].status == "unchecked"  # no meter evidence
    assert found["undercredited_meters"].status == "unchecked"


def test_a_run_without_distributors_is_one_distributor_and_with_them_each_is_shown() -> None:
    doc, stats, series = a_run()
    assert answers.distributors(doc) == [("the fleet (no distributors in this run)", ())]
    doc, stats, series = a_run(distributors=True)
    html = render(doc, stats, series)
    assert "Acme &lt;Solar&gt; &amp; Co" in html
    assert html.count("<caption>per distributor</caption>") == 3  # all three questions
    shown = check_figures(doc, parsed(html).found)
    assert json.dumps(["by_distributor", "dots.in.name", "report_availability"]) in shown


def an_empty_run() -> tuple[dict[str, Any], str]:
    """A run that measured nothing: its summary and its page."""
    stats = RunStats()
    doc = output.summary("empty", DEFAULT, stats, evaluate(DEFAULT.thresholds, stats.metrics()), {})
    doc = json.loads(json.dumps(doc, allow_nan=False))
    return doc, render(doc, stats, [])


def test_a_run_with_nothing_measured_still_renders() -> None:
    doc, html = an_empty_run()
    check_figures(doc, parsed(html).found)
    assert "no sale was attempted" in html
    assert "no payment was made" in html


@pytest.mark.parametrize(
    ("value", "fmt", "text"),
    [
        (None, "s", "–"),
        (0.9938, "pct", "99.4 %"),
        (0.0043, "s", "0.004"),
        (6.411, "s", "6.41"),
        (26.335, "s", "26.3"),
        (163.2, "s", "163"),
        (170, "int", "170"),
        (0.006134969, "num", "0.006135"),
        ("pass", "text", "pass"),
    ],
)
def test_show_formats(value: object, fmt: str, text: str) -> None:
    assert page.show(value, fmt) == text


def test_long_cdfs_are_thinned_keeping_their_end() -> None:
    points = [(i / 10, i / 9999) for i in range(10_000)]
    thin = page._thin(points)
    assert len(thin) == page.MAX_CDF_POINTS
    assert thin[-1] == [999.9, 1.0]
    assert [x for x, _ in thin] == sorted(x for x, _ in thin)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=60)
@given(json_values)
def test_embedded_json_reads_back_and_cannot_leave_its_script(value: object) -> None:
    text = page.embed_json(value)
    assert json.loads(text) == value
    assert not re.search(r"[<>&]", text)


# -- the page in a real browser -----------------------------------------------------------------

PROBE = """(() => {
  const figs = [...document.querySelectorAll('[data-key]')]
    .map(e => [e.dataset.key, e.dataset.format, e.textContent]);
  const evidence = Object.fromEntries([...document.querySelectorAll('[data-evidence]')]
    .map(e => [e.dataset.evidence, e.textContent]));
  const paths = id => document.querySelectorAll(`#${id} path.series`).length;
  const drawn = {cdf: paths('chart-cdf'), sales: paths('chart-sales'), queue: paths('chart-queue')};
  const overlay = document.querySelector('#chart-cdf svg rect');
  const r = overlay.getBoundingClientRect();
  overlay.dispatchEvent(new MouseEvent('mousemove',
    {clientX: r.left + r.width / 2, clientY: r.top + r.height / 2, bubbles: true}));
  const tooltip = document.querySelector('#chart-cdf .tooltip').textContent;
  document.querySelector('#chart-cdf .legend button').click();
  const afterHiding = paths('chart-cdf');
  const logBefore = document.querySelector('#chart-cdf svg').textContent.includes('log scale');
  document.querySelector('#chart-cdf .log-toggle').click();
  const logAfter = document.querySelector('#chart-cdf svg').textContent.includes('log scale');
  return {figs, evidence, drawn, tooltip, afterHiding, logBefore, logAfter,
          charts: document.documentElement.dataset.charts, scripts: document.scripts.length,
          title: document.title};
})()"""


@pytest.fixture(scope="module")
def chromium() -> str:
    found = browser.chromium()
    if found is None:
        pytest.skip(browser.why_missing())
    return found


def problems(seen: browser.Loaded, url: str) -> list[str]:
    """What must not happen when the page loads: errors, and requests beyond the page."""
    outside = [u for u in seen.requests if u != url and not u.startswith(("data:", "about:"))]
    return seen.errors + [f"request: {u}" for u in outside]


FAULTS = {
    "an image from the network": ("<main>", '<main><img src="http://127.0.0.1:9/x.png">'),
    "a script error": ('"use strict";', '"use strict"; null.x;'),
    "a console error": ("<main>", "<main><script>console.error('x')</script>"),
}
"""Pages broken on purpose: the browser check must see each (CSP or network or console)."""


async def test_the_page_in_headless_chromium(chromium: str, tmp_path: Path) -> None:
    """The page loads with no error and no request, its numbers equal summary.json after its
    scripts ran, and its charts answer the pointer; pages broken on purpose are caught."""
    doc, stats, series = a_run(name=HOSTILE)
    html = render(doc, stats, series)
    good = tmp_path / "report.html"
    good.write_text(html, encoding="utf-8")
    broken = [tmp_path / f"broken{n}.html" for n in range(len(FAULTS))]
    for path, (old, new) in zip(broken, FAULTS.values(), strict=True):
        assert old in html
        path.write_text(html.replace(old, new, 1), encoding="utf-8")
    empty = tmp_path / "empty.html"
    empty.write_text(an_empty_run()[1], encoding="utf-8")
    async with browser.Chromium() as chrome:
        seen = await chrome.load(good.as_uri(), PROBE)
        caught = [problems(await chrome.load(u, "1"), u) for u in (p.as_uri() for p in broken)]
        nothing = await chrome.load(
            empty.as_uri(), "[...document.querySelectorAll('.chart text.empty')].length"
        )
    assert problems(seen, good.as_uri()) == []
    assert problems(nothing, empty.as_uri()) == []
    assert nothing.value == 3  # each chart says nothing was recorded
    assert all(caught), dict(zip(FAULTS, caught, strict=True))
    got = seen.value
    assert got["title"] == f"field-lab run {HOSTILE}"  # shown as text, never run
    assert got["scripts"] == 2
    shown = check_figures(doc, got["figs"])
    assert expected_keys(doc) <= shown
    assert got["evidence"] == {inv.name: inv.status for inv in answers.invariants(doc)}
    profiles = len(doc["by_profile"]) + 1
    assert got["charts"] == "3"
    assert got["drawn"] == {"cdf": profiles, "sales": 3, "queue": 2}
    assert got["tooltip"].startswith("s ")
    assert len(got["tooltip"].splitlines()) == profiles + 1
    assert got["afterHiding"] == profiles - 1
    assert (got["logBefore"], got["logAfter"]) == (True, False)
