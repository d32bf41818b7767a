"""The transport seam: MockTransport's contract, the one 5xx/429 rule every transport shares,
and Http1Transport against real servers (keep-alive, framings, failures, timeouts)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent_client.errors import TransientError
from agent_client.transport import (
    Http1Transport,
    HttpTransport,
    MockTransport,
    Reply,
    Request,
    Timeouts,
    Transport,
    client_session,
    raise_for_transient,
)

STATUSES = [200, 201, 204, 400, 401, 404, 409, 422, 428, 429, 500, 502, 503, 504, 599]


def transient(status: int) -> bool:
    return status >= 500 or status == 429


@pytest.fixture
async def echo_status() -> AsyncIterator[str]:
    """A real server answering each POST /status/N with status N."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), body=b"x")

    app = web.Application()
    app.router.add_post("/status/{code}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url(""))
    await server.close()


@pytest.mark.parametrize("status", STATUSES)
async def test_both_transports_apply_the_same_status_rule(status: int, echo_status: str) -> None:
    def handler(request: Request) -> Reply:
        return Reply(int(request.path.rsplit("/", 1)[1]), b"x")

    transports: list[Transport] = [
        HttpTransport(echo_status),
        Http1Transport(echo_status),
        MockTransport(handler),
    ]
    for transport in transports:
        if transient(status):
            with pytest.raises(TransientError, match=f"server answered {status}"):
                await transport.post(f"/status/{status}", b"", {})
        else:
            assert (await transport.post(f"/status/{status}", b"", {})).status == status
        await transport.close()


async def test_transports_on_a_shared_session_leave_it_to_its_owner() -> None:
    """Many handsets over one pool: each transport's close keeps the shared session open (its
    owner closes it), and the pool's kept-alive connection serves every transport."""
    peers: list[object] = []

    async def handler(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(status=201, body=b"x")

    app = web.Application()
    app.router.add_post("/p", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    session = client_session(aiohttp.TCPConnector(limit=2))
    try:
        transports = [HttpTransport(str(server.make_url("")), session=session) for _ in range(5)]
        for transport in transports:
            assert (await transport.post("/p", b"", {})).status == 201
            await transport.close()
            assert not session.closed
        assert (await transports[0].post("/p", b"", {})).status == 201  # usable after close
        assert len(peers) == 6
        assert len(set(peers)) == 1  # one connection, kept alive, served all of them
    finally:
        await session.close()
        await server.close()


@pytest.mark.parametrize("status", STATUSES)
def test_raise_for_transient(status: int) -> None:
    reply = Reply(status, b"")
    if transient(status):
        with pytest.raises(TransientError):
            raise_for_transient(reply)
    else:
        assert raise_for_transient(reply) is reply


async def test_sync_and_async_handlers_see_the_request() -> None:
    seen: list[Request] = []

    def sync_handler(request: Request) -> Reply:
        seen.append(request)
        return Reply(200, b"sync")

    async def async_handler(request: Request) -> Reply:
        seen.append(request)
        return Reply(201, b"async")

    headers = {"X-Handset": "7"}
    sync = MockTransport(sync_handler, base_url="http://example.test/")
    assert sync.base_url == "http://example.test"
    assert await sync.post("/v1/sync", b"body", headers) == Reply(200, b"sync")
    assert await MockTransport(async_handler).post("/v1/x", b"", {}) == Reply(201, b"async")
    assert seen[0] == Request("POST", "/v1/sync", {"X-Handset": "7"}, b"body")
    assert seen[1].path == "/v1/x"
    with pytest.raises(TypeError):
        seen[0].headers["X-Handset"] = "8"  # type: ignore[index]
    headers["X-Handset"] = "9"
    assert seen[0].headers["X-Handset"] == "7"  # a copy: the caller's dict may change later


@pytest.mark.parametrize(
    "failure",
    [TransientError("dead link"), ConnectionResetError("reset"), TimeoutError("read timed out")],
)
async def test_a_handler_simulates_a_dead_link(failure: Exception) -> None:
    def handler(request: Request) -> Reply:
        raise failure

    with pytest.raises(TransientError) as caught:
        await MockTransport(handler).post("/v1/sync", b"", {})
    assert caught.value is failure or caught.value.__cause__ is failure


async def test_a_bug_in_the_handler_is_not_a_link_failure() -> None:
    def handler(request: Request) -> Reply:
        raise KeyError("typo")

    with pytest.raises(KeyError):
        await MockTransport(handler).post("/v1/sync", b"", {})


async def test_a_handler_must_answer_with_a_reply() -> None:
    async def handler(request: Request) -> Reply:
        return (200, b"")  # type: ignore[return-value]

    with pytest.raises(TypeError, match="returned tuple for POST /v1/sync; it must return a Reply"):
        await MockTransport(handler).post("/v1/sync", b"", {})


def test_bad_arguments_are_refused_when_made() -> None:
    with pytest.raises(TypeError, match="handler must be callable"):
        MockTransport("http://example.test")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="base_url must be a str"):
        MockTransport(lambda r: Reply(200, b""), base_url=None)  # type: ignore[arg-type]


async def test_a_closed_mock_still_answers_like_a_reopened_connection() -> None:
    transport = MockTransport(lambda r: Reply(200, b"ok"))
    await transport.close()
    assert (await transport.post("/", b"", {})).body == b"ok"


@pytest.fixture
async def platform() -> AsyncIterator[str]:
    """A real server: /echo answers with what it got, /who with its connection and the request's
    header names, /chunked in pieces, /slow late, /close with Connection: close."""

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    async def who(request: web.Request) -> web.Response:
        names = ",".join(sorted(k.lower() for k in request.headers))
        return web.Response(body=f"{id(request.transport)}|{names}".encode())

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i in range(5):
            await response.write(bytes([65 + i]) * (i * 300 + 1))
        await response.write_eof()
        return response

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(body=b"late")

    async def close(request: web.Request) -> web.Response:
        return web.Response(body=b"bye", headers={"Connection": "close"})

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_post("/who", who)
    app.router.add_post("/chunked", chunked)
    app.router.add_post("/slow", slow)
    app.router.add_post("/close", close)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url(""))
    await server.close()


async def test_http1_keeps_one_connection_and_sends_only_what_it_is_given(platform: str) -> None:
    transport = Http1Transport(platform + "/")
    assert transport.base_url == platform.rstrip("/")
    replies = [await transport.post("/who", b"\x00body", {"X-Handset": "7"}) for _ in range(3)]
    assert {r.status for r in replies} == {200}
    conns = {r.body.split(b"|")[0] for r in replies}
    assert len(conns) == 1  # one kept-alive connection for all three
    # Host, Content-Length and the caller's: no User-Agent, Accept or Content-Type
    assert replies[0].body.split(b"|")[1] == b"content-length,host,x-handset"
    assert (await transport.post("/echo", b"\x00\x01body", {})).body == b"\x00\x01body"
    await transport.close()
    again = await transport.post("/who", b"", {})  # closed: the next post opens a new one
    assert again.body.split(b"|")[0] not in conns
    await transport.close()


async def test_http1_a_chunked_answer_reads_whole(platform: str) -> None:
    transport = Http1Transport(platform)
    reply = await transport.post("/chunked", b"", {})
    assert reply.body == b"".join(bytes([65 + i]) * (i * 300 + 1) for i in range(5))
    assert (await transport.post("/echo", b"after", {})).body == b"after"
    await transport.close()


async def test_http1_a_server_that_closes_gets_a_new_connection_next(platform: str) -> None:
    transport = Http1Transport(platform)
    assert (await transport.post("/close", b"", {})).body == b"bye"
    first = transport._conn
    assert first is not None
    assert first.closed
    assert (await transport.post("/echo", b"z", {})).body == b"z"
    assert transport._conn is not first
    await transport.close()


async def test_http1_an_idle_connection_closes_after_keep_alive(platform: str) -> None:
    transport = Http1Transport(platform, keep_alive_s=0.05)
    await transport.post("/echo", b"", {})
    first = transport._conn
    await asyncio.sleep(0.2)
    assert first is not None
    assert first.closed
    await transport.post("/echo", b"", {})
    assert transport._conn is not first
    await transport.close()


async def test_http1_a_timeout_is_transient_and_the_next_exchange_works(platform: str) -> None:
    transport = Http1Transport(platform, timeouts=Timeouts(connect_s=5, read_s=0.2, total_s=10))
    with pytest.raises(TransientError, match="TimeoutError"):
        await transport.post("/slow", b"", {})
    assert (await transport.post("/echo", b"ok", {})).body == b"ok"
    await transport.close()


async def test_http1_a_refused_connection_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once it is closed
    transport = Http1Transport(f"http://127.0.0.1:{port}")
    with pytest.raises(TransientError, match="ConnectionRefusedError"):
        await transport.post("/echo", b"", {})
    await transport.close()


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", "mid-response"),
        (b"SMTP ready\r\n\r\n", "not an HTTP/1.x status line"),
        (b"", "before answering"),
    ],
)
async def test_http1_a_garbled_or_cut_answer_is_transient(answer: bytes, match: str) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = Http1Transport(f"http://127.0.0.1:{port}")
    with pytest.raises(TransientError, match=match):
        await transport.post("/x", b"", {})
    await transport.close()
    server.close()
    await server.wait_closed()


