"""The set-up pool: many handsets' exchanges share a few kept-alive connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from field_lab.world.pool import SetupPool


@pytest.fixture
async def platform() -> AsyncIterator[str]:
    """/who answers (a little later) with its connection's id; /close asks to close it."""

    async def who(request: web.Request) -> web.Response:
        await asyncio.sleep(0.01)
        return web.Response(body=f"{id(request.transport)}|{await request.text()}".encode())

    async def close(request: web.Request) -> web.Response:
        return web.Response(body=b"bye", headers={"Connection": "close"})

    app = web.Application()
    app.add_routes([web.post("/who", who), web.post("/close", close)])
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url(""))


async def test_many_exchanges_share_the_pools_connections(platform: str) -> None:
    pool = SetupPool(platform + "/", 3)
    handsets = [pool.transport() for _ in range(20)]
    assert {h.base_url for h in handsets} == {platform.rstrip("/")}
    replies = await asyncio.gather(
        *(h.post("/who", str(i).encode(), {}) for i, h in enumerate(handsets))
    )
    bodies = [r.body.split(b"|") for r in replies]
    assert [b[1] for b in bodies] == [str(i).encode() for i in range(20)]  # each its own answer
    assert len({b[0] for b in bodies}) == 3  # on three connections, all of them used
    await pool.close()


async def test_a_handset_letting_go_leaves_the_pool_open(platform: str) -> None:
    pool = SetupPool(platform, 1)
    first, second = pool.transport(), pool.transport()
    one = await first.post("/who", b"", {})
    await first.close()
    two = await second.post("/who", b"", {})
    assert one.body.split(b"|")[0] == two.body.split(b"|")[0]  # the same kept connection
    await pool.close()


async def test_a_connection_the_platform_closed_is_opened_again(platform: str) -> None:
    pool = SetupPool(platform, 1)
    handset = pool.transport()
    assert (await handset.post("/close", b"", {})).body == b"bye"
    assert (await handset.post("/who", b"x", {})).body.endswith(b"|x")
    await pool.close()


def test_a_pool_needs_a_connection() -> None:
    with pytest.raises(ValueError, match="at least one connection"):
        SetupPool("http://127.0.0.1:1", 0)
