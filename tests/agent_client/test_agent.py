"""The Agent shell against a real in-process server: clock correction, 200s that are not ours,
bounded backoff, the background trigger, and identity errors."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent_client.agent import Agent, NewSale
from agent_client.errors import InvalidOperation, NotProvisioned, ServerRefused, TransientError
from agent_client.protocol import envelope
from agent_client.protocol.auth import HandsetKey
from agent_client.protocol.sync import SyncConfig
from agent_client.store import OpState
from agent_client.transport import HttpTransport
from field_lab.testing.platform import PaygPlatform
from server_stub.store import Store

PRICE_PER_DAY = 100

FAST = SyncConfig(backoff_base_s=0.01, backoff_cap_s=0.02)


pytestmark = pytest.mark.payg_platform(agents=2, devices=6, price_per_day=PRICE_PER_DAY)


@dataclass(frozen=True)
class Seeded:
    """The first agent of the plugin's platform, as these tests need it."""

    name: str
    code: str
    stock: list[int]
    db: Path
    plan: int
    others: list[int]
    """Another agent's stock."""


@pytest.fixture
def platform(payg_platform: PaygPlatform) -> tuple[str, Seeded]:
    ama, kofi = payg_platform.agents[:2]
    seeded = Seeded(
        ama.name,
        ama.code,
        list(ama.devices),
        payg_platform.db,
        payg_platform.plan,
        list(kofi.devices),
    )
    return payg_platform.url, seeded


async def serve(handler: web.Handler) -> TestServer:
    app = web.Application()
    app.router.add_post(envelope.SYNC_PATH, handler)  # where the handset syncs (v2)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_a_phone_clock_two_hours_fast_is_corrected_not_locked_out(
    platform: tuple[str, Seeded], tmp_path: Path
) -> None:
    url, seeded = platform
    agent = await Agent.provision(tmp_path / "h.db", url, seeded.name, seeded.code)
    await agent.close()
    skew = 2 * 3600.0
    agent = await Agent.open(tmp_path / "h.db", clock=lambda: time.time() + skew)
    await agent.record_payment(seeded.stock[0], 100)
    report = await agent.sync()
    assert report.failures == 0
    assert report.pending == 0
    assert abs((await agent.status()).clock_offset_ms + skew * 1000) < 5_000
    await agent.close()
    # the phone's clock is fixed again; the stored offset is now two hours wrong the other way
    agent = await Agent.open(tmp_path / "h.db")
    await agent.record_payment(seeded.stock[0], 100)
    report = await agent.sync()
    assert (report.failures, report.pending) == (0, 0)
    assert abs((await agent.status()).clock_offset_ms) < 5_000
    await agent.close()


async def test_a_clock_set_back_after_a_lost_stamp_recovers(
    platform: tuple[str, Seeded], tmp_path: Path
) -> None:
    """The stored stamp is lost and the phone clock went back a minute: the server's
    replay guard refuses once, names its last accepted stamp, and the retry goes through."""
    url, seeded = platform
    agent = await Agent.provision(tmp_path / "h.db", url, seeded.name, seeded.code)
    await agent.sync()
    await agent.store.put(last_ms=0, offset_ms=0)
    await agent.close()
    agent = await Agent.open(tmp_path / "h.db", clock=lambda: time.time() - 60)
    await agent.record_payment(seeded.stock[0], 100)
    report = await agent.sync()
    assert (report.failures, report.pending) == (0, 0)
    await agent.close()


async def test_provisioning_with_a_wrong_clock_learns_the_offset(
    platform: tuple[str, Seeded], tmp_path: Path
) -> None:
    url, seeded = platform
    agent = await Agent.provision(
        tmp_path / "h.db", url, seeded.name, seeded.code, clock=lambda: time.time() - 86400
    )
    assert abs(agent.link.stamper.offset_ms - 86_400_000) < 5_000
    assert (await agent.sync()).failures == 0
    await agent.close()


async def test_a_200_that_is_not_a_frame_is_not_success(
    platform: tuple[str, Seeded], tmp_path: Path
) -> None:
    url, seeded = platform
    agent = await Agent.provision(tmp_path / "h.db", url, seeded.name, seeded.code, config=FAST)
    await agent.close()

    async def captive_portal(request: web.Request) -> web.Response:
        return web.Response(text="<html>buy airtime</html>", content_type="text/html")

    portal = await serve(captive_portal)
    # a backoff far longer than the test: one attempt however slow the machine is
    patient = SyncConfig(backoff_base_s=60, backoff_cap_s=60)
    agent = await Agent.open(tmp_path / "h.db", server_url=str(portal.make_url("")), config=patient)
    customer = await agent.register_customer("Esi", "+233200000001")
    report = await agent.sync()
    assert report.failures == 1
    assert report.pending == 1
    assert (await agent.store.operation(customer)).state is OpState.IN_FLIGHT  # type: ignore[union-attr]
    await agent.close()
    await portal.close()
    agent = await Agent.open(tmp_path / "h.db", server_url=url)
    assert (await agent.sync()).acked == [customer]
    await agent.close()


