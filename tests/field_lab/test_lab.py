"""The lab end to end on small scenarios, and proof that its checkers can fail."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from field_lab.lab.lab import Lab, Target
from field_lab.measure.slo import evaluate
from field_lab.net import free_port, listening
from field_lab.scenario import DEFAULT, Scenario
from field_lab.testing.platform import PlatformSpec, running_platform
from server_stub.faults import PlatformFaults

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


@asynccontextmanager
async def target_platform(
    tmp_path: Path, faults: PlatformFaults | None = None, scenario: Scenario = TINY
) -> AsyncIterator[Target]:
    """A platform the lab does not own, on 127.0.0.1, seeded as an embedded run of `scenario`
    would be, reached only over HTTP (`--target`) with its operator secret and audit token."""
    spec = PlatformSpec(
        agents=scenario.fleet.agents,
        devices=scenario.fleet.devices,
        protocols=dict(scenario.devices.protocols),
        seed=scenario.seed,
        faults=faults,
    )
    async with running_platform(tmp_path, spec) as platform:
        yield Target(platform.url, platform.fixture, platform.audit_token, platform.mm_secret)


def figures(lab: Lab) -> dict[str, int | None]:
    assert lab.verdict is not None
    return lab.verdict.figures()


async def test_a_small_run_is_clean(tmp_path: Path) -> None:
    frozen: dict[str, tuple[int, int, bool]] = {}
    thresholds = gc.get_threshold()

    def progress(current: Lab) -> None:
        seen = (gc.get_freeze_count(), gc.get_threshold()[0], gc.isenabled())
        frozen.setdefault(current.phase, seen)

    lab = await run(tmp_path, progress=progress)
    # set-up's objects are out of the collector's sight in the field only, never after; the
    # collector, off while setting up, collects in the field and after
    assert frozen["field"][0] > 0
    assert frozen["field"][1] > thresholds[0]
    assert frozen["field"][2]
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds
    assert gc.isenabled()
    steps = {"provision", "installed_base", "drain", "typing", "to_field", "warm_up"}
    assert lab.setup_s.keys() == steps
    assert lab.warmed == lab.warm == lab.handsets  # every handset opened its connection early
    s = lab.stats
    assert s.total.sale_failed.total > 0
    assert s.total.activation.count > 0
    assert lab.verdict is not None
    assert lab.verdict.valid, lab.verdict.details()
    assert s.total.exchanges > 0
    assert lab.history.counts()["ok"] > 0
    # question 3 per distributor: each read its own reports with its own token, all answered
    assert set(s.by_distributor) == {"distributor-1", "distributor-2", "distributor-3"}
    for group in s.by_distributor.values():
        assert group.report_failed.total > 0
        assert group.report_failed.hits == 0
    assert sum(g.sale_failed.total for g in s.by_distributor.values()) == s.total.sale_failed.total


async def test_a_target_run_is_judged_as_an_embedded_one(tmp_path: Path) -> None:
    """Same seed, same scenario: embedded, and through --target with an audit token, every
    check has evidence and the verdicts agree."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    embedded = await run(tmp_path / "a")
    async with target_platform(tmp_path) as target:
        remote = await run(tmp_path / "b", target=target)
    assert embedded.verdict is not None
    assert remote.verdict is not None
    assert remote.verdict.checks() == embedded.verdict.checks()
    assert all(v == "checked" for v in remote.verdict.checks().values())
    assert figures(remote) == figures(embedded)
    assert remote.verdict.valid, remote.verdict.details()


async def test_without_an_audit_token_server_checks_are_unchecked(tmp_path: Path) -> None:
    async with target_platform(tmp_path) as target:
        lab = await run(tmp_path, target=replace(target, audit_token=None))
    found = figures(lab)
    for name in ("lost_ops", "duplicate_ops", "unexpected_ops", "duplicate_keycodes"):
        assert found[name] is None
    assert found["overcredited_meters"] == 0  # the meters still count
    slo = evaluate(TINY.thresholds, lab.stats.metrics())
    assert any(v.unchecked and not v.passed for v in slo)
    waived = evaluate(TINY.thresholds, lab.stats.metrics(), {"lost_ops", "duplicate_ops"})
    assert all(v.passed for v in waived if v.threshold.metric in ("lost_ops", "duplicate_ops"))


FAULTS = [
    pytest.param(PlatformFaults(lose_ack_every=4), "lost_ops", id="lost-ack"),
    pytest.param(PlatformFaults(apply_twice_every=4), "duplicate_ops", id="applied-twice"),
    pytest.param(PlatformFaults(credit_factor=2), "overcredited_meters", id="double-days"),
]


@pytest.mark.parametrize(("faults", "figure"), FAULTS)
async def test_the_judge_catches_platform_faults_embedded(
    tmp_path: Path, faults: PlatformFaults, figure: str
) -> None:
    lab = await run(tmp_path, faults=faults)
    assert (figures(lab)[figure] or 0) >= 1, figures(lab)


