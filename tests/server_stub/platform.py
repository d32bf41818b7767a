"""A running platform for tests: seeded store, devices sold through a real handset, the
mobile-money callback configured, an SMS gateway simulator wired in, the audit API read the
way the lab's judge reads it."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from agent_client.agent import Agent
from agent_client.protocol.auth import Claim
from agent_client.protocol.keycodes import KeycodeFormat
from agent_client.protocol.ops import Kind, Operation
from server_stub.app import Platform, create_app
from server_stub.callbacks import SIGNATURE_HEADER, MoneyCallback, sign
from server_stub.faults import PlatformFaults
from server_stub.store import Store

from .fixtures import PRICE_PER_DAY, Seeded, seed_platform

SECRET = b"operator-shared-secret-0123456789"
AUDIT_TOKEN = "audit-token-0123456789"
DOWN_PAYMENT = 3 * PRICE_PER_DAY


@dataclass(frozen=True)
class Sold:
    """Devices sold by agent ``ama`` (one per keycode format) and its handset id."""

    seeded: Seeded
    handset: int
    devices: list[int]


def sold_platform(path: Path) -> Sold:
    """Seed, provision a handset for ``ama`` and sell one device of each format, in-process."""
    seeded = seed_platform(path)
    store = Store.open(path)
    try:
        handset = store.provision("ama", "code-ama-7f3a9c", bytes(range(32)), 1_000)
        stock = seeded.stock["ama"]
        per_format = len(stock) // len(KeycodeFormat)
        devices = stock[::per_format]
        ops = [Operation.make(1, Kind.REGISTER_CUSTOMER, 1_790_000_000, "Esi", "+233200000001")]
        ops += [
            Operation.make(2 + i, Kind.RECORD_SALE, 1_790_000_000, 1, d, seeded.plan, DOWN_PAYMENT)
            for i, d in enumerate(devices)
        ]
        reply = store.exchange(Claim(handset, 2_000, b""), ops, 0, 1_790_000_000_000)
        assert not reply.rejected
    finally:
        store.close()
    return Sold(seeded, handset, devices)


def bearer(path: Path, distributor: str = "default") -> dict[str, str]:
    """Headers with a fresh report token of `distributor` (the seeded agents' is default)."""
    store = Store.open(path)
    try:
        return {"Authorization": f"Bearer {store.issue_token(distributor, 0)}"}
    finally:
        store.close()


def copy_db(template: Path, target: Path) -> Path:
    shutil.copyfile(template, target)
    return target


async def start(path: Path, platform: Platform, faults: PlatformFaults | None = None) -> TestServer:
    server = TestServer(create_app(path, platform=platform, faults=faults), host="127.0.0.1")
    await server.start_server()
    return server


async def agent_for(server: TestServer, tmp_path: Path, name: str = "ama") -> Agent:
    url = str(server.make_url(""))
    return await Agent.provision(tmp_path / f"{name}.db", url, name, f"code-{name}-7f3a9c")


def url_of(server: TestServer | str) -> str:
    """The base URL of a test server, or the URL itself (e.g. `payg_platform.url`)."""
    return server if isinstance(server, str) else str(server.make_url("")).rstrip("/")


async def audit_items(
    server: TestServer | str, feed: str, *, limit: int = 500, token: str = AUDIT_TOKEN
) -> list[dict[str, Any]]:
    """Every item of one audit feed, page by page over HTTP."""
    items: list[dict[str, Any]] = []
    params = {"limit": str(limit)}
    url = f"{url_of(server)}/v1/audit/{feed}"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        for _ in range(10_000):
            async with http.get(url, params=params) as response:
                assert response.status == 200, await response.text()
                page = await response.json()
            items += page["items"]
            if page["next_cursor"] is None:
                return items
            params["cursor"] = page["next_cursor"]
    raise AssertionError("audit pages never ended")


async def pay(
    server: TestServer | str, txn: str, account: int, amount: int, status: str = "success"
) -> dict[str, Any]:
    """One operator callback, signed as the operator signs it; returns the platform's answer."""
    callback = MoneyCallback(txn, str(account), amount, "+233200000001", status, 1_790_000_000_000)
    body = json.dumps(callback.to_json()).encode()
    async with aiohttp.ClientSession() as http:
        url = f"{url_of(server)}/v1/mm/callback"
        async with http.post(url, data=body, headers={SIGNATURE_HEADER: sign(SECRET, body)}) as r:
            answer: dict[str, Any] = await r.json()
            return answer
