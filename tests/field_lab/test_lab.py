"""The lab end to end on small scenarios, and proof that its checkers can fail."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from field_lab.lab.world import Lab
from field_lab.scenario import DEFAULT, Scenario

TINY = replace(
    DEFAULT.with_overrides(agents=3, devices=15, duration_s=6, seed=5),
    settle_s=12,
    agents=replace(DEFAULT.agents, visits_per_hour=900, sync_interval_s=3),
    customers=replace(DEFAULT.customers, payments_per_hour=240, seconds_per_key=0.05),
    reports=replace(DEFAULT.reports, readers=1, interval_s=1),
    mobile_money=replace(DEFAULT.mobile_money, delay_s=(0.1, 0.5), reorder_window_s=0.3),
    sms=replace(DEFAULT.sms, delay_s=(0.1, 0.5), resend_after_s=3),
)


async def run(tmp_path: Path, scenario: Scenario = TINY, **kw: object) -> Lab:
    lab = Lab(scenario, tmp_path, **kw)  # type: ignore[arg-type]
    await lab.run()
    return lab


async def test_a_small_run_is_clean(tmp_path: Path) -> None:
    lab = await run(tmp_path)
    s = lab.stats
    assert s.total.sale_failed.total > 0
    assert s.total.activation.count > 0
    assert (s.lost_ops, s.duplicate_ops, s.unexpected_ops) == (0, 0, 0)
    assert (s.overcredited, s.undercredited) == (0, 0)
    assert s.total.exchanges > 0
    assert lab.history.counts()["ok"] > 0


@pytest.mark.parametrize(
    ("fault", "caught"),
    [
        ("lose-op", lambda lab: lab.stats.lost_ops),
        ("duplicate-op", lambda lab: lab.stats.duplicate_ops),
        ("overcredit", lambda lab: lab.stats.overcredited),
    ],
)
async def test_checkers_catch_injected_faults(tmp_path: Path, fault: str, caught: object) -> None:
    lab = await run(tmp_path, inject=frozenset({fault}))
    assert caught(lab) >= 1  # type: ignore[operator]


def test_cli_writes_results_and_exit_codes(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(
        "duration_s = 5\nsettle_s = 8\n[fleet]\nagents = 2\ndevices = 8\n"
        "[agents]\nvisits_per_hour = 600\n[customers]\nseconds_per_key = 0.05\n"
        '[slo]\nlost_ops = ["count==0"]\nsale_activation_s = ["p(50)<0.001"]\n'
    )
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "field_lab.cli", "run", str(scenario), "--out", str(out), "--quiet"],
        capture_output=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 99, done.stderr.decode()[-2000:]  # the impossible SLO fails
    doc = json.loads((out / "summary.json").read_text())
    for field in (
        "sale_success_rate",
        "activation_latency_s",
        "report_availability",
        "lost_ops",
        "duplicate_ops",
        "overcredited_meters",
        "undercredited_meters",
        "slo",
        "by_profile",
    ):
        assert field in doc
    assert set(doc["activation_latency_s"]) >= {"p50", "p95", "p99"}
    assert doc["slo"]["lost_ops: count==0"]["pass"] is True
    assert doc["slo"]["sale_activation_s: p(50)<0.001"]["pass"] is False
    for name in (
        "timeseries.csv",
        "activation_cdf.png",
        "sales_over_time.png",
        "queue_and_links.png",
        "histograms/activation.hlog",
    ):
        assert (out / name).exists(), name


def test_cli_refuses_a_bad_scenario(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[fleet]\nagents = -1\n")
    done = subprocess.run(
        [sys.executable, "-m", "field_lab.cli", "run", str(bad)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert b"fleet.agents" in done.stderr


async def test_every_meter_records_a_trace_that_replays(tmp_path: Path) -> None:
    from field_lab.lab.traces import TraceBook

    book = TraceBook(tmp_path / "traces")
    lab = await run(tmp_path, traces=book)
    assert book.write() > 0
    traces = sorted((tmp_path / "traces").glob("meter-*.jsonl"))
    assert traces
    for trace in traces[:3]:
        done = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "meter_sim.cli",
                "replay",
                str(trace),
                "--target",
                "sim",
                "--fast",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout.decode()[-1500:]
    assert lab.stats.lost_ops == 0


async def test_the_naive_client_runs_the_same_scenario(tmp_path: Path) -> None:
    lab = await run(tmp_path, client="naive")
    t = lab.stats.total
    assert t.sale_failed.total > 0
    assert lab.stats.lost_ops == lab.stats.duplicate_ops == 0
    assert t.polls == 0
    assert t.exchanges - t.failed_exchanges <= t.ops  # one request per operation, no batching
