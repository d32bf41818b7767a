"""The lab against a platform it did not build: Sunrise, with its own JSON REST API, driven
through its adapter and judged through its audit endpoints over 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from examples.rest_platform import platform as sunrise
from field_lab.lab.lab import Lab, Target
from field_lab.scenario import DEFAULT

ADAPTER = "examples.rest_platform.adapter:SunriseAdapter"
TOKEN = "sunrise-operator"
SCENARIO = replace(
    DEFAULT.with_overrides(agents=3, devices=15, duration_s=6, seed=5),
    settle_s=10,
    agents=replace(DEFAULT.agents, visits_per_hour=900, sync_interval_s=2),
    customers=replace(DEFAULT.customers, payments_per_hour=300, seconds_per_key=0.05),
    reports=replace(DEFAULT.reports, readers=0),  # Sunrise has no distributor reports
)


@asynccontextmanager
async def running(tmp_path: Path, hours_per_day: int = 24) -> AsyncIterator[Target]:
    db = sunrise.open_db(tmp_path / "sunrise.db")
    fixture = sunrise.seed(db, agents=3, devices=15)
    app = sunrise.create_app(db, audit_token=TOKEN, hours_per_day=hours_per_day)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield Target(f"http://127.0.0.1:{runner.addresses[0][1]}", fixture, TOKEN)
    finally:
        await runner.cleanup()
        db.close()


async def test_the_lab_drives_and_judges_sunrise(tmp_path: Path) -> None:
    async with running(tmp_path) as target:
        lab = Lab(SCENARIO, tmp_path, target=target, adapter=ADAPTER)
        await lab.run()
    assert lab.verdict is not None
    assert set(lab.verdict.checks().values()) == {"checked"}
    assert lab.verdict.valid, lab.verdict.details()
    total = lab.stats.total
    assert total.sale_failed.total > 0
    assert total.sale_failed.hits < total.sale_failed.total  # sales were activated
    assert total.activation.count > 0  # cash payments reached meters
    assert lab.verdict.ops is not None
    assert lab.verdict.ops.acknowledged == lab.verdict.ops.attempted > 0


async def test_the_judge_catches_a_sunrise_that_grants_double_time(tmp_path: Path) -> None:
    async with running(tmp_path, hours_per_day=48) as target:
        lab = Lab(SCENARIO, tmp_path, target=target, adapter=ADAPTER)
        await lab.run()
    assert lab.verdict is not None
    figures = lab.verdict.figures()
    assert (figures["overcredited_meters"] or 0) > 0
    assert figures["lost_ops"] == figures["duplicate_ops"] == 0
