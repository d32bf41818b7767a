"""Operations: liveness and readiness, Prometheus metrics in RED style with base units,
structured logs without secrets, and a graceful shutdown that finishes in-flight requests and
loses nothing it acknowledged."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import threading
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from agent_client.agent import Agent
from field_lab.testing.platform import PaygPlatform
from server_stub.app import DRAINING, METRICS, READERS, RUNNER, Platform, create_app
from server_stub.callbacks import SIGNATURE_HEADER, MoneyCallback, sign
from server_stub.logs import JsonFormatter, configure
from server_stub.metrics import Metrics
from server_stub.store import Store

from .fixtures import PRICE_PER_DAY, seed_platform
from .platform import SECRET, agent_for, start


async def test_health_ready_and_metrics_after_traffic(tmp_path: Path) -> None:
    db = tmp_path / "server.db"
    seeded = seed_platform(db)
    server = await start(db, Platform(mm_secret=SECRET))
    agent = await agent_for(server, tmp_path)
    customer = await agent.register_customer("Esi", "+233200000001")
    device = seeded.stock["ama"][0]
    await agent.record_sale(customer, device, seeded.plan, 2 * PRICE_PER_DAY)
    await agent.record_payment(device, PRICE_PER_DAY)
    await agent.sync()
    body = json.dumps(
        MoneyCallback("M1", str(device), PRICE_PER_DAY, "+233200000001", "success", 1).to_json()
    ).encode()
    async with aiohttp.ClientSession() as http:
        headers = {SIGNATURE_HEADER: sign(SECRET, body)}
        async with http.post(server.make_url("/v1/mm/callback"), data=body, headers=headers) as r:
            assert r.status == 200
        async with http.get(server.make_url("/healthz")) as r:
            assert (r.status, await r.json()) == (200, {"ok": True})
        async with http.get(server.make_url("/readyz")) as r:
            assert r.status == 200
            assert (await r.json())["ready"] is True
        async with http.get(server.make_url("/no/such/route")) as r:
            assert r.status == 404
        async with http.get(server.make_url("/metrics")) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
        server.app[DRAINING].set()
        async with http.get(server.make_url("/readyz")) as r:
            assert (r.status, (await r.json())["reason"]) == (503, "draining")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    sync = {"route": "/v2", "method": "POST"}  # the handset speaks sync v2
    assert value("payg_http_requests_total", status="200", **sync) >= 1
    assert value("payg_http_request_duration_seconds_count", **sync) >= 1
    assert value("payg_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert value("payg_http_request_errors_total", route="unmatched", method="GET", kind="client")
    assert value("payg_sync_batch_operations_sum") >= 3  # customer, sale, payment
    assert value("payg_sync_request_bytes_count") >= 1
    assert value("payg_sync_ingest_lag_seconds_count") >= 3
    assert value("payg_keycodes_issued_total") == 3  # sale, agent payment, mobile money
    assert value("payg_mm_transactions_total", outcome="confirmed") == 1
    for name, _ in samples:
        base = name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
        assert base.endswith(("_total", "_seconds", "_bytes", "_operations", "_created")) or (
            base in ("payg_http_requests_in_flight", "python_info")
        ), name
    await agent.close()
    await server.close()


@pytest.mark.payg_platform(price_per_day=PRICE_PER_DAY, mm_secret=SECRET)
async def test_access_log_is_structured_and_carries_no_secret(
    payg_platform: PaygPlatform, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server_stub")
    ama = payg_platform.agents[0]  # provisioned here, so that its request is logged
    agent = await Agent.provision(tmp_path / "ama.db", payg_platform.url, ama.name, ama.code)
    await agent.register_customer("Esi", "+233200000001")
    await agent.sync()
    body = json.dumps(
        MoneyCallback("M1", str(ama.devices[0]), 100, "+233200000001", "success", 1).to_json()
    ).encode()
    signature = sign(SECRET, body)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            payg_platform.url + "/v1/mm/callback",
            data=body,
            headers={SIGNATURE_HEADER: signature},
        ) as r,
    ):
        assert r.status == 422
    await agent.close()
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records if r.name == "server_stub.access"]
    docs = [json.loads(line) for line in lines]
    routes = {d["route"] for d in docs}
    assert {"/v1/provision", "/v2", "/v1/mm/callback"} <= routes
    sync = next(d for d in docs if d["route"] == "/v2" and d["status"] == 200)
    assert isinstance(sync["handset"], int)
    assert sync["duration_s"] >= 0
    logged = "\n".join(lines)
    for secret in (SECRET.decode(), signature, "+233200000001", "Esi", ama.code):
        assert secret not in logged
    stream = io.StringIO()
    handler = configure(stream)
    try:
        logging.getLogger("server_stub.access").info("request", extra={"fields": {"status": 1}})
        assert json.loads(stream.getvalue())["status"] == 1
    finally:
        logging.getLogger("server_stub").removeHandler(handler)


async def test_graceful_shutdown_finishes_in_flight_syncs_and_loses_nothing(
    tmp_path: Path,
) -> None:
    db = tmp_path / "server.db"
    seed_platform(db)
    app = create_app(db)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    agents = []
    for i in range(3):
        agent = await agent_for_url(url, tmp_path, i)
        for n in range(20):
            await agent.register_customer(f"C{i}-{n}", f"+2332000{i:02d}{n:03d}")
        agents.append(agent)
    gate = threading.Event()
    app[RUNNER].submit(gate.wait, 30)  # hold the store so the syncs are caught mid-request
    syncs = [asyncio.create_task(a.sync(max_exchanges=1)) for a in agents]
    in_flight = app[METRICS].registry
    async with asyncio.timeout(20):  # a gauge has no event to wait on: poll it, bounded
        while in_flight.get_sample_value("payg_http_requests_in_flight") != len(agents):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    shutdown = asyncio.create_task(runner.cleanup())
    async with asyncio.timeout(20):  # shutdown has begun, with the syncs still inside
        await app[DRAINING].wait()
    assert not any(s.done() for s in syncs)
    gate.set()
    reports = await asyncio.gather(*syncs)
    await shutdown
    assert [r.pending for r in reports] == [0, 0, 0]  # every operation acknowledged
    store = Store.open(db)
    try:
        assert store.counts()["ops"] == 60  # and every acknowledged operation is stored
        assert store.counts()["customers"] == 60
    finally:
        store.close()
    for agent in agents:
        await agent.close()


async def agent_for_url(url: str, tmp_path: Path, i: int) -> Agent:
    return await Agent.provision(tmp_path / f"h{i}.db", url, "ama", "code-ama-7f3a9c")


def test_grafana_dashboard_queries_only_metrics_the_server_exposes() -> None:
    dashboard = json.loads((Path(__file__).parents[2] / "grafana/payg-platform.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"payg_[a-z_]+", e)}
    metrics = Metrics()
    metrics.observe_request("/x", "GET", 500, 0.1)  # so the labelled families have samples
    exposed = {
        s.name
        for family in text_string_to_metric_families(metrics.render({}).decode())
        for s in family.samples
    }
    assert used
    assert used <= exposed, used - exposed


async def test_readyz_fails_when_the_critical_reports_miss_their_budget(tmp_path: Path) -> None:
    db = tmp_path / "server.db"
    seed_platform(db)
    platform = Platform(ready_budget_s=0.05, report_threads=1)
    server = await start(db, platform)
    gate = threading.Event()
    server.app[READERS].submit(gate.wait, 30)  # the report thread is busy past the budget
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(server.make_url("/readyz")) as r:
                assert (r.status, (await r.json())["reason"]) == (503, "over budget")
            gate.set()
            async with http.get(server.make_url("/readyz")) as r:
                assert r.status == 200
    finally:
        gate.set()
        await server.close()


@pytest.mark.payg_platform(mm_secret=SECRET)
async def test_a_client_that_hangs_up_mid_body_is_not_a_server_error(
    payg_platform: PaygPlatform,
) -> None:
    url = URL(payg_platform.url)
    for _ in range(3):
        _, writer = await asyncio.open_connection(url.host, url.port)
        writer.write(
            b"POST /v1/sync HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"\x93" * 10
        )
        await writer.drain()
        writer.transport.abort()  # reset, half way through the body
        await asyncio.sleep(0.05)
    async with aiohttp.ClientSession() as http, http.get(url / "metrics") as r:
        text = await r.text()
    server_errors = [
        line
        for line in text.splitlines()
        if line.startswith("payg_http_request_errors_total{") and 'kind="server"' in line
    ]
    assert all(line.endswith(" 0.0") for line in server_errors), server_errors
    assert 'status="500"' not in text
