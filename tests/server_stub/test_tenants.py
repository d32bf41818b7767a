"""Distributors as tenants: a token sees its own distributor's rows and nothing else, whatever
the query (cursors minted for the other tenant included); wrong codes and tokens back off;
chosen codes must be strong; a database of the previous release upgrades keeping its data."""

from __future__ import annotations

import random
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_client.protocol.auth import Claim
from agent_client.protocol.keycodes import KeycodeFormat
from agent_client.protocol.ops import Kind, Operation
from server_stub.app import Platform, create_app
from server_stub.callbacks import MoneyCallback
from server_stub.errors import RequestError, SetupError
from server_stub.ledger.throttle import Backoff
from server_stub.migrations import VERSION
from server_stub.reports import KEYS, REPORTS, Query, Reports, decode_cursor, encode_cursor
from server_stub.scope import TENANT, Scope
from server_stub.store import DeviceRecord, Store

from .fixtures import PRICE_PER_DAY, secret_for, seed_platform
from .platform import sold_platform

NOW_MS = 1_790_100_000_000
DATA = Path(__file__).parent / "data"


def two_tenants(path: Path) -> dict[str, Any]:
    """Default (ama, kofi; ama sold four devices) and 'beta' (bea, who sold two), each with
    mobile-money payments; returns each tenant's token, agents, devices and txns."""
    sold = sold_platform(path)
    store = Store.open(path)
    try:
        default_token = store.issue_token("default", 0)
        beta, beta_token = store.add_distributor("beta", 0)
        plan = store.add_plan("beta-home", PRICE_PER_DAY, beta)
        bea, code = store.add_agent("bea", None, beta)
        rng = random.Random(7)
        records = [
            DeviceRecord(30_000_001 + i, secret_for(rng, KeycodeFormat.NEXUS_FULL))
            for i in range(3)
        ]
        store.add_devices(bea, records)
        handset = store.provision("bea", code, bytes([9]) * 32, 1)
        ops = [Operation.make(1, Kind.REGISTER_CUSTOMER, 1_790_000_000, "Bo", "+233200000009")]
        ops += [
            Operation.make(2 + i, Kind.RECORD_SALE, 1_790_086_400, 1, r.device, plan, 300)
            for i, r in enumerate(records[:2])
        ]
        reply = store.exchange(Claim(handset, 2, b""), ops, 0, 1_790_086_400_000)
        assert not reply.rejected
        txns = {"default": ["A1", "A2"], "beta": ["B1", "B2"]}
        accounts = {"default": sold.devices[:2], "beta": [r.device for r in records[:2]]}
        for tenant in ("default", "beta"):
            for txn, device in zip(txns[tenant], accounts[tenant], strict=True):
                cb = MoneyCallback(txn, str(device), 200, "+233200000001", "success", NOW_MS)
                store.mobile_money(cb, NOW_MS + 1, sms=False)
    finally:
        store.close()
    return {
        "default": {
            "token": default_token,
            "id": 1,
            "agents": {a for a, _ in sold.seeded.agents.values()},
            "devices": {d for ds in sold.seeded.stock.values() for d in ds},
            "txns": txns["default"],
        },
        "beta": {
            "token": beta_token,
            "id": beta,
            "agents": {bea},
            "devices": {r.device for r in records},
            "txns": txns["beta"],
        },
    }


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("tenants") / "server.db"
    return path, two_tenants(path)


def rows_of(page: dict[str, Any]) -> tuple[set[int], set[int]]:
    agents = {item["agent"] for item in page["items"] if "agent" in item}
    devices = {item["device"] for item in page["items"] if "device" in item}
    return agents, devices


def all_cursors(reports: Reports, name: str, distributor: int) -> list[str]:
    """Every cursor a walk of one report with limit 1 mints for `distributor`."""
    cursors, q = [], Query(limit=1)
    for _ in range(100):
        page = getattr(reports, name)(q, NOW_MS, distributor)
        if page["next_cursor"] is None:
            return cursors
        cursors.append(page["next_cursor"])
        q = Query(limit=1, after=decode_cursor(name, page["next_cursor"], KEYS[name]))
    raise AssertionError("a walk did not end")