async def test_failures_back_off_and_stay_bounded(
    tmp_path: Path, platform: tuple[str, Seeded]
) -> None:
    url, seeded = platform
    agent = await Agent.provision(tmp_path / "h.db", url, seeded.name, seeded.code, config=FAST)
    await agent.close()
    # backoffs long enough (0.1 s doubling: 0.8 s after the 4th failure) that a loaded machine
    # cannot reach retry_at between the sync's return and the checks below
    slow = SyncConfig(backoff_base_s=0.1, backoff_cap_s=10.0)
    agent = await Agent.open(tmp_path / "h.db", server_url="http://127.0.0.1:9", config=slow)
    await agent.register_customer("Esi", "+233200000001")
    report = await agent.sync(max_exchanges=4, max_wait_s=5.0)
    assert (report.exchanges, report.failures, report.pending) == (4, 4, 1)
    assert agent.core.batch_size == slow.initial_batch // 2**4  # halved per failure
    assert agent.core.retry_at > time.time()
    quick = await agent.sync(max_wait_s=0.0)  # still backing off: no exchange at all
    assert quick.exchanges == 0
    await agent.close()


async def test_background_sync_on_enqueue_and_on_reconnect(
    platform: tuple[str, Seeded], tmp_path: Path
) -> None:
    url, seeded = platform
    agent = await Agent.provision(tmp_path / "h.db", url, seeded.name, seeded.code, config=FAST)
    agent.start_background()

    async def settled(seq: int) -> bool:
        for _ in range(200):
            row = await agent.store.operation(seq)
            if row is not None and row.state is OpState.ACKNOWLEDGED:
                return True
            await asyncio.sleep(0.01)
        return False

    assert await settled(await agent.register_customer("Esi", "+233200000001"))
    agent.connectivity_changed(False)
    offline = await agent.register_customer("Yaw", "+233200000002")
    await asyncio.sleep(0.1)
    assert (await agent.store.operation(offline)).state is OpState.PENDING  # type: ignore[union-attr]
    agent.connectivity_changed(True)
    assert await settled(offline)
    await agent.close()


async def test_provisioning_after_a_lost_answer_keeps_one_handset(
    platform: tuple[str, Seeded], tmp_path: Path
) -> None:
    url, seeded = platform
    with pytest.raises(TransientError):  # the answer never makes it back...
        await Agent.provision(tmp_path / "h.db", "http://127.0.0.1:9", seeded.name, seeded.code)
    with sqlite3.connect(tmp_path / "h.db") as db:
        (seed,) = db.execute("SELECT value FROM meta WHERE key = 'key_seed'").fetchone()
    store = Store.open(seeded.db)  # ...although the request had arrived
    registered = store.provision(seeded.name, seeded.code, HandsetKey.from_seed(seed).public, 1)
    agent = await Agent.provision(tmp_path / "h.db", url, seeded.name, seeded.code)
    assert agent.handset == registered
    assert store.counts()["handsets"] == 1
    store.close()
    assert (await agent.sync()).failures == 0
    await agent.close()


