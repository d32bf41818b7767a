"""Latency recording in HdrHistograms: bounded memory, 3 significant digits, lossless merge.

Values are seconds at the API and integer milliseconds inside (1 ms to 1 day). Latencies are
measured by the caller from the *intended* start of an action, so a stalled schedule shows up
as latency instead of vanishing (no coordinated omission).
"""

from __future__ import annotations

import math

from hdrh.histogram import HdrHistogram

LOWEST_MS = 1
HIGHEST_MS = 86_400_000
SIGNIFICANT_FIGURES = 3


class Latency:
    """One latency distribution, in seconds."""

    def __init__(self) -> None:
        self._h = HdrHistogram(LOWEST_MS, HIGHEST_MS, SIGNIFICANT_FIGURES)
        self.clamped = 0
        """Values outside 1 ms .. 1 day, recorded at the nearest bound."""

    def record(self, seconds: float) -> None:
        if not math.isfinite(seconds):
            raise ValueError(f"latency must be finite, got {seconds}")
        ms = round(seconds * 1000)
        if ms < LOWEST_MS or ms > HIGHEST_MS:
            self.clamped += 1
            ms = min(max(ms, LOWEST_MS), HIGHEST_MS)
        self._h.record_value(ms)

    @property
    def count(self) -> int:
        return int(self._h.get_total_count())

    def percentile(self, p: float) -> float:
        """Seconds at percentile `p` (0..100); NaN when empty."""
        if not self.count:
            return math.nan
        return float(self._h.get_value_at_percentile(p)) / 1000

    def mean(self) -> float:
        return float(self._h.get_mean_value()) / 1000 if self.count else math.nan

    def min(self) -> float:
        return float(self._h.get_min_value()) / 1000 if self.count else math.nan

    def max(self) -> float:
        return float(self._h.get_max_value()) / 1000 if self.count else math.nan

    def share_within(self, seconds: float) -> float:
        """Fraction of values at or below `seconds` (the "within SLO" share)."""
        if not self.count:
            return math.nan
        limit = round(seconds * 1000)
        below = sum(
            int(item.count_added_in_this_iter_step)
            for item in self._h.get_recorded_iterator()
            if self._h.get_lowest_equivalent_value(item.value_iterated_to) <= limit
        )
        return below / self.count

    def summary(self) -> dict[str, float | int]:
        return {
            "count": self.count,
            "p50": self.percentile(50),
            "p95": self.percentile(95),
            "p99": self.percentile(99),
            "max": self.max(),
            "mean": self.mean(),
        }

    def encode(self) -> bytes:
        """A compressed histoblob, for shipping from workers."""
        return bytes(self._h.encode())

    def merge_encoded(self, blob: bytes) -> None:
        """Add a histoblob from `encode()`; merging loses nothing."""
        self._h.decode_and_add(blob)

    def merge(self, other: Latency) -> None:
        self._h.add(other._h)
        self.clamped += other.clamped

    def distribution(self) -> list[tuple[float, float]]:
        """(seconds, cumulative fraction) points for a CDF plot."""
        if not self.count:
            return []
        points, seen = [], 0
        for item in self._h.get_recorded_iterator():
            seen += int(item.count_added_in_this_iter_step)
            points.append((float(item.value_iterated_to) / 1000, seen / self.count))
        return points
