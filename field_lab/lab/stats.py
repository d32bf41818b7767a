"""The run's figures, overall, per link profile and per distributor, as the SLO metrics the
scenario names."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from field_lab.check.keys import FIGURES
from field_lab.measure.latency import Latency
from field_lab.measure.slo import CounterMetric, Metric, RateMetric, TrendMetric

if TYPE_CHECKING:
    from field_lab.world.handset import Exchange


@dataclass
class Figures:
    """One group's figures (the whole run, one link profile, or one distributor)."""

    activation: Latency = field(default_factory=Latency)
    sale_activation: Latency = field(default_factory=Latency)
    sync: Latency = field(default_factory=Latency)
    floor_ratio: Latency = field(default_factory=Latency)
    sale_failed: RateMetric = field(default_factory=RateMetric)
    payment_unactivated: RateMetric = field(default_factory=RateMetric)
    ops: int = 0
    """Operations handsets recorded in the measured phase."""
    exchanges: int = 0
    polls: int = 0
    """Exchanges that carried no operation (fetching downlink only)."""
    op_bytes: int = 0
    """Bytes both ways of the exchanges that carried operations."""
    poll_bytes: int = 0
    syncs: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    failed_exchanges: int = 0
    report: Latency = field(default_factory=Latency)
    """Report reads (distributors only: reports are read from the office, not over a link)."""
    report_failed: RateMetric = field(default_factory=RateMetric)


@dataclass
class RunStats:
    total: Figures = field(default_factory=Figures)
    by_profile: dict[str, Figures] = field(default_factory=lambda: defaultdict(Figures))
    by_distributor: dict[str, Figures] = field(default_factory=lambda: defaultdict(Figures))
    report: Latency = field(default_factory=Latency)
    report_failed: RateMetric = field(default_factory=RateMetric)
    checks: dict[str, int | None] = field(default_factory=dict)
    """The judge's figures: violations found, or None where a check had no evidence."""
    late_starts: int = 0
    no_stock: int = 0
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Figures of optional parts of a run (e.g. `metering`), each a summary.json section."""

    def groups(self, profile: str, distributor: str | None = None) -> tuple[Figures, ...]:
        """Where a handset's figures count: the run, its link profile, its distributor."""
        if distributor is None:
            return self.total, self.by_profile[profile]
        return self.total, self.by_profile[profile], self.by_distributor[distributor]

    def read_report(self, distributor: str | None, seconds: float | None) -> None:
        """One report read, answered after `seconds` or failed (None)."""
        ok = seconds is not None
        self.report_failed.add(not ok)
        group = None if distributor is None else self.by_distributor[distributor]
        if group is not None:
            group.report_failed.add(not ok)
        if seconds is not None:
            self.report.record(seconds)
            if group is not None:
                group.report.record(seconds)

    def add_exchanges(
        self, profile: str, exchanges: Iterable[Exchange], distributor: str | None = None
    ) -> None:
        """Count one handset's measured exchanges: bytes, time, and time over the floor."""
        for exchange in exchanges:
            both = exchange.bytes_up + exchange.bytes_down
            for group in self.groups(profile, distributor):
                group.exchanges += 1
                group.bytes_up += exchange.bytes_up
                group.bytes_down += exchange.bytes_down
                if exchange.ops:
                    group.op_bytes += both
                else:
                    group.polls += 1
                    group.poll_bytes += both
                if exchange.ok:
                    group.sync.record(exchange.seconds)
                    if exchange.floor > 0:
                        group.floor_ratio.record(exchange.seconds / exchange.floor)
                else:
                    group.failed_exchanges += 1

    def metrics(self) -> dict[str, Metric]:
        t = self.total
        return {
            "activation_s": TrendMetric(t.activation),
            "sale_activation_s": TrendMetric(t.sale_activation),
            "sync_s": TrendMetric(t.sync),
            "sync_floor_ratio": TrendMetric(t.floor_ratio),
            "report_s": TrendMetric(self.report),
            "sale_failed": t.sale_failed,
            "report_failed": self.report_failed,
            "payment_unactivated": t.payment_unactivated,
            **{name: CounterMetric(self.checks.get(name)) for name in FIGURES},
        }
