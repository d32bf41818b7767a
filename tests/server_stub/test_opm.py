"""POST /dd against the openpaygo package: requests built with its MetricsRequestHandler
(simple and condensed, ra) are accepted, tampered or replayed ones refused with a coded 4xx
and nothing stored; answers carry the device's tokens in count order and verify with the key;
and meter_sim's reporter gets a mobile-money payment's token through the answer."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpaygo import AuthMethod, MetricsRequestHandler
from openpaygo.metrics_shared import OpenPAYGOMetricsShared

from agent_client.protocol.keycodes import KeycodeFormat
from meter_sim import MemoryStorage, Meter, Outcome
from meter_sim.metrics import DEFAULT_FORMAT, MetricsReporter, ReporterConfig
from server_stub.app import Platform
from server_stub.callbacks import MoneyCallback
from server_stub.keycodes import DeviceSecret
from server_stub.opm.wire import expand, parse_format, parse_request
from server_stub.store import Store

from .platform import bearer, sold_platform, start

FORMAT = {
    "data_order": ["token_count", "energy_wh"],
    "historical_data_order": ["energy_wh", "seconds_on"],
    "historical_data_interval": 3600,
}


@pytest.fixture
def platform_db(tmp_path: Path) -> tuple[Path, int, DeviceSecret]:
    db = tmp_path / "p.db"
    sold = sold_platform(db)
    store = Store.open(db)
    try:
        secrets = store.device_secrets()
    finally:
        store.close()
    device = next(d for d in sold.devices if secrets[d].format is KeycodeFormat.OPENPAYGO)
    return db, device, secrets[device]


def opm_request(
    device: int,
    key: bytes,
    rc: int,
    *,
    condensed: bool,
    token_count: int | None = None,
    fmt: dict[str, Any] | None = None,
) -> str:
    handler = MetricsRequestHandler(
        str(device),
        data_format=fmt or FORMAT,
        secret_key=key.hex(),
        auth_method=AuthMethod.RECURSIVE_DATA_AUTH,
    )
    handler.set_request_count(rc)
    handler.set_timestamp(1_790_000_000 + rc)
    data: dict[str, Any] = {"energy_wh": 12.5}
    if token_count is not None:
        data["token_count"] = token_count
    handler.set_data(data)
    handler.set_historical_data([{"energy_wh": 1.5, "seconds_on": 3600}, {"energy_wh": 0.25}])
    payload = (
        handler.get_condensed_request_payload()
        if condensed
        else handler.get_simple_request_payload()
    )
    return str(payload)


@contextlib.asynccontextmanager
async def serving(db: Path) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    server = await start(db, Platform())
    try:
        async with aiohttp.ClientSession(headers=bearer(db)) as session:
            yield str(server.make_url("")).rstrip("/"), session
    finally:
        await server.close()


async def post(session: aiohttp.ClientSession, url: str, body: str | bytes) -> tuple[int, Any]:
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
        return r.status, await r.json()


async def usage(session: aiohttp.ClientSession, base: str) -> list[dict[str, Any]]:
    async with session.get(f"{base}/v1/reports/usage") as r:
        assert r.status == 200
        return list((await r.json())["items"])


def answer_ok(answer: dict[str, Any], device: int, key: bytes, body: str) -> bool:
    req = json.loads(body)
    simple = OpenPAYGOMetricsShared.convert_dict_keys_to_simple(req)
    long_answer = {
        k: v
        for k, v in OpenPAYGOMetricsShared.convert_dict_keys_to_simple(answer).items()
        if k != "auth"
    }
    expected = OpenPAYGOMetricsShared.generate_response_signature_from_data(
        long_answer,
        key.hex(),
        str(device),
        timestamp=simple.get("timestamp"),
        request_count=simple.get("request_count"),
    )
    return bool(answer["a"] == expected)


async def test_reference_requests_are_accepted_and_bad_ones_refused(
    platform_db: tuple[Path, int, DeviceSecret],
) -> None:
    db, device, secret = platform_db
    async with serving(db) as (base, session):
        simple = opm_request(device, secret.key, 1, condensed=False, token_count=1)
        status, answer = await post(session, f"{base}/device_data", simple)
        assert status == 201, answer
        assert answer_ok(answer, device, secret.key, simple)
        assert len(answer["tkl"]) == 1  # the sale's token: count above the device's 1

        condensed = opm_request(device, secret.key, 2, condensed=True, token_count=1)
        status, answer = await post(session, f"{base}/dd", condensed)
        assert status == 201, answer
        assert answer_ok(answer, device, secret.key, condensed)

        before = await usage(session, base)
        doc = json.loads(condensed)
        tampered = json.dumps({**doc, "rc": 3, "d": [1, 99.5]})
        replayed_body = opm_request(device, secret.key, 2, condensed=True)
        refusals = [
            (condensed, 409, "replayed_request"),  # the same bytes again
            (replayed_body, 409, "replayed_request"),  # signed, count not above the last
            (tampered, 403, "bad_signature"),
            (json.dumps({k: v for k, v in doc.items() if k != "a"}), 401, "missing_auth"),
            (opm_request(999_999, secret.key, 9, condensed=True), 404, "unknown_device"),
            (b"{", 400, "malformed_json"),
            (opm_request(device, bytes(16), 9, condensed=True), 403, "bad_signature"),
        ]
        for body, want, code in refusals:
            status, answer = await post(session, f"{base}/dd", body)
            assert (status, answer["error"]) == (want, code), body
        after = await usage(session, base)
        assert after == before  # nothing stored by any refusal
        (row,) = after
        assert row["device"] == device
        assert row["requests"] == 2
        assert row["rows"] == 4  # two rows each, stamped from each request's own timestamp
        assert row["energy_wh"] == 12.5
        assert row["bytes_in"] == len(simple) + len(condensed)


async def test_data_formats_register_once_and_condensed_requests_use_them(
    platform_db: tuple[Path, int, DeviceSecret],
) -> None:
    db, device, secret = platform_db
    async with serving(db) as (base, session):
        status, first = await post(session, f"{base}/data_format", json.dumps(FORMAT))
        status2, second = await post(session, f"{base}/data_format", json.dumps(FORMAT))
        assert (status, status2) == (201, 201)
        assert first == second
        body = opm_request(device, secret.key, 1, condensed=True, fmt={**FORMAT, "id": first["id"]})
        assert '"df":' in body
        status, answer = await post(session, f"{base}/dd", body)
        assert status == 201, answer
        unknown = opm_request(device, secret.key, 2, condensed=True, fmt={**FORMAT, "id": 77})
        status, answer = await post(session, f"{base}/dd", unknown)
        assert (status, answer["error"]) == (422, "unknown_data_format")
        status, answer = await post(session, f"{base}/data_format", b'{"data_order": [1]}')
        assert (status, answer["error"]) == (400, "bad_data_format")


async def test_the_meter_gets_a_mobile_money_token_through_its_answer_once(
    platform_db: tuple[Path, int, DeviceSecret],
) -> None:
    db, device, secret = platform_db
    store = Store.open(db)
    sale_codes = store.db.execute(
        "SELECT text FROM keycodes WHERE device = ?", (device,)
    ).fetchall()
    store.close()
    meter = Meter.openpaygo(secret.key, secret.starting_code, now=0.0)
    async with serving(db) as (base, session):
        config = ReporterConfig(str(device), secret.key, base, data_format=DEFAULT_FORMAT)
        rep = MetricsReporter(meter, config, storage=MemoryStorage(), now=0.0)
        now = 3600.0
        request = rep.request(now)
        status, answer = await post(session, request.url, request.body)
        done = rep.answer(request, status, json.dumps(answer).encode(), now)
        assert done.acknowledged
        assert [o for _, o in done.tokens] == [Outcome.APPLIED] * len(sale_codes)
        # a payment by mobile money: its token comes in the next answer, once
        pay = Store.open(db)
        cb = MoneyCallback("T1", str(device), 3 * 100, "+233200000001", "success", 1)
        pay.mobile_money(cb, 2)
        pay.close()
        granted = []
        for _ in range(3):
            now += 3600
            request = rep.request(now)
            status, answer = await post(session, request.url, request.body)
            done = rep.answer(request, status, json.dumps(answer).encode(), now)
            assert done.acknowledged, done.reason
            granted.append([o for _, o in done.tokens])
        assert granted[0] == [Outcome.APPLIED]
        assert granted[1:] == [[], []]
        rows = await usage(session, base)
        assert rows[0]["token_count"] == meter.snapshot(now).token.count  # type: ignore[union-attr]
        assert rows[0]["tokens_sent"] == len(sale_codes) + 1


@settings(max_examples=40, deadline=None)
@given(
    data=st.fixed_dictionaries(
        {},
        optional={
            "token_count": st.integers(0, 10**6),
            "energy_wh": st.floats(0, 1e6, allow_nan=False),
            "hours_of_use": st.floats(0, 1e5, allow_nan=False),
        },
    ),
    rows=st.lists(
        st.fixed_dictionaries(
            {}, optional={"energy_wh": st.floats(0, 1e3), "seconds_on": st.integers(0, 3600)}
        ),
        max_size=6,
    ),
)
def test_condensed_requests_expand_to_what_was_meant(
    data: dict[str, Any], rows: list[dict[str, Any]]
) -> None:
    """The codec: what openpaygo condenses, the platform expands back, rows stamped by the
    data format's interval."""
    handler = MetricsRequestHandler(
        "5", data_format=FORMAT | {"data_order": DEFAULT_FORMAT.data_order}
    )
    handler.set_timestamp(1_000)
    handler.set_data(dict(data))
    handler.set_historical_data([dict(r) for r in rows])
    body = handler.get_condensed_request_payload().encode()
    doc = json.loads(body)
    req = parse_request(json.dumps({**doc, "a": "ra0"}).encode())  # unsigned: expand only
    fmt_doc = doc["dfo"]

    got_data, got_rows = expand(req, parse_format(fmt_doc), 0)
    assert got_data == {k: v for k, v in data.items() if v is not None}
    assert [{k: v for k, v in r.items() if k != "timestamp"} for r in got_rows] == rows
    assert [r["timestamp"] for r in got_rows] == [1_000 + 3600 * i for i in range(len(rows))]
