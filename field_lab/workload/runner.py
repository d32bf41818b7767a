"""The open-loop runner: every action starts at its planned time whether or not earlier ones
finished, and its latency counts from that time (no coordinated omission). Distributors read
reports on their own open-loop schedule beside it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine

import aiohttp

from field_lab.lab.stats import RunStats
from field_lab.scenario import Scenario
from field_lab.workload.plan import Plan, reader_start
from field_lab.world.clock import LabClock

REPORT_PATHS = (
    "/v1/reports/sales?limit=50",
    "/v1/reports/collections?limit=50",
    "/v1/reports/devices?limit=50",
    "/v1/reports/activation?limit=50",
)
"""Distributor report endpoints the readers poll (the platform's report API)."""
LATE_S = 1.0
"""An action that starts more than this after its planned time counts as a late start."""

Act = Callable[[str, int, float], Coroutine[object, object, None]]


async def run_plan(
    plan: Plan,
    act: Act,
    clock: LabClock,
    start: float,
    stats: RunStats,
    actions: set[asyncio.Task[None]],
) -> None:
    """Start `act(kind, target, intended)` for every event at its time. `actions` holds the
    ones still running (the caller's, so it can settle or cancel them whatever happens)."""
    for at, kind, target in plan.events:
        delay = start + at - clock.real()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -LATE_S:
            stats.late_starts += 1
        task = asyncio.create_task(act(kind, target, start + at))
        actions.add(task)
        task.add_done_callback(actions.discard)


async def read_reports(
    url: str,
    reader: int,
    scenario: Scenario,
    clock: LabClock,
    start: float,
    stats: RunStats,
    stop: asyncio.Event,
    token: str | None = None,
    distributor: str | None = None,
) -> None:
    """A distributor polling reports, one request every `interval_s` from its planned time,
    with its bearer `token` when it has one; counted under its name when it has one."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    interval = scenario.reports.interval_s
    first = start + reader_start(scenario, reader)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        n = 0
        while not stop.is_set():
            intended = first + n * interval
            n += 1
            delay = intended - clock.real()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return
            ok = False
            try:
                async with session.get(
                    url + REPORT_PATHS[n % len(REPORT_PATHS)], headers=headers
                ) as response:
                    await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, OSError, TimeoutError):
                ok = False
            stats.read_report(distributor, max(0.001, clock.real() - intended) if ok else None)
