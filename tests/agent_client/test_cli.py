"""The agent-client CLI end to end against a server running on its own thread."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from agent_client.cli import main
from server_stub.app import create_app
from tests.server_stub.fixtures import PRICE_PER_DAY, Seeded, seed_platform


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Seeded]]:
    seeded = seed_platform(tmp_path / "server.db")
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_app(tmp_path / "server.db"), access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", seeded
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


def run(
    capsys: pytest.CaptureFixture[str], db: Path, *argv: str
) -> tuple[int, list[dict[str, object]]]:
    code = main(["--db", str(db), *argv])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_provision_queue_sync_and_show(
    served: tuple[str, Seeded], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, seeded = served
    db = tmp_path / "h.db"
    assert run(capsys, db, "provision", url, "--agent", "ama", "--code", "code-ama-7f3a9c")[0] == 0
    device = seeded.stock["ama"][0]
    _, [customer] = run(capsys, db, "customer", "Esi", "+233200000001")
    code, _ = run(capsys, db, "sync")  # learn the stock first
    assert code == 0
    sale = ["sale", "--customer", str(customer["customer"]), "--device", str(device)]
    assert (
        run(capsys, db, *sale, "--plan", str(seeded.plan), "--down", str(3 * PRICE_PER_DAY))[0] == 0
    )
    assert run(capsys, db, "payment", "--account", str(device), "--amount", "200")[0] == 0
    _, queue = run(capsys, db, "queue")
    assert [row["state"] for row in queue] == ["acknowledged", "pending", "pending"]
    code, [report] = run(capsys, db, "sync", "--batch", "1")
    assert (code, report["exchanges"], report["acked"], report["keycodes"]) == (0, 2, 2, 2)
    _, keycodes = run(capsys, db, "keycodes", str(device))
    assert [k["credit_s"] for k in keycodes] == [3 * 86400, 2 * 86400]
    _, [status] = run(capsys, db, "status")
    assert status["queue"] == {"pending": 0, "in_flight": 0, "acknowledged": 3, "rejected": 0}
    assert device not in status["stock"]  # type: ignore[operator]


def test_errors_are_json_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, [error] = run(capsys, tmp_path / "none.db", "status")
    assert (code, error["error"]) == (2, "NotProvisioned")


def test_unreachable_server_leaves_the_queue_and_exits_1(
    served: tuple[str, Seeded], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, seeded = served
    db = tmp_path / "h.db"
    run(capsys, db, "provision", url, "--agent", "ama", "--code", "code-ama-7f3a9c")
    run(capsys, db, "payment", "--account", str(seeded.stock["ama"][0]), "--amount", "100")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = 'http://127.0.0.1:9' WHERE key = 'server_url'")
    code, [report] = run(capsys, db, "sync")
    assert (code, report["pending"], report["failures"]) == (1, 1, 1)


def test_provision_takes_the_agent_id_add_agent_printed(
    served: tuple[str, Seeded], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, seeded = served
    agent_id = seeded.agents["kofi"][0]
    code, [done] = run(
        capsys,
        tmp_path / "h.db",
        "provision",
        url,
        "--agent",
        str(agent_id),
        "--code",
        "code-kofi-7f3a9c",
    )
    assert code == 0
    assert done["handset"]


@pytest.mark.parametrize("agent", ["ama", "1", "nobody", "99"])
def test_refused_provisioning_says_what_it_expected_and_leaves_no_file(
    served: tuple[str, Seeded], tmp_path: Path, capsys: pytest.CaptureFixture[str], agent: str
) -> None:
    url, _ = served
    db = tmp_path / "h.db"
    code, [error] = run(capsys, db, "provision", url, "--agent", agent, "--code", "wrong")
    assert (code, error["error"]) == (2, "ServerRefused")
    assert "name or the id" in str(error["detail"])
    assert not db.exists()