async def test_entries_not_stored_are_fetched_again(
    platform: tuple[str, Seeded], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seeded = platform
    agent = await Agent.provision(tmp_path / "h.db", url, seeded.name, seeded.code)

    async def disk_full(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as patch:
        patch.setattr(agent.store, "apply", disk_full)
        with pytest.raises(sqlite3.OperationalError):
            await agent.sync()
    assert agent.core.cursor == 0
    await agent.sync()
    assert (await agent.status()).stock == sorted(seeded.stock)
    await agent.close()


async def test_provisioning_keeps_the_callers_transport(
    platform: tuple[str, Seeded], tmp_path: Path
) -> None:
    """The lab routes a handset over an emulated link by handing in its Transport."""
    url, seeded = platform
    transport = HttpTransport(url)
    agent = await Agent.provision(
        tmp_path / "h.db", url, seeded.name, seeded.code, transport=transport
    )
    assert agent.transport is transport
    assert (await agent.sync()).failures == 0
    await agent.close()


async def test_identity_and_refusals(platform: tuple[str, Seeded], tmp_path: Path) -> None:
    url, seeded = platform
    with pytest.raises(NotProvisioned):
        await Agent.open(tmp_path / "none.db")
    with pytest.raises(ServerRefused) as info:
        await Agent.provision(tmp_path / "bad.db", url, seeded.name, "wrong")
    assert (info.value.status, info.value.code) == (403, "bad_provisioning_code")
    agent = await Agent.provision(tmp_path / "h.db", url, seeded.name, seeded.code)
    await agent.close()
    with pytest.raises(InvalidOperation, match="already provisioned"):
        await Agent.provision(tmp_path / "h.db", url, seeded.name, seeded.code)
    agent = await Agent.open(tmp_path / "h.db")
    await agent.sync()
    with pytest.raises(InvalidOperation, match="not a customer"):
        await agent.record_sale(99, seeded.stock[0], seeded.plan, PRICE_PER_DAY)
    customer = await agent.register_customer("Esi", "+233200000001")
    with pytest.raises(InvalidOperation, match="stock"):
        await agent.record_sale(customer, seeded.others[0], seeded.plan, PRICE_PER_DAY)
    with pytest.raises(InvalidOperation, match="amount"):
        await agent.record_payment(seeded.stock[0], 0)
    await agent.close()


async def test_a_sync_cancelled_mid_exchange_leaves_the_handset_able_to_sync(
    platform: tuple[str, Seeded], tmp_path: Path
) -> None:
    """A caller that gives up on a stuck exchange (cancels it) must not wedge the sync core."""
    url, seeded = platform
    agent = await Agent.provision(tmp_path / "h.db", url, seeded.name, seeded.code, config=FAST)
    await agent.record_payment(seeded.stock[0], 100)
    hang = asyncio.Event()

    async def stuck(request: web.Request) -> web.Response:
        await hang.wait()
        return web.Response(status=503)

    server = await serve(stuck)
    real = agent.transport
    agent.transport = HttpTransport(str(server.make_url("")))
    syncing = asyncio.create_task(agent.sync())
    await asyncio.sleep(0.2)
    syncing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await syncing
    hang.set()
    await agent.transport.close()
    await server.close()
    agent.transport = real
    report = await agent.sync(max_wait_s=1.0)
    assert (report.pending, report.failures) == (0, 0)
    await agent.close()


async def test_a_poll_that_changes_nothing_writes_nothing(
    platform: tuple[str, Seeded], tmp_path: Path
) -> None:
    """No commit for an empty poll (a fleet polls far more often than it sells); the next
    exchange that changes something stores the stamp, and a reopened handset syncs on."""
    url, seeded = platform
    agent = await Agent.provision(tmp_path / "h.db", url, seeded.name, seeded.code)
    await agent.sync()  # stock and catalog come down: written
    watcher = sqlite3.connect(tmp_path / "h.db")
    try:

        def version() -> int:
            return int(watcher.execute("PRAGMA data_version").fetchone()[0])

        before = version()
        report = await agent.sync()
        assert (report.exchanges, report.failures) == (1, 0)
        assert version() == before  # nothing committed by another connection
        await agent.record_payment(seeded.stock[0], 100)
        report = await agent.sync()
        assert (report.failures, report.pending) == (0, 0)
        assert version() != before  # the watcher sees the handset's commits
        stamped = agent.link.stamper.last_ms
        await agent.sync()
        await agent.close()
        assert (
            int(watcher.execute("SELECT value FROM meta WHERE key = 'last_ms'").fetchone()[0])
            <= stamped
        )
    finally:
        watcher.close()
    agent = await Agent.open(tmp_path / "h.db")
    await agent.record_payment(seeded.stock[0], 100)
    report = await agent.sync()
    assert (report.failures, report.pending) == (0, 0)
    await agent.close()


async def test_sales_to_new_customers_in_one_go_reach_the_platform(
    platform: tuple[str, Seeded], tmp_path: Path
) -> None:
    url, seeded = platform
    agent = await Agent.provision(tmp_path / "h.db", url, seeded.name, seeded.code)
    await agent.sync()  # the stock, against which the lot is checked
    down = 3 * PRICE_PER_DAY
    lot = [NewSale(f"C{d}", f"+23320000{d:04d}", d, seeded.plan, down) for d in seeded.stock[:2]]
    stranger = NewSale("Yaw", "+233200009999", seeded.others[0], seeded.plan, down)
    with pytest.raises(InvalidOperation, match="not in this agent's stock"):
        await agent.sell_to_new_customers([*lot, stranger])
    with pytest.raises(InvalidOperation, match="twice"):
        await agent.sell_to_new_customers([lot[0], lot[0]])
    assert await agent.store.sendable(10) == []  # a refused lot leaves nothing queued
    made = await agent.sell_to_new_customers(lot)
    report = await agent.sync()
    assert (report.failures, report.pending, report.rejected) == (0, 0, [])
    assert sorted(report.acked) == sorted(seq for pair in made for seq in pair)
    assert {code.device for code in report.keycodes} == set(seeded.stock[:2])
    await agent.close()
