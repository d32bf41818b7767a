"""Prometheus metrics, RED per endpoint, in base units; one registry per application.

Request rate, errors and duration come from the middleware (`observe_request`); sync batch
sizes, body bytes and ingest lag from the sync handler; the business counters (keycodes issued,
callbacks by outcome, SMS sent and delivered) are read from the database at scrape time, so they
are monotonic across restarts and never disagree with what was committed.

The per-request ones are written by the event loop's thread only, so they are plain counters
folded into Prometheus families at scrape time (`RequestMetrics`): prometheus_client's own take
a lock per bucket, sum and count, and at 1,500 exchanges a second the nine observations of
each (about 40 µs) were a tenth of the server's event loop.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from .writelock import WriteLock

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
BYTES_BUCKETS = (64, 256, 1024, 4096, 16384, 65536, 262144)
_le: Callable[[float], str] = floatToGoString  # a bucket's `le` as prometheus_client writes it
LAG_BUCKETS = (0.1, 1, 5, 30, 60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400)


class StoreTotals(Collector):
    """Counters whose truth is the database; `update` is called with fresh counts per scrape."""

    def __init__(self) -> None:
        self.totals: Mapping[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        t = self.totals
        keycodes = CounterMetricFamily(
            "payg_keycodes_issued", "Add-credit keycodes issued (all channels)"
        )
        keycodes.add_metric([], t.get("keycodes", 0))
        yield keycodes
        callbacks = CounterMetricFamily(
            "payg_mm_transactions",
            "Distinct mobile-money transactions by outcome",
            labels=["outcome"],
        )
        for outcome in ("confirmed", "failed", "unknown_account"):
            callbacks.add_metric([outcome], t.get(f"mm_{outcome}", 0))
        yield callbacks
        for name, doc in (
            ("sms_sent", "SMS handed to the gateway, resends included"),
            ("sms_delivered", "SMS with a delivery receipt"),
        ):
            family = CounterMetricFamily(f"payg_{name}", doc)
            family.add_metric([], t.get(name, 0))
            yield family


class LockTotals(Collector):
    """The cross-process write lock's counters (writelock.py), added up over the workers."""

    NAMES = ("waited_s", "held_s", "held_cpu_s", "taken")

    def __init__(self) -> None:
        self.lock: WriteLock | None = None
        """The store's `WriteLock` (its counters are read as attributes); None: not shared."""
        self.absorbed = dict.fromkeys(self.NAMES, 0.0)

    def values(self) -> dict[str, float]:
        mine = {n: float(getattr(self.lock, n)) for n in self.NAMES} if self.lock else {}
        return {n: self.absorbed[n] + mine.get(n, 0.0) for n in self.NAMES}

    def collect(self) -> Iterator[Metric]:
        if self.lock is None and not any(self.absorbed.values()):
            return
        v = self.values()
        for name, doc, value in (
            ("payg_write_lock_wait_seconds", "Time writers waited for the write lock", "waited_s"),
            ("payg_write_lock_held_seconds", "Time writers held the write lock", "held_s"),
            (
                "payg_write_lock_held_cpu_seconds",
                "CPU time writers spent holding the write lock (the rest they waited)",
                "held_cpu_s",
            ),
            ("payg_write_lock_transactions", "Transactions that took the write lock", "taken"),
        ):
            family = CounterMetricFamily(name, doc)
            family.add_metric([], v[value])
            yield family


class Buckets:
    """A histogram one thread writes (the event loop's): a bisect and two additions."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf only)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # bucket i: value <= bounds[i]
        self.sum += value

    def observe_many(self, values: Iterable[float]) -> None:
        """A batch at once: ingest lag is one value per operation, and a prometheus_client
        `Histogram.observe` each (a lock, a bucket search in Python) cost ~3.7 µs."""
        counts, bounds = self.counts, self.bounds
        for value in values:
            counts[bisect_left(bounds, value)] += 1
            self.sum += value

    def absorb(self, counts: list[int], total: float) -> None:
        """Add another process's counts of the same buckets (several workers)."""
        if len(counts) != len(self.counts):
            raise ValueError(f"expected {len(self.counts)} bucket counts, got {len(counts)}")
        self.counts = [a + b for a, b in zip(self.counts, counts, strict=True)]
        self.sum += total

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, observations at or below it) per bound, then +Inf: Prometheus' buckets."""
        out: list[tuple[str, float]] = []
        seen = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            seen += count
            out.append((_le(bound), seen))
        return out


