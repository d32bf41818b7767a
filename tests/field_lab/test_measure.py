"""The lab's measurement core: histograms, histories, checkers and SLO thresholds."""

from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from field_lab.measure.history import (
    Bounded,
    History,
    HistoryError,
    Status,
    check_applied,
    check_bounds,
)
from field_lab.measure.latency import Latency
from field_lab.measure.slo import (
    EXIT_OK,
    EXIT_SLO_FAILED,
    CounterMetric,
    RateMetric,
    SLOError,
    TrendMetric,
    evaluate,
    exit_code,
    parse_threshold,
    parse_thresholds,
)


@given(st.lists(st.floats(0.001, 3600, allow_nan=False), min_size=1, max_size=300))
def test_percentiles_are_exact_to_three_digits(values: list[float]) -> None:
    h = Latency()
    for v in values:
        h.record(v)
    ordered = sorted(round(v * 1000) / 1000 for v in values)
    for p in (50, 95, 99, 100):
        # HdrHistogram's rank: the value at count round(p% of n), at least the first.
        rank = max(1, int(p / 100 * len(ordered) + 0.5)) - 1
        exact = ordered[rank]
        assert h.percentile(p) == pytest.approx(exact, rel=2e-3, abs=1e-3)


@given(
    st.lists(st.floats(0.001, 100, allow_nan=False), max_size=50),
    st.lists(st.floats(0.001, 100, allow_nan=False), max_size=50),
)
def test_histograms_merge_without_loss(a: list[float], b: list[float]) -> None:
    ha, hb, whole = Latency(), Latency(), Latency()
    for v in a:
        ha.record(v)
        whole.record(v)
    for v in b:
        hb.record(v)
        whole.record(v)
    merged = Latency()
    merged.merge_encoded(ha.encode())
    merged.merge_encoded(hb.encode())
    assert merged.count == whole.count
    assert merged.distribution() == whole.distribution()


def test_share_within_and_empty_histograms() -> None:
    h = Latency()
    assert math.isnan(h.percentile(50))
    for v in (1, 2, 3, 200):
        h.record(v)
    assert h.share_within(3) == 0.75
    with pytest.raises(ValueError):
        h.record(math.inf)


def _history(*ops: tuple[str, str]) -> History:
    history = History()
    for i, (key, status) in enumerate(ops):
        history.invoke(key, "sale", float(i))
        if status != "open":
            history.complete(key, Status(status), float(i) + 0.5)
    return history


def test_set_checker_passes_a_clean_run() -> None:
    h = _history(("a", "ok"), ("b", "ok"), ("c", "fail"), ("d", "info"))
    check = check_applied(h, ["a", "b", "d"])
    assert check.valid
    assert check.recovered == 1


def test_set_checker_catches_an_injected_loss() -> None:
    check = check_applied(_history(("a", "ok"), ("b", "ok")), ["a"])
    assert not check.valid
    assert check.lost == ("b",)


def test_set_checker_catches_an_injected_duplicate() -> None:
    check = check_applied(_history(("a", "ok"), ("b", "ok")), ["a", "b", "b"])
    assert not check.valid
    assert check.duplicated == ("b",)


def test_set_checker_catches_unexpected_and_lies() -> None:
    check = check_applied(_history(("a", "fail")), ["a", "zz"])
    assert check.unexpected == ("zz",)
    assert check.failed_but_applied == ("a",)
    assert not check.valid


@given(
    st.lists(st.sampled_from(["ok", "fail", "info", "open"]), min_size=1, max_size=30),
    st.data(),
)
def test_set_checker_is_exact_for_any_history(statuses: list[str], data: st.DataObject) -> None:
    keys = [f"k{i}" for i in range(len(statuses))]
    history = _history(*zip(keys, statuses, strict=True))
    times = [data.draw(st.integers(0, 2)) for _ in keys]
    applied = [k for k, n in zip(keys, times, strict=True) for _ in range(n)]
    check = check_applied(history, applied)
    expect_lost = {k for k, s, n in zip(keys, statuses, times, strict=True) if s == "ok" and n == 0}
    expect_dup = {k for k, n in zip(keys, times, strict=True) if n > 1}
    assert set(check.lost) == expect_lost
    assert set(check.duplicated) == expect_dup


