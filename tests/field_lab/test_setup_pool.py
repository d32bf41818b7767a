"""The set-up pool: many handsets' exchanges share a few kept-alive connections."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent_client.adapters import PROVISION_PATH
from field_lab.testing.platform import PaygPlatform
from field_lab.world.pool import SetupPool
from server_stub.provisioning import PROVISION_MANY_PATH


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


class Provisioner:
    """A platform's provisioning: each body's `n` is its handset; `n` = 0 is a wrong code. With
    `many`, the lot endpoint too (all or nothing, as the platform's; naming the refused item if
    `names_item`)."""

    def __init__(self, many: bool, *, names_item: bool = True) -> None:
        self.lots: list[int] = []
        self.alone = 0
        self.many = many
        self.names_item = names_item

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([web.post(PROVISION_PATH, self.one)])
        if self.many:
            app.add_routes([web.post(PROVISION_MANY_PATH, self.lot)])
        return app

    async def one(self, request: web.Request) -> web.Response:
        self.alone += 1
        n = (await request.json())["n"]
        if n == 0:
            return web.json_response({"error": "bad_provisioning_code"}, status=403)
        return web.json_response({"handset": n, "server_ms": 5}, status=201)

    async def lot(self, request: web.Request) -> web.Response:
        items = (await request.json())["handsets"]
        self.lots.append(len(items))
        wrong = [i for i, doc in enumerate(items) if doc["n"] == 0]
        if wrong and self.names_item:
            detail = f"handsets[{wrong[0]}]: wrong code"
            answer = {"error": "bad_provisioning_code", "detail": detail, "item": wrong[0]}
            return web.json_response(answer, status=403)
        if wrong:
            return web.json_response({"error": "bad_provisioning_code"}, status=403)
        return web.json_response(
            {"handsets": [{"handset": i["n"], "server_ms": 5} for i in items]}, status=201
        )


async def provision(pool: SetupPool, numbers: list[int]) -> list[tuple[int, bytes]]:
    replies = await asyncio.gather(
        *(pool.transport().post(PROVISION_PATH, json.dumps({"n": n}).encode(), {}) for n in numbers)
    )
    return [(r.status, r.body) for r in replies]


@pytest.mark.parametrize("many", [True, False])
async def test_provisionings_waiting_together_go_in_one_request(many: bool) -> None:
    platform = Provisioner(many)
    async with TestServer(platform.app(), host="127.0.0.1") as server:
        pool = SetupPool(str(server.make_url("")), 4)
        try:
            first = await provision(pool, list(range(1, 11)))
            second = await provision(pool, [11, 12])
        finally:
            await pool.close()
    assert {status for status, _ in first + second} == {201}
    assert [json.loads(b)["handset"] for _, b in first + second] == list(range(1, 13))
    if many:  # each handset got its item of one answer as the answer to its own request
        assert (platform.lots, platform.alone, pool.coalesced) == ([10, 2], 0, 12)
    else:  # no such endpoint: asked once, then each on its own
        assert (platform.alone, pool.coalesced) == (12, 0)


async def test_a_lot_refused_for_one_item_answers_it_and_goes_again_without_it() -> None:
    platform = Provisioner(many=True)
    async with TestServer(platform.app(), host="127.0.0.1") as server:
        pool = SetupPool(str(server.make_url("")), 2)
        try:
            replies = await provision(pool, [1, 0, 3, 0, 5])
        finally:
            await pool.close()
    assert [status for status, _ in replies] == [201, 403, 201, 403, 201]
    # the wrong codes were each sent once, and heard as a request alone would hear them
    assert (platform.lots, platform.alone, pool.coalesced) == ([5, 4, 3], 0, 3)
    assert json.loads(replies[1][1]) == {"error": "bad_provisioning_code", "detail": "wrong code"}


async def test_a_lot_refused_without_naming_an_item_goes_one_by_one() -> None:
    platform = Provisioner(many=True, names_item=False)
    async with TestServer(platform.app(), host="127.0.0.1") as server:
        pool = SetupPool(str(server.make_url("")), 2)
        try:
            replies = await provision(pool, [1, 0, 3])
        finally:
            await pool.close()
    assert [status for status, _ in replies] == [201, 403, 201]
    assert (platform.lots, platform.alone, pool.coalesced) == ([3], 3, 0)


@pytest.mark.payg_platform(agents=2, devices=4)
async def test_a_wrong_code_in_a_lot_counts_once_against_the_guessing_throttle(
    payg_platform: PaygPlatform,
) -> None:
    ama, kofi = payg_platform.agents
    bodies = [
        json.dumps({"agent": agent, "code": code, "public_key": (bytes([n]) * 32).hex()}).encode()
        for n, (agent, code) in enumerate(
            [(ama.name, ama.code), (kofi.name, "not-kofis-code"), (ama.name, ama.code)], 1
        )
    ]
    pool = SetupPool(payg_platform.url, 2)
    try:
        replies = await asyncio.gather(
            *(pool.transport().post(PROVISION_PATH, body, {}) for body in bodies)
        )
    finally:
        await pool.close()
    assert [r.status for r in replies] == [201, 403, 201]
    assert json.loads(replies[1].body)["error"] == "bad_provisioning_code"
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{payg_platform.url}/metrics") as response,
    ):
        metrics = await response.text()
    refused = [
        line
        for line in metrics.splitlines()
        if line.startswith("payg_auth_failures_total{")
        and 'kind="provision"' in line
        and 'outcome="refused"' in line
    ]
    assert [float(line.rsplit(" ", 1)[1]) for line in refused] == [1.0]
