"""The lab against a platform it did not build: Sunrise, with its own JSON REST API, driven
through its adapter and judged through its audit endpoints over 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from examples.rest_platform import platform as sunrise
from field_lab.lab.lab import Lab, Target
from field_lab.net import free_port, listening
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


def test_field_lab_run_drives_sunrise_from_the_command_line(tmp_path: Path) -> None:
    """What a user types: Sunrise in its own process, the lab pointed at it by URL, fixture,
    adapter and audit token; every check has evidence and the gate passes."""
    root = Path(__file__).resolve().parents[2]
    port = free_port()
    env = {**os.environ, "SUNRISE_AUDIT_TOKEN": TOKEN}
    env.pop("PAYG_MM_SECRET", None)
    fixture = tmp_path / "fixture.json"
    serve = ["--db", str(tmp_path / "s.db"), "--fixture", str(fixture), "--port", str(port)]
    server = subprocess.Popen(
        [sys.executable, "-m", "examples.rest_platform.platform", *serve, "--agents", "2"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    scenario = tmp_path / "sunrise.toml"
    scenario.write_text(
        "duration_s = 5\nsettle_s = 6\n[fleet]\nagents = 2\ndevices = 40\n"
        "[agents]\nvisits_per_hour = 900\n[customers]\nseconds_per_key = 0.05\n"
        "[reports]\nreaders = 0\n"
        '[slo]\nlost_ops = ["count==0"]\nduplicate_ops = ["count==0"]\n'
        'overcredited_meters = ["count==0"]\nundelivered_keycodes = ["count==0"]\n'
    )
    try:
        deadline = time.monotonic() + 30
        while not (listening(port) and fixture.exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
        target = ["--target", f"http://127.0.0.1:{port}", "--fixture", str(fixture)]
        drive = ["--adapter", ADAPTER, "--audit-token", TOKEN, "--out", str(tmp_path / "out")]
        done = subprocess.run(
            [str(Path(sys.executable).parent / "field-lab"), "run", str(scenario), *target, *drive],
            cwd=root,
            env=env,
            capture_output=True,
            timeout=240,
            check=False,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert done.returncode == 0, done.stderr.decode()[-2000:] + done.stdout.decode()[-2000:]
    doc = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(doc["checks"].values()) == {"checked"}
    assert doc["adapter"] == ADAPTER
    assert doc["sale_attempts"] > 0
