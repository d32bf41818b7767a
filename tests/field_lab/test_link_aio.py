"""LinkOpener and LinkConnector: agent_client's HTTP/1.1 client and an aiohttp ClientSession
over one handset's emulated link; and the fleet scheduler carrying 2,000 handsets' links in one
process, on a grid or not."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import socket
import ssl
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from agent_client.errors import TransientError
from agent_client.transport import Http1Transport
from field_lab.link import (
    BUILTIN_PROFILES,
    DOWN,
    UP,
    Arrived,
    Established,
    Event,
    Outage,
    floor_seconds,
)
from field_lab.link.aio import LinkConnector, LinkOpener
from field_lab.link.errors import UsageError
from field_lab.link.scheduler import LinkPort, LinkScheduler
from field_lab.world.handset import MeasuredTransport

FAST = BUILTIN_PROFILES["perfect"].replace(
    name="fast", rtt_s=0.02, down_bps=4_000_000, up_bps=2_000_000
)


async def _sized(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(body=bytes([body[0] if body else 0]) * int(request.query["n"]))


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/sized", _sized)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def test_the_splice_point_is_still_there() -> None:
    """aiohttp's private hook we override must keep its shape."""
    params = inspect.signature(aiohttp.TCPConnector._wrap_create_connection).parameters
    assert {"addr_infos", "req", "timeout", "client_error"} <= set(params)


async def test_requests_travel_over_the_link_and_reuse_the_connection(server: str) -> None:
    scheduler = LinkScheduler()
    port = scheduler.add(FAST.replace(wakeup_s=0.01), seed=2)
    async with aiohttp.ClientSession(connector=LinkConnector(port)) as session:
        for size in (10, 50_000, 300):
            async with session.post(f"{server}/sized?n={size}", data=b"k" * 700) as response:
                assert response.status == 200
                assert await response.read() == b"k" * size
    link = port.link
    assert link.up.stats.payload_bytes > 3 * 700
    assert link.down.stats.payload_bytes > 50_310
    assert link._next_id == 2  # one connection, kept alive for all three requests
    assert link.radio.wakeups == 1
    scheduler.close()


async def test_a_long_outage_fails_the_request(server: str) -> None:
    scheduler = LinkScheduler()
    profile = FAST.replace(reset_after_s=0.2)
    port = scheduler.add(profile, outages=[Outage(0.0, 100.0)])
    async with aiohttp.ClientSession(connector=LinkConnector(port)) as session:
        with pytest.raises(aiohttp.ClientConnectorError):
            await session.post(f"{server}/sized?n=1", data=b"x")
    scheduler.close()


async def test_a_reset_mid_response_is_a_client_error(server: str) -> None:
    scheduler = LinkScheduler()
    profile = FAST.replace(down_bps=200_000, reset_after_s=0.1)
    port = scheduler.add(profile, outages=[Outage(0.3, 100.0)])
    async with aiohttp.ClientSession(connector=LinkConnector(port)) as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.post(f"{server}/sized?n=200000", data=b"x") as response:
                await response.read()
    assert port.link.resets == 1
    scheduler.close()


async def test_one_scheduler_carries_2000_handsets() -> None:
    """Each handset has its own link state (own queue, radio and outages) and no port of its
    own; one timer drives them all, and every exchange completes."""
    scheduler = LinkScheduler()
    profile = FAST.replace(rtt_s=0.05, down_bps=40_000, up_bps=20_000)
    handsets = 2000
    done = asyncio.get_running_loop().create_future()
    finished = 0

    def sink_for(port: LinkPort) -> Callable[[Event], None]:
        got = {UP: 0, DOWN: 0}

        def sink(event: Event) -> None:
            nonlocal finished
            if isinstance(event, Established):
                port.send(event.conn, UP, b"r" * 60)
            elif isinstance(event, Arrived):
                got[event.direction] += len(event.data)
                if event.direction == UP and got[UP] == 60:
                    port.send(event.conn, DOWN, b"a" * 40)
                elif event.direction == DOWN and got[DOWN] == 40:
                    finished += 1
                    if finished == handsets:
                        done.set_result(None)

        return sink

    ports = [scheduler.add(profile, seed=i) for i in range(handsets)]
    for port in ports:
        port.open(sink_for(port))
    await asyncio.wait_for(done, timeout=60)
    assert finished == handsets
    assert len({id(p.link.up) for p in ports}) == handsets
    scheduler.close()


async def test_a_faulty_sink_is_reported_and_does_not_stall_the_others() -> None:
    loop = asyncio.get_running_loop()
    reported: list[BaseException] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context["exception"]))
    scheduler = LinkScheduler()
    established: list[int] = []

    def faulty(event: Event) -> None:
        raise RuntimeError("bug in a handset")

    def fine(event: Event) -> None:
        if isinstance(event, Established):
            established.append(event.conn.id)

    bad, good = scheduler.add(FAST), scheduler.add(FAST)
    bad.open(faulty)
    good.open(fine)
    for _ in range(100):
        if established and reported:
            break
        await asyncio.sleep(0.01)
    loop.set_exception_handler(None)
    scheduler.close()
    assert established == [1]
    assert isinstance(reported[0], RuntimeError)


