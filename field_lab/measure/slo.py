"""Service-level objectives written as k6 thresholds, and their verdicts.

A scenario declares, per metric, a list of expressions such as `"p(95)<120"`,
`"rate<0.02"` or `"count==0"`. Each is parsed eagerly (a typo fails the scenario load, not the
run) and evaluated against the run's metrics. Exit codes mirror k6.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from field_lab.errors import ConfigError
from field_lab.measure.latency import Latency

EXIT_OK = 0
EXIT_SLO_FAILED = 99
"""At least one threshold failed (k6's ThresholdsHaveFailed)."""
EXIT_HARNESS_ERROR = 107
"""The lab itself failed; the figures cannot be trusted (k6's script-exception code)."""

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_EXPR = re.compile(
    r"^\s*(?P<agg>p\(\s*(?P<p>[0-9]+(?:\.[0-9]+)?)\s*\)|avg|min|max|med|rate|count)"
    r"\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<limit>-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)\s*$"
)


class SLOError(ConfigError):
    """A threshold is malformed or names something the lab does not measure (scenario's fault)."""


@dataclass(frozen=True, slots=True)
class Threshold:
    metric: str
    source: str
    aggregation: str
    percentile: float | None
    op: str
    limit: float

    def label(self) -> str:
        return f"{self.metric}: {self.source}"


class Metric(Protocol):
    kind: str

    def aggregate(self, aggregation: str, percentile: float | None) -> float: ...


@dataclass
class TrendMetric:
    """A latency-like metric: p(N), avg, min, max, med, count."""

    latency: Latency
    kind: str = "trend"

    def aggregate(self, aggregation: str, percentile: float | None) -> float:
        h = self.latency
        if aggregation == "count":
            return float(h.count)
        if aggregation == "p":
            assert percentile is not None
            return h.percentile(percentile)
        if aggregation == "avg":
            return h.mean()
        if aggregation == "min":
            return h.min()
        if aggregation == "max":
            return h.max()
        return h.percentile(50)


@dataclass
class RateMetric:
    """A share of events that were `true` (e.g. failed sales): rate, count."""

    hits: int = 0
    total: int = 0
    kind: str = "rate"

    def add(self, hit: bool) -> None:
        self.total += 1
        self.hits += int(hit)

    def aggregate(self, aggregation: str, percentile: float | None) -> float:
        if aggregation == "count":
            return float(self.hits)
        return self.hits / self.total if self.total else math.nan


@dataclass
class CounterMetric:
    """A plain count (e.g. lost operations): count. None: nothing could count it (unchecked)."""

    value: int | None = 0
    kind: str = "counter"

    @property
    def unchecked(self) -> bool:
        return self.value is None

    def aggregate(self, aggregation: str, percentile: float | None) -> float:
        return math.nan if self.value is None else float(self.value)


ALLOWED = {
    "trend": {"p", "avg", "min", "max", "med", "count"},
    "rate": {"rate", "count"},
    "counter": {"count"},
}


def parse_threshold(metric: str, text: str, kind: str | None = None) -> Threshold:
    if not isinstance(text, str):
        raise SLOError(f'{metric}: a threshold is a string like "p(95)<120", got {text!r}')
    match = _EXPR.match(text)
    if match is None:
        raise SLOError(
            f"{metric}: cannot read threshold {text!r}; expected AGG OP NUMBER with AGG one of"
            " p(N), avg, min, max, med, rate, count and OP one of < <= > >= == !="
        )
    pct = match["p"]
    aggregation = "p" if pct is not None else match["agg"]
    percentile = float(pct) if pct is not None else None
    if percentile is not None and not 0 <= percentile <= 100:
        raise SLOError(f"{metric}: percentile {percentile} is outside 0..100")
    if kind is not None and aggregation not in ALLOWED[kind]:
        allowed = ", ".join(sorted(a if a != "p" else "p(N)" for a in ALLOWED[kind]))
        raise SLOError(f"{metric} is a {kind} metric: use {allowed}, not {aggregation}")
    return Threshold(
        metric, text.strip(), aggregation, percentile, match["op"], float(match["limit"])
    )


def parse_thresholds(table: object, kinds: Mapping[str, str]) -> list[Threshold]:
    """Parse `{metric: [expr, ...]}`; `kinds` names every metric the lab measures."""
    if not isinstance(table, Mapping):
        raise SLOError(f"thresholds are a table of metric = [expressions], got {table!r}")
    out: list[Threshold] = []
    for metric, exprs in table.items():
        if metric not in kinds:
            known = ", ".join(sorted(kinds))
            raise SLOError(f"no metric named {metric!r}; the lab measures: {known}")
        items = [exprs] if isinstance(exprs, str) else exprs
        if not isinstance(items, list) or not items:
            raise SLOError(f"{metric}: give a list of threshold strings")
        out.extend(parse_threshold(metric, e, kinds[metric]) for e in items)
    return out


@dataclass(frozen=True, slots=True)
class Verdict:
    threshold: Threshold
    observed: float
    passed: bool
    unchecked: bool = False
    """The metric had no evidence; `passed` only when the scenario waived it."""
    no_samples: bool = False
    """Nothing was measured (e.g. no sale in a short run); `passed` only when waived."""

    @property
    def status(self) -> str:
        if self.unchecked:
            return "waived (unchecked)" if self.passed else "unchecked"
        if self.no_samples:
            return "waived (no samples)" if self.passed else "no samples"
        return "pass" if self.passed else "fail"

    def as_dict(self) -> dict[str, object]:
        observed = None if math.isnan(self.observed) else self.observed
        return {
            "threshold": self.threshold.source,
            "observed": observed,
            "pass": self.passed,
            "status": self.status,
        }


def evaluate(
    thresholds: list[Threshold],
    metrics: Mapping[str, Metric],
    waived: Collection[str] = frozenset(),
    without_samples: Collection[str] = frozenset(),
) -> list[Verdict]:
    """Judge each threshold. A metric with no samples (NaN) fails, as nothing was shown,
    unless the scenario lets it pass (`without_samples`); an unchecked one (no evidence)
    fails unless its name is in `waived`."""
    verdicts = []
    for t in thresholds:
        metric = metrics.get(t.metric)
        observed = math.nan if metric is None else metric.aggregate(t.aggregation, t.percentile)
        unchecked = bool(getattr(metric, "unchecked", False))
        no_samples = not unchecked and math.isnan(observed)
        if unchecked:
            passed = t.metric in waived
        elif no_samples:
            passed = t.metric in without_samples
        else:
            passed = _OPS[t.op](observed, t.limit)
        verdicts.append(Verdict(t, observed, passed, unchecked, no_samples))
    return verdicts


def exit_code(verdicts: list[Verdict]) -> int:
    return EXIT_OK if all(v.passed for v in verdicts) else EXIT_SLO_FAILED