class RequestMetrics(Collector):
    """Request rate, errors, duration and in-flight count, and the sync handler's histograms:
    counted by the event loop's thread, turned into families when scraped."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.counts: dict[tuple[str, str, int], int] = {}  # (route, method, status): bounded
        self.durations: dict[tuple[str, str], Buckets] = {}
        self.sync_ops = Buckets(BATCH_BUCKETS)
        self.sync_bytes = Buckets(BYTES_BUCKETS)
        self.ingest_lag = Buckets(LAG_BUCKETS)

    def snapshot(self) -> dict[str, Any]:
        """Everything counted so far, as JSON-ready data (what a worker shares)."""
        return {
            "in_flight": self.in_flight,
            "counts": [[*key, n] for key, n in self.counts.items()],
            "durations": [[*key, b.counts, b.sum] for key, b in self.durations.items()],
            **{name: [b.counts, b.sum] for name, b in self._histograms()},
        }

    def absorb(self, snapshot: Mapping[str, Any]) -> None:
        """Add a `snapshot` (another worker's) to these counts."""
        self.in_flight += int(snapshot["in_flight"])
        for route, method, status, n in snapshot["counts"]:
            key = (str(route), str(method), int(status))
            self.counts[key] = self.counts.get(key, 0) + int(n)
        for route, method, counts, total in snapshot["durations"]:
            buckets = self.durations.setdefault((route, method), Buckets(LATENCY_BUCKETS))
            buckets.absorb(counts, total)
        for name, buckets in self._histograms():
            buckets.absorb(*snapshot[name])

    def _histograms(self) -> tuple[tuple[str, Buckets], ...]:
        return (
            ("sync_ops", self.sync_ops),
            ("sync_bytes", self.sync_bytes),
            ("ingest_lag", self.ingest_lag),
        )

    def collect(self) -> Iterator[Metric]:
        labels = ["route", "method"]
        requests = CounterMetricFamily(
            "payg_http_requests",
            "HTTP requests by route, method and status",
            labels=[*labels, "status"],
        )
        failed: dict[tuple[str, str, str], int] = {}
        for (route, method, status), n in self.counts.items():
            requests.add_metric([route, method, str(status)], n)
            if status >= 400:
                key = (route, method, "server" if status >= 500 else "client")
                failed[key] = failed.get(key, 0) + n
        yield requests
        errors = CounterMetricFamily(
            "payg_http_request_errors",
            "HTTP requests answered 4xx (client) or 5xx (server)",
            labels=[*labels, "kind"],
        )
        for kind, n in failed.items():
            errors.add_metric(list(kind), n)
        yield errors
        duration = HistogramMetricFamily(
            "payg_http_request_duration_seconds",
            "Time from request start to response",
            labels=labels,
        )
        for route_method, buckets in self.durations.items():
            duration.add_metric(list(route_method), buckets.cumulative(), buckets.sum)
        yield duration
        yield GaugeMetricFamily(
            "payg_http_requests_in_flight", "Requests being handled now", value=self.in_flight
        )
        for name, doc, buckets in (
            ("payg_sync_batch_operations", "Operations per sync request", self.sync_ops),
            ("payg_sync_request_bytes", "Sync request body size", self.sync_bytes),
            (
                "payg_sync_ingest_lag_seconds",
                "Server receive time minus the handset's record time, per operation",
                self.ingest_lag,
            ),
        ):
            family = HistogramMetricFamily(name, doc)
            family.add_metric([], buckets.cumulative(), buckets.sum)
            yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = RequestMetrics()
        r.register(self.requests)
        self.sync_ops = self.requests.sync_ops
        self.sync_bytes = self.requests.sync_bytes
        self.ingest_lag = self.requests.ingest_lag
        self.auth_failures = Counter(
            "payg_auth_failures",
            "Provisioning codes and distributor tokens refused (wrong) or throttled (not checked)",
            ["kind", "outcome"],
            registry=r,
        )
        self.store_totals = StoreTotals()
        r.register(self.store_totals)
        self.write_lock = LockTotals()
        r.register(self.write_lock)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One request's rate, error and duration (the event loop's thread only)."""
        requests = self.requests
        key = (route, method, status)
        requests.counts[key] = requests.counts.get(key, 0) + 1
        buckets = requests.durations.get(key[:2])
        if buckets is None:
            buckets = requests.durations[key[:2]] = Buckets(LATENCY_BUCKETS)
        buckets.observe(seconds)

    def render(self, totals: Mapping[str, int]) -> bytes:
        self.store_totals.totals = totals
        return generate_latest(self.registry)

    def snapshot(self) -> dict[str, Any]:
        """This process's counts, to be added up with the other workers' (`merged`)."""
        auth = [
            [s.labels["kind"], s.labels["outcome"], s.value]
            for family in self.auth_failures.collect()
            for s in family.samples
            if s.name.endswith("_total")
        ]
        return {
            "requests": self.requests.snapshot(),
            "auth_failures": auth,
            "write_lock": self.write_lock.values(),
        }

    @classmethod
    def merged(cls, snapshots: Iterable[Mapping[str, Any]]) -> Metrics:
        """One registry counting what every worker counted (each one's `snapshot`)."""
        total = cls()
        workers = 0
        for snapshot in snapshots:
            workers += 1
            total.requests.absorb(snapshot["requests"])
            for kind, outcome, n in snapshot["auth_failures"]:
                total.auth_failures.labels(kind, outcome).inc(n)
            for name in LockTotals.NAMES:
                total.write_lock.absorbed[name] += float(snapshot["write_lock"][name])
        Gauge(
            "payg_workers_reporting",
            "Worker processes whose counts this scrape adds up (serve --workers)",
            registry=total.registry,
        ).set(workers)
        return total