@pytest.mark.parametrize(("faults", "figure"), FAULTS)
async def test_the_judge_catches_platform_faults_through_target(
    tmp_path: Path, faults: PlatformFaults, figure: str
) -> None:
    async with target_platform(tmp_path, faults) as target:
        lab = await run(tmp_path, target=target)
    assert (figures(lab)[figure] or 0) >= 1, figures(lab)


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
        "report.html",
        "activation_cdf.png",
        "sales_over_time.png",
        "queue_and_links.png",
        "histograms/activation.hlog",
    ):
        assert (out / name).exists(), name
    page = (out / "report.html").read_text(encoding="utf-8")
    assert f"field-lab run {doc['run']}" in page
    status = doc["slo"]["sale_activation_s: p(50)<0.001"]["status"]
    verdict = {"fail": "no", "no samples": "not shown"}[status]  # question 1 follows its SLO
    assert f'data-verdict="{verdict}"' in page.split('id="q-activation"')[0]


SERVER = Path(sys.executable).parent / "server-stub"
CLI_SCENARIO = (
    "duration_s = 5\nsettle_s = 8\n[fleet]\nagents = 2\ndevices = 8\n"
    "[agents]\nvisits_per_hour = 600\n[customers]\nseconds_per_key = 0.05\n"
    '[slo]\nlost_ops = ["count==0"]\nduplicate_ops = ["count==0"]\n'
    'overcredited_meters = ["count==0"]\n'
)


def lab_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "field_lab.cli", *args],
        capture_output=True,
        timeout=240,
        check=False,
        env=env,
    )


@contextmanager
def served(tmp_path: Path, scenario: Path, name: str) -> Iterator[tuple[str, Path]]:
    """`server-stub serve` on a database `field-lab seed` prepared; yields URL and fixture."""
    with serving_process(tmp_path, scenario, name) as (url, fixture, _):
        yield url, fixture


@contextmanager
def serving_process(
    tmp_path: Path, scenario: Path, name: str
) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    """As `served`, and the server's process (to kill it mid-run)."""
    db, fixture = tmp_path / f"{name}.db", tmp_path / f"{name}.json"
    seeded = lab_cli("seed", str(scenario), "--db", str(db), "--fixture", str(fixture))
    assert seeded.returncode == 0, seeded.stderr.decode()
    port = free_port()
    env = {**os.environ, "PAYG_AUDIT_TOKEN": "the-operators-token", "PAYG_MM_SECRET": "mm"}
    server = subprocess.Popen(
        [str(SERVER), "--db", str(db), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: listening(port), 30)
        yield f"http://127.0.0.1:{port}", fixture, server
    finally:
        if server.poll() is None:
            server.terminate()
        server.wait(timeout=30)


def test_cli_against_a_target_checks_exactly_what_its_audit_token_allows(tmp_path: Path) -> None:
    """The lab reaches `server-stub serve` only by URL: without the audit token the server-side
    checks are unchecked and fail the gate (99); with it, everything is checked."""
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(CLI_SCENARIO)
    env = {**os.environ, "PAYG_MM_SECRET": "mm"}
    env.pop("PAYG_AUDIT_TOKEN", None)

    def run_against(url: str, fixture: Path, out: str, *extra: str) -> CompletedProcess[bytes]:
        common = ["run", str(scenario), "--target", url, "--fixture", str(fixture), "--quiet"]
        return lab_cli(*common, "--out", str(tmp_path / out), *extra, env=env)

    with served(tmp_path, scenario, "a") as (url, fixture):
        blind = run_against(url, fixture, "blind")
    assert blind.returncode == 99, blind.stderr.decode()[-2000:]
    doc = json.loads((tmp_path / "blind" / "summary.json").read_text())
    for name in ("lost_ops", "duplicate_ops", "unexpected_ops", "duplicate_keycodes"):
        assert doc[name] is None
        assert doc["checks"][name] == "unchecked"
    assert doc["slo"]["lost_ops: count==0"]["status"] == "unchecked"
    assert doc["overcredited_meters"] == 0  # the meters are evidence without a token
    assert b"unchecked" in blind.stdout
    with served(tmp_path, scenario, "b") as (url, fixture):
        wrong = run_against(url, fixture, "wrong", "--audit-token", "guess")
        seeing = run_against(url, fixture, "seeing", "--audit-token", "the-operators-token")
    assert wrong.returncode == 107
    assert b"401" in wrong.stderr
    assert seeing.returncode == 0, seeing.stdout.decode()[-2000:]
    doc = json.loads((tmp_path / "seeing" / "summary.json").read_text())
    assert set(doc["checks"].values()) == {"checked"}
    assert doc["lost_ops"] == doc["duplicate_ops"] == 0
    # a target run's readers send the fixture's distributors' tokens: every read answered
    assert set(doc["by_distributor"]) == {"distributor-1", "distributor-2"}
    for d in doc["by_distributor"].values():
        assert d["report_availability"] == 1.0
        assert d["report_latency_s"]["count"] > 0


def wait_until(done: Callable[[], bool], seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if done():
            return True
        time.sleep(0.05)
    return False


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
    from field_lab.world.traces import TraceBook

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
    assert figures(lab)["lost_ops"] == 0


async def test_the_naive_client_runs_the_same_scenario(tmp_path: Path) -> None:
    lab = await run(tmp_path, adapter="naive")
    t = lab.stats.total
    assert t.sale_failed.total > 0
    assert figures(lab)["lost_ops"] == figures(lab)["duplicate_ops"] == 0
    assert t.polls == 0
    assert t.exchanges - t.failed_exchanges <= t.ops  # one request per operation, no batching