@pytest.mark.parametrize(("keep_s", "opened"), [(30.0, 1), (0.1, 2)])
async def test_a_handset_keeps_its_connection_between_polls_as_long_as_told(
    server: str, keep_s: float, opened: int
) -> None:
    """Kept warm, the next poll reuses the connection (and its floor has no handshake);
    past `keep_s` idle, it opens a new one."""
    scheduler = LinkScheduler()
    profile = FAST.replace(wakeup_s=0.01)
    port = scheduler.add(profile, seed=3)
    transport = MeasuredTransport(server, port, profile, keep_s)
    for _ in range(2):
        reply = await transport.post("/sized?n=5", b"p", {})
        assert reply.status == 200
        await asyncio.sleep(0.4)
    await transport.close()
    scheduler.close()
    assert port.opened == opened
    second = transport.exchanges[1]
    warm = floor_seconds(profile, second.bytes_up, second.bytes_down, warm=True)
    assert (second.floor > warm) is (opened == 2)


async def test_http1_requests_travel_over_the_link_and_reuse_the_connection(server: str) -> None:
    """agent_client's own HTTP/1.1 client over a LinkOpener: the bytes cross the link model,
    one connection carries every request."""
    scheduler = LinkScheduler()
    port = scheduler.add(FAST.replace(wakeup_s=0.01), seed=2)
    transport = Http1Transport(server, opener=LinkOpener(port))
    for size in (10, 50_000, 300):
        reply = await transport.post(f"/sized?n={size}", b"k" * 700, {})
        assert (reply.status, reply.body) == (200, b"k" * size)
    link = port.link
    assert link.up.stats.payload_bytes > 3 * 700
    assert link.down.stats.payload_bytes > 50_310
    assert port.opened == 1
    await transport.close()
    scheduler.close()


async def test_http1_a_long_outage_is_a_transient_failure(server: str) -> None:
    scheduler = LinkScheduler()
    port = scheduler.add(FAST.replace(reset_after_s=0.2), outages=[Outage(0.0, 100.0)])
    transport = Http1Transport(server, opener=LinkOpener(port))
    with pytest.raises(TransientError, match="LinkReset"):
        await transport.post("/sized?n=1", b"x", {})
    await transport.close()
    scheduler.close()


async def test_a_refused_platform_leaves_no_connection_on_the_link() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    scheduler = LinkScheduler()
    port = scheduler.add(FAST)
    transport = Http1Transport(f"http://127.0.0.1:{closed}", opener=LinkOpener(port))
    with pytest.raises(TransientError, match="ConnectionRefusedError"):
        await transport.post("/sized?n=1", b"x", {})
    assert port.link.connections == ()
    with pytest.raises(UsageError, match="TLS is not carried"):
        await LinkOpener(port)(asyncio.Protocol, "127.0.0.1", closed, ssl.create_default_context())
    scheduler.close()


@pytest.mark.parametrize("quantum_s", [0.0, 0.02])
async def test_a_quantum_serves_every_link_due_within_it_with_one_wake_up(
    quantum_s: float,
) -> None:
    """Forty handsets' SYNs, a millisecond apart: on a 20 ms grid a handful of wake-ups serve
    them all, each at most one step late."""
    loop = asyncio.get_running_loop()
    scheduler = LinkScheduler(quantum_s=quantum_s)
    seen: list[tuple[float, float]] = []  # (when the model says, when the shell saw it)
    profile = FAST.replace(rtt_s=0.05, wakeup_s=0.0, jitter_s=0.0)
    ports = []
    stalls = [0.0]  # the loop's own lateness (a busy machine stalls it), measured alongside

    async def ticker() -> None:
        while True:
            before = loop.time()
            await asyncio.sleep(0.001)
            stalls.append(loop.time() - before - 0.001)

    ticking = asyncio.create_task(ticker())
    began = loop.time()
    for i in range(40):
        port = scheduler.add(profile, seed=i)
        ports.append(port)

        def sink(event: Event) -> None:
            if isinstance(event, Established):
                assert event.conn.stats.established_at is not None
                seen.append((event.conn.stats.established_at, loop.time()))

        port.open(sink)
        await asyncio.sleep(0.001)
    span = loop.time() - began
    for _ in range(200):
        if len(seen) == 40:
            break
        await asyncio.sleep(0.01)
    scheduler.close()
    ticking.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await ticking
    assert len(seen) == 40
    late = [shell - model for model, shell in seen]
    assert max(late) < quantum_s + 0.015 + max(stalls)  # a step, plus the loop's own lateness
    assert min(late) >= -1e-9
    if quantum_s:  # a wake-up for the SYNs' arrivals and one for the SYN-ACKs' per step
        assert scheduler.wakeups <= 2 * (span / quantum_s + 2)


async def test_a_quantum_must_be_a_finite_step() -> None:
    for bad in (-0.1, math.inf, math.nan):
        with pytest.raises(ValueError, match="quantum_s"):
            LinkScheduler(quantum_s=bad)
