"""Report health checks: `server-stub check-reports` over HTTP and `/readyz` in process run the
same check (each critical report's first page against a budget) and agree on what it found."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from field_lab.world.fixture import distributor_token
from server_stub.app import Platform
from server_stub.cli import main
from server_stub.health import (
    CRITICAL,
    FAILED,
    OK,
    OVER_BUDGET,
    TIMED_OUT,
    Check,
    ReportFailed,
    check_reports,
    healthy,
    over_http,
    table,
)

from .fixtures import seed_platform
from .platform import start, url_of

# -- the check itself, with first pages made to order ---------------------------------------------


class Ticks:
    """A clock that moves only when a first page says how long it took."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_each_report_is_judged_by_status_and_budget() -> None:
    clock = Ticks()
    took_ms = {"sales": 5.0, "collections": 900.0, "devices": 1.0, "activation": 2.0}

    async def first_page(report: str) -> int:
        clock.now += took_ms[report] / 1000
        if report == "activation":
            raise ReportFailed("OperationalError: database is locked")
        return 404 if report == "devices" else 200

    checks = await check_reports(first_page, 500, timeout_s=5, clock=clock)
    assert [c.report for c in checks] == list(CRITICAL)
    assert [c.verdict for c in checks] == [OK, OVER_BUDGET, FAILED, FAILED]
    assert [round(c.ms) for c in checks] == [5, 900, 1, 2]
    assert checks[3].problem == "OperationalError: database is locked"
    assert not healthy(checks)
    assert healthy(checks[:1])


async def test_a_report_that_never_answers_times_out_and_the_rest_are_still_checked() -> None:
    async def first_page(report: str) -> int:
        if report == "sales":
            await asyncio.sleep(30)
        return 200

    checks = await check_reports(first_page, 500, timeout_s=0.05)
    assert [c.verdict for c in checks] == [TIMED_OUT, OK, OK, OK]
    assert checks[0].status is None


def test_the_table_has_a_row_per_report_in_aligned_columns() -> None:
    checks = [
        Check("sales", 200, 4.25, 500),
        Check("collections", 200, 812.0, 500),
        Check("devices", None, 5000.0, 500, TIMED_OUT),
        Check("activation", None, 3.0, 500, "OperationalError: disk I/O error"),
    ]
    lines = table(checks).splitlines()
    assert lines[0].split() == ["report", "status", "ms", "budget", "verdict"]
    assert lines[1].split() == ["sales", "200", "4.2", "500", "ok"]
    assert lines[2].split()[-2:] == ["over", "budget"]
    assert lines[3].split() == ["devices", "-", "5000.0", "500", "timed", "out"]
    assert lines[4].endswith("failed: OperationalError: disk I/O error")
    spans = [[m.span() for m in re.finditer(r"\S+", line)] for line in lines]
    assert len({row[1][1] for row in spans}) == 1  # status is right-aligned
    assert len({row[2][1] for row in spans}) == 1  # ms is right-aligned


# -- over HTTP -----------------------------------------------------------------------------------


async def test_over_http_sends_the_token_and_judges_what_comes_back() -> None:
    """A platform of another kind: one report answers 500, one is slow, one is not a page."""
    seen: list[str] = []

    async def report(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        name = request.match_info["name"]
        if name == "collections":
            return web.json_response({"error": "boom"}, status=500)
        if name == "devices":
            await asyncio.sleep(30)
        if name == "activation":
            return web.Response(text="<html>a login page</html>")
        return web.json_response({"items": [], "next_cursor": None})

    app = web.Application()
    app.router.add_get("/v1/reports/{name}", report)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            first_page = over_http(http, url_of(server) + "/", "tok-A")
            checks = await check_reports(first_page, 500, timeout_s=0.2)
    finally:
        await server.close()
    assert seen == ["Bearer tok-A"] * 4
    assert [(c.status, c.verdict) for c in checks] == [
        (200, OK),
        (500, FAILED),
        (None, TIMED_OUT),
        (None, FAILED),
    ]
    assert checks[3].problem == "answered 200 but not with a report page"


# -- the command and /readyz against the platform ------------------------------------------------


async def test_check_reports_and_readyz_agree_on_a_running_platform(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "server.db"
    seed_platform(db)
    token = distributor_token(db)  # the seeded agents work for the default distributor
    server = await start(db, Platform())
    url = url_of(server)
    try:
        code = await asyncio.to_thread(main, ["check-reports", "--url", url, "--token", token])
        healthy_out = capsys.readouterr().out
        monkeypatch.setenv("PAYG_REPORT_TOKEN", token)  # the token kept off the command line
        strict = ["check-reports", "--url", url, "--budget-ms", "0.0001"]
        strict_code = await asyncio.to_thread(main, strict)
        strict_out = capsys.readouterr().out
        async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as r:
            ready = (r.status, await r.json())
    finally:
        await server.close()
    assert code == 0, healthy_out
    rows = [line.split() for line in healthy_out.splitlines()[1:]]
    assert [(row[0], row[1], row[-1]) for row in rows] == [(r, "200", "ok") for r in CRITICAL]
    assert strict_code == 1
    assert all(line.endswith("over budget") for line in strict_out.splitlines()[1:])
    status, body = ready
    assert status == 200
    assert [(c["report"], c["status"], c["verdict"]) for c in body["reports"]] == [
        (r, 200, "ok") for r in CRITICAL
    ]
    assert body["probe_s"] == pytest.approx(sum(c["ms"] for c in body["reports"]) / 1000, abs=1e-5)


async def test_readyz_names_the_report_that_failed(tmp_path: Path) -> None:
    db = tmp_path / "server.db"
    seed_platform(db)
    server = await start(db, Platform())
    try:
        with contextlib.closing(sqlite3.connect(db)) as c:  # the activation report's table
            c.execute("ALTER TABLE mm_txns RENAME TO mm_txns_gone")
            c.commit()
        async with aiohttp.ClientSession() as http, http.get(server.make_url("/readyz")) as r:
            status, body = r.status, await r.json()
    finally:
        await server.close()
    assert status == 503
    assert body["ready"] is False
    verdicts = {c["report"]: c["verdict"] for c in body["reports"]}
    assert verdicts == {**dict.fromkeys(CRITICAL, "ok"), "activation": "failed"}
    assert body["reason"] == "activation: OperationalError: no such table: mm_txns"