async def test_http1_a_cancelled_exchange_drops_its_connection(platform: str) -> None:
    transport = Http1Transport(platform)
    task = asyncio.create_task(transport.post("/slow", b"", {}))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    conn = transport._conn
    assert conn is not None
    assert conn.closed
    assert (await transport.post("/echo", b"again", {})).body == b"again"
    await transport.close()


def test_http1_refuses_a_url_it_cannot_reach() -> None:
    with pytest.raises(ValueError, match="http:// or https:// URL"):
        Http1Transport("ftp://example.test")
    with pytest.raises(ValueError, match="http:// or https:// URL"):
        Http1Transport("127.0.0.1:8080")


async def test_http1_a_bad_header_is_the_callers_error_not_a_link_failure(platform: str) -> None:
    transport = Http1Transport(platform)
    with pytest.raises(ValueError, match="line break"):
        await transport.post("/echo", b"", {"X-A": "1\r\nX-B: 2"})
    await transport.close()


async def test_http1_idle_connections_close_on_one_timer_and_use_keeps_them(
    platform: str,
) -> None:
    """Twenty handsets' idle connections close after keep-alive; one used again meanwhile
    stays open until it has been idle that long (the reaper looks again, later)."""
    idle = [Http1Transport(platform, keep_alive_s=0.1) for _ in range(20)]
    busy = Http1Transport(platform, keep_alive_s=0.3)
    for transport in [*idle, busy]:
        await transport.post("/echo", b"", {})
    await asyncio.sleep(0.2)
    await busy.post("/echo", b"", {})  # used at 0.2 s: kept until about 0.5 s
    await asyncio.sleep(0.2)
    assert all(t._conn is not None and t._conn.closed for t in idle)
    assert busy._conn is not None
    assert not busy._conn.closed
    await asyncio.sleep(0.4)
    assert busy._conn.closed
    for transport in [*idle, busy]:
        await transport.close()