def no_leak(path: Path, who: dict[str, Any], data: st.DataObject, scope: Scope) -> None:
    """The isolation property for one drawn query: the page a tenant gets names none of the
    other tenant's agents or devices."""
    me, other = data.draw(st.permutations(["default", "beta"]))
    name = data.draw(st.sampled_from(REPORTS))
    reports = Reports.open(path, scope)
    try:
        theirs = all_cursors(reports, name, who[other]["id"])
        mine = all_cursors(reports, name, who[me]["id"])
        agents = sorted(who[me]["agents"] | who[other]["agents"])
        cursor = data.draw(
            st.none()
            | st.sampled_from(theirs or [None])
            | st.sampled_from(mine or [None])
            | st.tuples(st.text(max_size=12), st.integers(0, 2**40)).map(
                lambda k: encode_cursor(name, k if KEYS[name] == (str, int) else k[:0])
            )
        )
        after = None
        if cursor is not None:
            try:
                after = decode_cursor(name, cursor, KEYS[name])
            except RequestError:
                after = None
        q = Query(
            limit=data.draw(st.integers(1, 20)),
            after=after,
            day_from=data.draw(st.sampled_from(["0000-00-00", "2026-09-21", "2026-09-23"])),
            agent=data.draw(st.none() | st.sampled_from(agents)),
        )
        page = getattr(reports, name)(q, NOW_MS, who[me]["id"])
    finally:
        reports.close()
    seen_agents, seen_devices = rows_of(page)
    assert not seen_agents & who[other]["agents"]
    assert not seen_devices & who[other]["devices"]


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_no_query_with_a_token_reaches_the_other_tenants_rows(
    tenants: tuple[Path, dict[str, Any]], data: st.DataObject
) -> None:
    no_leak(*tenants, data, TENANT)


@dataclass(frozen=True)
class Unscoped:
    """The injected fault: a report query that forgot its tenant (every distributor's rows)."""

    where: str = "1 = 1"


def test_the_isolation_property_catches_a_query_that_forgot_its_tenant(
    tenants: tuple[Path, dict[str, Any]],
) -> None:
    @settings(max_examples=150, deadline=None, database=None, report_multiple_bugs=False)
    @given(data=st.data())
    def leaky(data: st.DataObject) -> None:
        no_leak(*tenants, data, Unscoped())

    with pytest.raises(AssertionError):
        leaky()


