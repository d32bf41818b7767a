"""Meters with their own 2G link: a share of the sites report in OpenPAYGO Metrics.

Each metered meter runs the device's own reporter (`meter_sim.metrics`) and posts to the
platform's `/dd` every `report_every_h` device hours over its own emulated link, one
connection per report as a modem that sleeps between reports would. The tokens in the answer
go through the meter's keypad validator, so a payment reaches such a meter by its link and by
the customer typing it, and the meter takes it once (the second path hears "already used").
What the link carried (HTTP requests and answers, headers included) is scaled to bytes per
device per month and set beside the 2G budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from dataclasses import dataclass
from typing import Any

import aiohttp

from field_lab.link import DOWN, UP, get_profile
from field_lab.link.aio import LinkConnector
from field_lab.link.scheduler import LinkPort, LinkScheduler
from field_lab.scenario import Scenario
from field_lab.world.clock import LabClock
from field_lab.world.sites import Site
from meter_sim import Outcome
from meter_sim.metrics import MetricsReporter, ReporterConfig, Request

MONTH_S = 30 * 86_400
REQUEST_TIMEOUT_S = 30.0
"""A report whose answer has not come in this long (real seconds) has failed; its rows stay."""


@dataclass
class MeterLink:
    """One metered site: its reporter, its link, and what happened on it."""

    site: Site
    reporter: MetricsReporter
    port: LinkPort
    first_s: float
    """Device seconds into the field of its first report (staggered, seeded)."""
    reports: int = 0
    acknowledged: int = 0
    failed: int = 0
    tokens_applied: int = 0
    tokens_not_applied: int = 0
    """Tokens the meter refused, mostly ones the customer had typed already."""


class Metering:
    def __init__(self, scenario: Scenario, sites: dict[int, Site], url: str, clock: LabClock):
        m = scenario.metering
        self.scenario = scenario
        self.clock = clock
        self.every_s = m.report_every_h * 3600
        self.budget_bytes = m.budget_kb_month * 1000
        self.scheduler = LinkScheduler()
        profile = get_profile(m.link)
        now = clock.meter()
        self.meters = []
        for serial in sorted(sites):
            first_s = first_report_s(scenario.seed, serial, m.metered_share, self.every_s)
            if first_s is None:
                continue
            site = sites[serial]
            reporter = MetricsReporter(
                site.meter, ReporterConfig(str(serial), site.secret.key, url), storage=None, now=now
            )
            self.meters.append(
                MeterLink(site, reporter, self.scheduler.add(profile, seed=serial), first_s)
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Every metered meter reports on its schedule until `stop` (bounded in count)."""
        start = self.clock.meter()
        s = self.scenario
        limit = math.ceil((s.duration_s + s.settle_s) * s.time_scale / self.every_s) + 2
        await asyncio.gather(*(self._reports(m, start, limit, stop) for m in self.meters))

    async def _reports(self, m: MeterLink, start: float, limit: int, stop: asyncio.Event) -> None:
        connector = LinkConnector(m.port, force_close=True)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            for n in range(limit):
                due = start + m.first_s + n * self.every_s
                delay = self.clock.real_seconds(due - self.clock.meter())
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return
                if m.site.sold:  # a meter on the agent's shelf is not switched on
                    await self._report(m, session)

    async def _report(self, m: MeterLink, session: aiohttp.ClientSession) -> None:
        site, reporter = m.site, m.reporter
        request: Request = reporter.request(self.clock.meter())
        m.reports += 1
        try:
            async with session.post(
                request.url, data=request.body, headers={"Content-Type": "application/json"}
            ) as response:
                status, body = response.status, await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError):
            reporter.failed(request)
            m.failed += 1
            return
        async with site.lock:  # not while the customer is typing into the same meter
            now = self.clock.meter()
            before = site.meter.credit_remaining(now)
            answered = reporter.answer(request, status, body, now)
            site.granted += site.meter.credit_remaining(now) - before
        if not answered.acknowledged:
            m.failed += 1
            return
        m.acknowledged += 1
        for text, outcome in answered.tokens:
            if outcome is Outcome.APPLIED:
                site.by_link[text] = self.clock.real()
                m.tokens_applied += 1
            else:
                m.tokens_not_applied += 1

    def close(self) -> None:
        self.scheduler.close()

    def figures(self) -> dict[str, Any]:
        """The `metering` section of summary.json."""
        counted = {
            "meters": len(self.meters),
            "reports": sum(m.reports for m in self.meters),
            "reports_acknowledged": sum(m.acknowledged for m in self.meters),
            "reports_failed": sum(m.failed for m in self.meters),
            "tokens_by_link": sum(m.tokens_applied for m in self.meters),
            "tokens_by_link_not_applied": sum(m.tokens_not_applied for m in self.meters),
            "bytes_up": sum(m.port.link.bytes_written[UP] for m in self.meters),
            "bytes_down": sum(m.port.link.bytes_written[DOWN] for m in self.meters),
        }
        return section(counted, self.every_s / 3600, self.budget_bytes)


def first_report_s(seed: int, serial: int, share: float, every_s: float) -> float | None:
    """Device seconds into the field of a metered meter's first report; None: not metered.
    Drawn per device from the run's seed, so the same meters report whatever the shards."""
    if share <= 0:
        return None
    rng = random.Random(f"{seed}:metered:{serial}")
    return rng.uniform(0, every_s) if rng.random() < share else None


COUNTED = (
    "meters",
    "reports",
    "reports_acknowledged",
    "reports_failed",
    "tokens_by_link",
    "tokens_by_link_not_applied",
    "bytes_up",
    "bytes_down",
)
"""The section's fields that add up across shards; the rest follow from them."""


def section(counted: dict[str, int], report_every_h: float, budget_bytes: float) -> dict[str, Any]:
    """The `metering` section from its counted fields. Each report stands for `report_every_h`
    of the device's life, so bytes per device-month = bytes / reports x reports a month."""
    reports = counted["reports"]
    both = counted["bytes_up"] + counted["bytes_down"]
    per_month = both / reports * (MONTH_S / (report_every_h * 3600)) if reports else None
    return {
        **{name: counted[name] for name in COUNTED},
        "report_every_h": report_every_h,
        "budget_bytes_month": budget_bytes,
        "bytes_per_device_month": None if per_month is None else round(per_month),
        "budget_share": None if per_month is None else round(per_month / budget_bytes, 4),
    }


def merged(sections: list[dict[str, Any]]) -> dict[str, Any]:
    """Shards' `metering` sections as one run's: counts add, per-month figures are recomputed
    from the sums (never averaged). Raises ValueError when the shards disagree on the
    scenario's report interval or budget, or a section lacks a field."""
    if not sections:
        raise ValueError("no metering section to merge")
    settings = {(s["report_every_h"], s["budget_bytes_month"]) for s in sections}
    if len(settings) != 1:
        raise ValueError(f"shards report different metering settings: {sorted(settings)}")
    every_h, budget = settings.pop()
    counted = {name: sum(int(s[name]) for s in sections) for name in COUNTED}
    return section(counted, float(every_h), float(budget))