async def test_http1_connect_opens_ahead_and_the_next_exchange_uses_it(platform: str) -> None:
    transport = Http1Transport(platform, keep_alive_s=0.2)
    assert await transport.connect()
    opened = transport._conn
    assert opened is not None
    assert not opened.closed
    assert not await transport.connect()  # one is open: nothing more
    first = await transport.post("/who", b"", {})
    assert transport._conn is opened  # the exchange used it
    await asyncio.sleep(0.4)  # idle past keep-alive: closed, as one an exchange left
    assert opened.closed
    assert await transport.connect()
    again = await transport.post("/who", b"", {})
    assert again.body.split(b"|")[0] != first.body.split(b"|")[0]
    await transport.close()


async def test_http1_a_connect_racing_an_exchange_leaves_one_connection_open(
    platform: str,
) -> None:
    """An exchange that opens its own connection while `connect` opens one: whichever
    finishes second, one of the two is closed, never left holding a socket."""
    opened: list[asyncio.Protocol] = []

    async def recording(
        factory: Callable[[], asyncio.Protocol], host: str, port: int, tls: object
    ) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
        made = await asyncio.get_running_loop().create_connection(factory, host, port)
        opened.append(made[1])
        return made

    transport = Http1Transport(platform, opener=recording)
    opening = asyncio.create_task(transport.connect())
    reply = await transport.post("/who", b"", {})
    await opening
    assert reply.status == 200
    assert len(opened) == 2
    assert transport._conn in opened
    assert [c.closed for c in opened if c is not transport._conn] == [True]  # type: ignore[attr-defined]
    assert not transport._conn.closed
    await transport.close()


async def test_http1_connect_to_nothing_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    transport = Http1Transport(f"http://127.0.0.1:{port}")
    with pytest.raises(TransientError, match="ConnectionRefusedError"):
        await transport.connect()
    assert transport._conn is None
    await transport.close()
