"""Crash test: the handset process is killed (SIGKILL) at random points of a sync, again and
again, then restarted; the platform must end with every operation applied exactly once, every
keycode issued once, and the handset holding every keycode once."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent_client.agent import Agent
from agent_client.store import OpState
from field_lab.net import free_port
from tests.server_stub.fixtures import PRICE_PER_DAY, seed_platform

KILLS = 30
BIN = Path(sys.executable).parent


def wait_listening(port: int, deadline_s: float = 20.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"server-stub did not listen on {port}")


def unsettled(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        (n,) = conn.execute(
            "SELECT count(*) FROM outbox WHERE state IN ('pending', 'in_flight')"
        ).fetchone()
    return int(n)


def sends(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(sum(attempts), 0) FROM outbox").fetchone()[0])


def wait_in_flight(db: Path, proc: subprocess.Popen[bytes], deadline_s: float = 10.0) -> None:
    """Until this client process has frozen a new batch for sending (or exited, or timed out)."""
    end = time.monotonic() + deadline_s
    with sqlite3.connect(db) as conn:
        before = sends(conn)
        while time.monotonic() < end and proc.poll() is None and sends(conn) == before:
            time.sleep(0.002)


def client(db: Path, *args: str) -> list[str]:
    return [str(BIN / "agent-client"), "--db", str(db), *args]


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_killed_mid_sync_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    server_db, handset_db = tmp_path / "server.db", tmp_path / "handset.db"
    seeded = seed_platform(server_db, agents=("ama",), per_format=3)
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "server-stub"), "--db", str(server_db), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port)
        url = f"http://127.0.0.1:{port}"
        subprocess.run(
            client(handset_db, "provision", url, "--agent", "ama", "--code", "code-ama-7f3a9c"),
            check=True,
            capture_output=True,
        )
        paid = asyncio.run(queue_operations(handset_db, seeded.stock["ama"][:10], seeded.plan))

        rng = random.Random(20261126)
        kills = 0
        while kills < KILLS and unsettled(handset_db):
            proc = subprocess.Popen(
                client(handset_db, "sync", "--batch", "2"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if rng.random() < 0.2:  # sometimes while it starts up
                time.sleep(rng.uniform(0.0, 0.3))
            else:  # mostly once a batch is frozen and on the wire
                wait_in_flight(handset_db, proc)
                time.sleep(rng.uniform(0.0, 0.012))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            kills += 1
        assert kills >= 12
        final = subprocess.run(client(handset_db, "sync"), capture_output=True, timeout=60)
        assert final.returncode == 0, final.stdout
    finally:
        server.terminate()
        server.wait(timeout=10)

    with sqlite3.connect(server_db) as db:
        assert db.execute("SELECT count(*), min(outcome), max(outcome) FROM ops").fetchone() == (
            60,
            0,
            0,
        )
        assert db.execute("SELECT count(*) FROM customers").fetchone() == (10,)
        assert db.execute("SELECT count(*) FROM keycodes").fetchone() == (50,)
        for device, total in paid.items():
            spent, balance = db.execute(
                "SELECT (SELECT sum(amount) FROM keycodes WHERE device = ?), balance"
                " FROM devices WHERE device = ?",
                (device, device),
            ).fetchone()
            assert spent + balance == total
        for device in paid:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT message_id FROM keycodes WHERE device = ? ORDER BY keycode", (device,)
                )
            ]
            assert len(ids) == 5
            assert ids == sorted(set(ids))  # issued in order, none reused
    with sqlite3.connect(handset_db) as db:
        states = dict(db.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
        assert states == {OpState.ACKNOWLEDGED.value: 60}
        (resent,) = db.execute("SELECT count(*) FROM outbox WHERE attempts > 1").fetchone()
        assert resent > 0  # some kills did land between freezing a batch and its answer
        assert db.execute("SELECT count(*), count(DISTINCT n) FROM keycodes").fetchone() == (50, 50)


async def queue_operations(db: Path, devices: list[int], plan: int) -> dict[int, int]:
    """10 customers x (register, sale, 4 payments) = 60 operations, queued offline."""
    agent = await Agent.open(db)
    paid: dict[int, int] = {}
    for i, device in enumerate(devices):
        customer = await agent.register_customer(f"Customer {i}", f"+23324000{i:04d}")
        down = (3 + i) * PRICE_PER_DAY
        await agent.record_sale(customer, device, plan, down)
        paid[device] = down
        for days in (1, 2, 3, 4):
            await agent.record_payment(device, days * PRICE_PER_DAY)
            paid[device] += days * PRICE_PER_DAY
    await agent.close()
    return paid