async def test_http_scoping_401_and_404(tenants: tuple[Path, dict[str, Any]]) -> None:
    path, who = tenants
    server = TestServer(create_app(path, platform=Platform()), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as http:
            for me, other in (("default", "beta"), ("beta", "default")):
                auth = {"Authorization": f"Bearer {who[me]['token']}"}
                for name in REPORTS:
                    async with http.get(f"/v1/reports/{name}?limit=500", headers=auth) as r:
                        assert r.status == 200
                        page = await r.json()
                    agents, devices = rows_of(page)
                    assert agents <= who[me]["agents"]
                    assert devices <= who[me]["devices"]
                    if name in ("sales", "devices"):
                        assert page["items"], name  # each tenant has rows of its own
                for txn in who[me]["txns"]:
                    async with http.get(f"/v1/payments/{txn}", headers=auth) as r:
                        assert r.status == 200
                for txn in who[other]["txns"]:
                    async with http.get(f"/v1/payments/{txn}", headers=auth) as r:
                        assert r.status == 404
                        assert txn not in await r.text()
            for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
                async with http.get("/v1/reports/sales", headers=headers) as r:
                    assert r.status == 401
                    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    finally:
        await server.close()


async def test_a_revoked_token_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    seed_platform(path)
    store = Store.open(path)
    try:
        _, token = store.add_distributor("gamma", 0)
        assert store.revoke_token(token, 1)
        assert not store.revoke_token(token, 2)
    finally:
        store.close()
    reports = Reports.open(path)
    try:
        assert reports.tenant(token) is None
    finally:
        reports.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_thousand_wrong_codes_are_throttled_and_the_right_one_still_provisions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.db"
    seeded = seed_platform(path)
    _, code = seeded.agents["ama"]
    clock = Clock()
    app = create_app(path, clock=clock, platform=Platform(backoff=Backoff(free=5, cap_s=60)))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    statuses: dict[int, int] = {}
    try:
        async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as http:
            retry = 0
            for i in range(1000):
                doc = {"agent": "ama", "code": f"guess-{i}", "public_key": "11" * 32}
                async with http.post("/v1/provision", json=doc) as r:
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                    if r.status == 429:
                        retry = int(r.headers["Retry-After"])
                        assert (await r.json())["retry_after_s"] == retry
                clock.now += 0.001  # guessing as fast as the server answers
            assert statuses[429] >= 990
            assert set(statuses) == {403, 429}
            right = {"agent": "ama", "code": code, "public_key": "22" * 32}
            async with http.post("/v1/provision", json=right) as r:
                assert r.status == 429  # still backing off: not even checked
            clock.now += retry
            async with http.post("/v1/provision", json=right) as r:
                assert r.status == 201
            async with http.post("/v1/provision", json=right) as r:
                assert r.status == 201  # the retry after a lost answer: same handset
            async with http.get("/metrics") as r:
                text = await r.text()
            assert 'payg_auth_failures_total{kind="provision",outcome="refused"}' in text
            refused = [
                line for line in text.splitlines() if line.startswith("payg_auth_failures_total")
            ]
            counts = {line.split("{")[1].split("}")[0]: float(line.split()[-1]) for line in refused}
            assert counts['kind="provision",outcome="refused"'] == statuses[403]
            assert counts['kind="provision",outcome="throttled"'] == statuses[429] + 1
    finally:
        await server.close()
    with sqlite3.connect(path) as db:
        trail = db.execute("SELECT kind, subject, outcome FROM auth_events").fetchall()
    assert len(trail) == statuses[403]
    assert set(trail) == {("provision", "ama", "refused")}
    assert not any(code in r.getMessage() or "guess-" in r.getMessage() for r in caplog.records)


async def test_wrong_tokens_back_off_per_source_and_no_token_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.db"
    seed_platform(path)
    store = Store.open(path)
    try:
        token = store.issue_token("default", 0)
    finally:
        store.close()
    clock = Clock()
    app = create_app(path, clock=clock, platform=Platform(backoff=Backoff(free=3)))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as http:
            got = []
            for i in range(10):
                bad = {"Authorization": f"Bearer payg_wrong{i}"}
                async with http.get("/v1/reports/sales", headers=bad) as r:
                    got.append(r.status)
            assert got[:3] == [401] * 3
            assert got[4:] == [429] * 6
            clock.now += 3600
            good = {"Authorization": f"Bearer {token}"}
            async with http.get("/v1/reports/sales", headers=good) as r:
                assert r.status == 200
    finally:
        await server.close()
    text = caplog.text + "".join(str(getattr(r, "fields", "")) for r in caplog.records)
    assert token not in text
    assert "payg_wrong" not in text


def test_weak_chosen_codes_are_refused_with_the_reason(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db")
    try:
        for weak, why in (
            ("secret", "characters; use at least 12"),
            ("secretsecret", "kind(s) of characters"),
            ("aaaaaaaaaaa1-", "repeats characters"),
        ):
            with pytest.raises(SetupError, match=re.escape(why)):
                store.add_agent(f"a-{weak}", weak)
        _agent, code = store.add_agent("strong", "Ama-sells-42!")
        assert code == "Ama-sells-42!"
        assert store.add_agent("random")[1]  # no code given: a random, strong one
    finally:
        store.close()


def test_a_database_of_the_previous_release_upgrades_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript((DATA / "release-0.sql").read_text())
        before = {
            t: db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
            for t in ("agents", "devices", "keycodes", "sales", "daily", "ops", "downlink")
        }
        assert db.execute("PRAGMA user_version").fetchone() == (0,)
    for _ in range(2):  # opening again finds nothing left to do
        Store.open(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (VERSION,)
        for table, rows in before.items():
            after = db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            width = len(rows[0])
            assert [r[:width] for r in after] == rows, table
        assert db.execute("SELECT DISTINCT distributor FROM agents").fetchall() == [(1,)]
    store = Store.open(path)
    try:  # the old agents work on, for the default distributor, whose token reads them
        token = store.issue_token("default", 0)
        assert store.provision("ama", "code-ama", bytes([5]) * 32, 5) > 0
    finally:
        store.close()
    reports = Reports.open(path)
    try:
        assert reports.tenant(token) == 1
        page = reports.sales(Query(), NOW_MS, 1)
        assert sum(item["sales"] for item in page["items"]) == len(before["sales"])
    finally:
        reports.close()
