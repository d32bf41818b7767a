"""Several workers on one database (`serve --workers N`): handsets syncing through both at
once lose and double nothing, and the forked layout serves, adds up /metrics, and stops as a
whole."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import requests

from agent_client.agent import Agent
from agent_client.transport import Http1Transport
from field_lab.net import free_port
from server_stub.app import Platform
from server_stub.cli import AUDIT_TOKEN_ENV
from server_stub.metrics import Metrics
from server_stub.store import Store

from .fixtures import seed_platform
from .platform import AUDIT_TOKEN, DOWN_PAYMENT, audit_items, start, url_of

HANDSETS = 4  # per agent; two agents
ROUNDS = 3


async def test_two_workers_ingest_concurrently_without_losing_or_doubling(tmp_path: Path) -> None:
    """Two platforms on one file (each its own store thread, memo and write lock, as two
    worker processes have); every handset syncs through a different one each round."""
    db = tmp_path / "s.db"
    seeded = seed_platform(db, per_format=ROUNDS)  # ROUNDS devices per handset
    servers = [
        await start(db, Platform(audit_token=AUDIT_TOKEN, workers=2, worker=w)) for w in (0, 1)
    ]
    urls = [url_of(s) for s in servers]
    agents: list[Agent] = []
    stock: list[list[int]] = []
    try:
        for name in ("ama", "kofi"):
            devices = seeded.stock[name]
            for i in range(HANDSETS):
                url = urls[i % 2]
                path = tmp_path / f"{name}{i}.db"
                agents.append(await Agent.provision(path, url, name, f"code-{name}-7f3a9c"))
                stock.append(devices[i::HANDSETS][:ROUNDS])
        sent: Counter[str] = Counter()
        for r in range(ROUNDS):
            for i, agent in enumerate(agents):
                await agent.transport.close()
                agent.transport = Http1Transport(urls[(i + r) % 2])  # the other worker now
                customer = await agent.register_customer(f"c{i}-{r}", f"+23320{i:03}{r:04}")
                await agent.record_sale(customer, stock[i][r], seeded.plan, DOWN_PAYMENT)
                sent.update(("register_customer", "record_sale"))
                if r:  # a payment for the device sold last round
                    await agent.record_payment(stock[i][r - 1], 200)
                    sent["record_payment"] += 1
            reports = await asyncio.gather(*(a.sync() for a in agents))  # all at once
            assert all(report.pending == 0 for report in reports), reports
        operations = await audit_items(urls[0], "operations")
        keycodes = await audit_items(urls[1], "keycodes")
        for agent, devices in zip(agents, stock, strict=True):  # each handset got its codes
            for device in devices:
                assert await agent.keycodes_for(device)
    finally:
        for agent in agents:
            await agent.close()
        for server in servers:
            await server.close()
    keys = [(op["handset"], op["seq"]) for op in operations]
    assert len(keys) == len(set(keys)) == sum(sent.values())  # none lost, none doubled
    assert Counter(op["kind"] for op in operations) == sent
    assert {op["outcome"] for op in operations} == {"applied"}
    sold_and_paid = sent["record_sale"] + sent["record_payment"]
    assert len(keycodes) == sold_and_paid  # one keycode per sale and per payment
    per_device = Counter((k["device"], k["message_id"]) for k in keycodes)
    assert max(per_device.values()) == 1  # no message id issued twice (a stale memo would)
    store = Store.open(db)
    try:  # the database agrees with the feeds
        assert store.db.execute("SELECT count(*) FROM ops").fetchone()[0] == len(keys)
    finally:
        store.close()


def test_merged_metrics_add_up_every_workers_counts() -> None:
    one, two = Metrics(), Metrics()
    one.observe_request("/v2", "POST", 200, 0.004)
    two.observe_request("/v2", "POST", 200, 0.2)
    two.observe_request("/v2", "POST", 401, 0.001)
    two.sync_ops.observe(3)
    two.auth_failures.labels("token", "refused").inc()
    text = Metrics.merged([one.snapshot(), two.snapshot()]).render({}).decode()
    assert 'payg_http_requests_total{method="POST",route="/v2",status="200"} 2.0' in text
    assert 'payg_http_requests_total{method="POST",route="/v2",status="401"} 1.0' in text
    assert 'payg_http_request_duration_seconds_count{method="POST",route="/v2"} 3.0' in text
    assert (
        'payg_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v2"} 2.0'
        in text
    )
    assert "payg_sync_batch_operations_count 1.0" in text
    assert 'payg_auth_failures_total{kind="token",outcome="refused"} 1.0' in text
    assert "payg_workers_reporting 2.0" in text


def test_serve_with_two_workers_shares_the_port_and_stops_as_a_whole(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    seed_platform(db)
    port = free_port()
    script = Path(sys.executable).parent / "server-stub"  # the installed console script
    command = [str(script), "--db", str(db), "serve", "--port", str(port), "--workers", "2"]
    env = {**os.environ, AUDIT_TOKEN_ENV: AUDIT_TOKEN}
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):  # bounded wait for the listener
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.05)
        answered = 40
        for _ in range(answered - 1):  # a new connection each: the workers take turns
            assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        time.sleep(1.3)  # every worker has published its counts (metrics_share.PUBLISH_S)
        text = requests.get(f"{base}/metrics", timeout=5).text
        assert "payg_workers_reporting 2.0" in text
        assert f'route="/healthz",status="200"}} {answered}.0' in text
        workers = [int(p) for p in _children(proc.pid)]
        assert len(workers) == 2
        os.kill(workers[1], signal.SIGKILL)  # one worker dies: the other is stopped too
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert not any(Path(f"/proc/{w}").exists() for w in workers)
    served = {json.loads(line).get("worker") for line in err.splitlines() if '"route"' in line}
    assert served == {0, 1}  # both workers answered requests


def _children(pid: int) -> list[str]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return f.read().split()
