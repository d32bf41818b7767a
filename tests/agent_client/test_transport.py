"""The transport seam: MockTransport's contract, and the one 5xx/429 rule both transports share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent_client.errors import TransientError
from agent_client.transport import (
    HttpTransport,
    MockTransport,
    Reply,
    Request,
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

    transports: list[Transport] = [HttpTransport(echo_status), MockTransport(handler)]
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
