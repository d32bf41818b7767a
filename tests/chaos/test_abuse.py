"""Abuse: fuzzed input never crashes a decoder or earns a 5xx; forged, replayed and
impersonated requests are refused; one agent cannot see another's keycodes; secrets never
reach logs or error bodies; brute-force keycode entry meets the meter's rate limit.

Signed garbage sync frames are fuzzed end to end in tests/server_stub/test_bad_input.py;
the rest of the decoders are fuzzed here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_client.agent import Agent
from agent_client.errors import InvalidOperation
from agent_client.protocol.auth import HandsetKey
from agent_client.protocol.frames import Keycode, UplinkFrame, encode_uplink
from field_lab.chaos.abuse import guessing
from field_lab.chaos.world import AUDIT_TOKEN, MM_SECRET, PRICE
from field_lab.testing.platform import PaygPlatform
from meter_sim.errors import MeterError
from meter_sim.meter import Meter
from meter_sim.outcomes import Outcome
from meter_sim.trace.errors import TraceFormatError
from meter_sim.trace.format import loads
from server_stub.callbacks import SIGNATURE_HEADER, sign
from server_stub.reports import REPORTS
from server_stub.store import Store

pytestmark = pytest.mark.payg_platform(
    agents=2, devices=5, price_per_day=PRICE, seed=7, mm_secret=MM_SECRET, audit_token=AUDIT_TOKEN
)
FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
CALLBACK_KEYS = ("txn", "account", "amount", "msisdn", "status", "paid_ms")


@dataclass
class Platform:
    url: str
    db: Path
    http: aiohttp.ClientSession
    agents: dict[str, Agent]
    stock: dict[str, list[int]]
    codes: dict[str, str]


@pytest.fixture
async def platform(
    payg_platform: PaygPlatform, payg_agent: Agent, tmp_path: Path
) -> AsyncIterator[Platform]:
    """Two agents, one handset each: ama (devices 20000001..3) and kofi (his own two)."""
    ama, kofi = payg_platform.agents
    kofi_handset = await Agent.provision(
        tmp_path / "kofi.db", payg_platform.url, kofi.name, kofi.code
    )
    try:
        async with aiohttp.ClientSession() as http:
            agents = {"ama": payg_agent, "kofi": kofi_handset}
            devices = {"ama": list(ama.devices), "kofi": list(kofi.devices)}
            codes = {"ama": ama.code, "kofi": kofi.code}
            yield Platform(payg_platform.url, payg_platform.db, http, agents, devices, codes)
    finally:
        await kofi_handset.close()


async def post(p: Platform, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    async with p.http.post(p.url + path, data=body, headers=headers) as r:
        return r.status, (await r.read()).decode(errors="replace")


def callback(txn: str, account: int, amount: int) -> bytes:
    doc = {"txn": txn, "account": str(account), "amount": amount, "msisdn": "+233240000001"}
    return json.dumps({**doc, "status": "success", "paid_ms": int(time.time() * 1000)}).encode()


# -- fuzzing --------------------------------------------------------------------------------


@FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=300),
        JSON.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(dict.fromkeys(CALLBACK_KEYS, JSON)).map(
            lambda d: json.dumps(d).encode()
        ),
    )
)
async def test_signed_callback_garbage_is_never_a_5xx(platform: Platform, body: bytes) -> None:
    headers = {SIGNATURE_HEADER: sign(MM_SECRET, body), "Content-Type": "application/json"}
    status, text = await post(platform, "/v1/mm/callback", body, headers)
    assert status < 500, text


@FUZZ
@given(
    name=st.sampled_from(REPORTS) | st.text(max_size=12),
    params=st.dictionaries(
        st.sampled_from(["limit", "cursor", "day", "from", "to", "agent", "x"]) | st.text(),
        st.text(max_size=30),
        max_size=4,
    ),
)
async def test_report_query_garbage_is_never_a_5xx(
    platform: Platform, name: str, params: dict[str, str]
) -> None:
    url = platform.url + "/v1/reports/" + name.replace("/", "%2F").replace("?", "%3F")
    try:
        async with platform.http.get(url, params=params) as r:
            assert r.status < 500, await r.text()
    except ValueError:  # the client itself refuses to send some URLs (e.g. control chars)
        pass


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=40) | st.text("0123456789*#12345 ", max_size=40))
def test_keypad_input_never_crashes_a_meter(text: str) -> None:
    for meter in (
        Meter.nexus(b"k" * 16, "full"),
        Meter.nexus(b"k" * 16, "small"),
        Meter.openpaygo(b"k" * 16, 123456789),
    ):
        result = meter.enter_keycode(text, 10.0)
        assert result.outcome in set(Outcome)
        for i, key in enumerate(text[:12]):
            with contextlib.suppress(MeterError):  # a key not on this keypad: the caller's error
                meter.press_key(key, 20.0 + i)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=400) | JSON.map(json.dumps))
def test_trace_files_never_crash_the_parser(text: str) -> None:
    with contextlib.suppress(TraceFormatError):
        loads(text)


# -- authentication and authorisation -------------------------------------------------------


async def test_forged_and_replayed_callbacks(platform: Platform) -> None:
    ama = platform.agents["ama"]
    device = platform.stock["ama"][0]
    customer = await ama.register_customer("A", "+233240000001")
    await ama.record_sale(customer, device, 1, 2 * PRICE)
    await ama.sync()
    body = callback("MMX1", device, PRICE)
    forged = await post(platform, "/v1/mm/callback", body, {SIGNATURE_HEADER: sign(b"x", body)})
    unsigned = await post(platform, "/v1/mm/callback", body, {})
    assert (forged[0], unsigned[0]) == (401, 401)
    good = {SIGNATURE_HEADER: sign(MM_SECRET, body)}
    first, again = [await post(platform, "/v1/mm/callback", body, good) for _ in range(2)]
    assert first[0] == again[0] == 200
    tampered = body.replace(b'"amount": 100', b'"amount": 900')
    assert (await post(platform, "/v1/mm/callback", tampered, good))[0] == 401
    store = Store.open(platform.db)
    assert store.db.execute("SELECT count(*) FROM payments WHERE ref = 'MMX1'").fetchone() == (1,)
    store.close()


async def test_impersonated_handsets_are_refused(platform: Platform) -> None:
    ama, kofi = platform.agents["ama"], platform.agents["kofi"]
    mallory = HandsetKey.generate()
    body = encode_uplink(UplinkFrame(ama.handset, 0, ()))
    now = int(time.time() * 1000) + 10_000
    as_ama = mallory.headers("POST", "/v1/sync", body, ama.handset, now)
    assert (await post(platform, "/v1/sync", body, as_ama))[0] == 401
    kofi_key = kofi.link.key
    signed_by_kofi_claiming_ama = kofi_key.headers("POST", "/v1/sync", body, ama.handset, now)
    assert (await post(platform, "/v1/sync", body, signed_by_kofi_claiming_ama))[0] == 401
    kofi_frame_for_ama = kofi_key.headers("POST", "/v1/sync", body, kofi.handset, now)
    assert (await post(platform, "/v1/sync", body, kofi_frame_for_ama))[0] == 403
    replay = ama.link.key.headers("POST", "/v1/sync", body, ama.handset, now)
    assert (await post(platform, "/v1/sync", body, replay))[0] == 200
    assert (await post(platform, "/v1/sync", body, replay))[0] == 401


async def test_one_agent_never_sees_another_agents_keycodes(platform: Platform) -> None:
    ama, kofi = platform.agents["ama"], platform.agents["kofi"]
    device = platform.stock["ama"][0]
    customer = await ama.register_customer("A", "+233240000001")
    await ama.record_sale(customer, device, 1, 3 * PRICE)
    body = callback("MMX2", device, 2 * PRICE)
    await post(platform, "/v1/mm/callback", body, {SIGNATURE_HEADER: sign(MM_SECRET, body)})
    mine = await ama.sync()
    theirs = await kofi.sync()
    assert {k.device for k in mine.keycodes} == {device}
    assert not [e for e in theirs.keycodes if isinstance(e, Keycode)]
    assert await kofi.keycodes_for(device) == []
    # kofi selling or crediting ama's device is refused, and issues nothing
    stranger = await kofi.register_customer("B", "+233240000002")
    with pytest.raises(InvalidOperation):  # the handset knows its stock...
        await kofi.record_sale(stranger, device, 1, PRICE)
    await kofi.record_payment(device, PRICE)  # ...and the platform refuses the account
    refused = await kofi.sync()
    assert [seq for seq, _ in refused.rejected] == [2]
    assert not refused.keycodes
    store = Store.open(platform.db)
    texts = [t for (t,) in store.db.execute("SELECT text FROM keycodes")]
    store.close()
    assert texts
    for path in ["/v1/payments/MMX2", *(f"/v1/reports/{r}" for r in REPORTS)]:
        async with platform.http.get(platform.url + path) as r:
            page = await r.text()
        assert not [t for t in texts if t in page], path


# -- secrets --------------------------------------------------------------------------------


async def test_secrets_never_reach_logs_or_error_bodies(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ama = platform.agents["ama"]
    seen: list[str] = []
    body = callback("MMX3", platform.stock["ama"][0], PRICE)
    for signature in (sign(MM_SECRET, body), sign(MM_SECRET, b"other"), "zz"):
        seen.append(
            (await post(platform, "/v1/mm/callback", body, {SIGNATURE_HEADER: signature}))[1]
        )
    provision = {
        "agent": "agent-00000",
        "code": "wrong-" + platform.codes["ama"],
        "public_key": "00" * 32,
    }
    seen.append((await post(platform, "/v1/provision", json.dumps(provision).encode(), {}))[1])
    frame = encode_uplink(UplinkFrame(ama.handset, 0, ()))
    headers = ama.link.key.headers("POST", "/v1/sync", frame + b"x", ama.handset, 1)
    seen.append((await post(platform, "/v1/sync", frame, headers))[1])
    store = Store.open(platform.db)
    device_keys = [k.hex() for (k,) in store.db.execute("SELECT key FROM devices")]
    store.close()
    secrets = [MM_SECRET.decode(), platform.codes["ama"], ama.link.key.seed.hex(), *device_keys]
    text = caplog.text + "\n".join(seen)
    assert caplog.records  # the server did log these requests
    assert [s for s in secrets if s in text] == []


# -- brute force ----------------------------------------------------------------------------


def test_the_rate_limit_stops_a_burst_of_guesses() -> None:
    meter = Meter.nexus(b"k" * 16, "full")
    outcomes = [meter.enter_keycode("*" + f"{i:014d}" + "#", 100.0).outcome for i in range(50)]
    assert Outcome.RATE_LIMITED in outcomes
    assert outcomes.count(Outcome.INVALID) <= 128


def test_expected_time_to_guess_a_keycode() -> None:
    full, small = guessing("nexus_full", 400), guessing("nexus_small", 2000)
    opaygo = guessing("openpaygo", 300)
    assert full.accepted == 0
    assert full.expected_seconds > 10 * 365 * 86400  # a 6-digit MAC at one guess per 12 min
    assert 0 < small.expected_seconds < full.expected_seconds
    assert opaygo.expected_seconds > 86400