def test_history_refuses_impossible_records() -> None:
    h = History()
    h.invoke("a", "sale", 0)
    with pytest.raises(HistoryError):
        h.invoke("a", "sale", 1)
    h.info("a", 1)
    h.ok("a", 2)  # an unknown outcome may be learned later
    with pytest.raises(HistoryError):
        h.fail("a", 3)
    with pytest.raises(HistoryError):
        h.ok("never", 3)


def test_counter_checker_catches_over_and_under_credit() -> None:
    fine = Bounded("m1", observed=5, lower=5, upper=7)
    over = Bounded("m2", observed=8, lower=5, upper=7)
    under = Bounded("m3", observed=4, lower=5, upper=7)
    assert check_bounds([fine]).valid
    check = check_bounds([fine, over, under])
    assert check.over == (over,)
    assert check.under == (under,)
    with pytest.raises(HistoryError):
        check_bounds([Bounded("bad", 1, lower=3, upper=2)])


@pytest.mark.parametrize(
    ("text", "observed", "passed"),
    [("p(95)<120", 100.0, True), ("p(95)<120", 120.0, False), ("p(99.9) <= 3", 2.99, True)],
)
def test_trend_thresholds(text: str, observed: float, passed: bool) -> None:
    h = Latency()
    for _ in range(100):
        h.record(observed)
    (verdict,) = evaluate(
        [parse_threshold("activation_s", text, "trend")], {"activation_s": TrendMetric(h)}
    )
    assert verdict.passed is passed


def test_rate_and_counter_thresholds_and_exit_codes() -> None:
    failed = RateMetric()
    for i in range(100):
        failed.add(i < 3)
    metrics = {"sale_failed": failed, "lost_ops": CounterMetric(0)}
    kinds = {"sale_failed": "rate", "lost_ops": "counter"}
    ok = parse_thresholds({"sale_failed": ["rate<0.05"], "lost_ops": "count==0"}, kinds)
    assert exit_code(evaluate(ok, metrics)) == EXIT_OK
    bad = parse_thresholds({"sale_failed": ["rate<0.02"]}, kinds)
    assert exit_code(evaluate(bad, metrics)) == EXIT_SLO_FAILED


def test_a_metric_without_samples_fails_its_threshold() -> None:
    (verdict,) = evaluate([parse_threshold("x", "p(95)<1", "trend")], {"x": TrendMetric(Latency())})
    assert not verdict.passed
    assert verdict.as_dict()["observed"] is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"activation_s": ["p95<1"]}, "cannot read"),
        ({"activation_s": ["p(101)<1"]}, "outside 0..100"),
        ({"activation_s": ["rate<1"]}, "trend metric"),
        ({"nope": ["count==0"]}, "no metric named"),
        ({"activation_s": []}, "list of threshold"),
        ({"activation_s": [5]}, "is a string"),
        (["x"], "table"),
    ],
)
def test_bad_thresholds_are_refused_precisely(table: object, message: str) -> None:
    with pytest.raises(SLOError, match=message):
        parse_thresholds(table, {"activation_s": "trend"})


@given(st.text(max_size=30))
def test_threshold_parser_never_crashes(text: str) -> None:
    with contextlib.suppress(SLOError):
        parse_threshold("m", text)


def test_an_unchecked_counter_fails_its_threshold_unless_waived() -> None:
    thresholds = parse_thresholds({"lost_ops": ["count==0"]}, {"lost_ops": "counter"})
    blind = {"lost_ops": CounterMetric(None)}
    (verdict,) = evaluate(thresholds, blind)
    assert (verdict.passed, verdict.unchecked, verdict.status) == (False, True, "unchecked")
    assert verdict.as_dict()["observed"] is None
    assert exit_code([verdict]) == EXIT_SLO_FAILED
    (waived,) = evaluate(thresholds, blind, {"lost_ops"})
    assert (waived.passed, waived.status) == (True, "waived (unchecked)")
    (seen,) = evaluate(thresholds, {"lost_ops": CounterMetric(1)}, {"lost_ops"})
    assert (seen.passed, seen.status) == (False, "fail")  # a waiver never hides a violation


def test_a_threshold_with_no_samples_says_so_and_the_scenario_chooses() -> None:
    threshold = parse_threshold("x", "p(95)<1", "trend")
    metrics = {"x": TrendMetric(Latency())}
    (verdict,) = evaluate([threshold], metrics)
    assert (verdict.passed, verdict.status) == (False, "no samples")
    (chosen,) = evaluate([threshold], metrics, without_samples={"x"})
    assert (chosen.passed, chosen.status) == (True, "waived (no samples)")
