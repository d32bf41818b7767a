"""Mobile money end to end over HTTP: the operator simulator sends late, duplicated, reordered
and retried callbacks; the platform applies each payment once, issues one keycode per confirmed
payment, texts it to the customer through a lossy SMS gateway (resends until a receipt), and
the selling agent's handset gets it on its next sync."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from field_lab.testing.platform import PaygPlatform
from field_lab.world.mno import Final, MnoConfig, MnoPlan, MnoSimulator
from field_lab.world.sms import SmsConfig, SmsGateway, SmsPlan
from server_stub.app import Platform
from server_stub.callbacks import SIGNATURE_HEADER, sign
from server_stub.notify import ResendRule
from server_stub.store import Store

from .fixtures import PRICE_PER_DAY, seed_platform
from .platform import SECRET, agent_for, bearer, start

PHONE = "+233200000001"


async def test_duplicates_reordering_and_retries_give_one_keycode_per_payment(
    tmp_path: Path,
) -> None:
    db = tmp_path / "server.db"
    seeded = seed_platform(db)
    gateway = SmsGateway(SmsConfig(delay_s=(0.0, 0.05), loss_rate=0.3, receipt_loss_rate=0.2))
    rule = ResendRule(resend_after_s=0.2, max_attempts=10, poll_s=0.02)
    server = await start(db, Platform(mm_secret=SECRET, sms=gateway, resend=rule))
    agent = await agent_for(server, tmp_path)
    devices = seeded.stock["ama"][:2]
    customer = await agent.register_customer("Esi", PHONE)
    for device in devices:
        await agent.record_sale(customer, device, seeded.plan, PRICE_PER_DAY)
    assert (await agent.sync()).pending == 0

    config = MnoConfig(
        delay_s=(0.0, 0.05),
        reorder_window_s=0.3,
        duplicate_rate=0.5,
        duplicate_spread_s=0.3,
        lost_answer_rate=0.3,
        failure_rate=0.15,
        timeout_s=5.0,
        retry_s=(0.05, 0.1, 0.2, 0.4),
        seed=7,
    )
    mno = MnoSimulator(str(server.make_url("/v1/mm/callback")), SECRET, config)
    await mno.start()
    paid = [mno.pay(devices[i % 2], PRICE_PER_DAY * (1 + i % 3), PHONE) for i in range(24)]
    paid.append(mno.pay(99_999_999, PRICE_PER_DAY, PHONE))  # nobody's account
    assert await mno.drain(30.0)
    await mno.stop()

    txns = [mno.history[t] for t in paid]
    # the operator saw a final answer for every payment: nothing gave up, nothing is pending
    assert {t.final for t in txns[:-1]} == {Final.ACKNOWLEDGED}
    assert txns[-1].final is Final.REFUSED
    # the run really did exercise duplicates, retries after lost answers, and failures
    kinds = [a.kind for t in txns for a in t.attempts]
    assert kinds.count("duplicate") > 0
    assert kinds.count("retry") > 0
    assert any(t.callback.status == "failed" for t in txns)
    dup_answers = [a.answer for t in txns for a in t.attempts if a.answer and a.answer["duplicate"]]
    assert dup_answers
    arrival = sorted(txns, key=lambda t: min(a.sent_at for a in t.attempts))
    assert [t.txn for t in arrival] != paid  # callbacks overtook each other

    confirmed = [t for t in txns[:-1] if t.callback.status == "success"]
    store = Store.open(db)
    try:
        rows = store.db.execute("SELECT txn, outcome, keycode FROM mm_txns ORDER BY txn").fetchall()
        assert len(rows) == len(txns)  # one row per transaction, whatever arrived twice
        by_txn = {r[0]: r for r in rows}
        for t in txns[:-1]:
            outcome = "confirmed" if t.callback.status == "success" else "failed"
            assert by_txn[t.txn][1] == outcome
        codes = [by_txn[t.txn][2] for t in confirmed]
        assert None not in codes
        assert len(set(codes)) == len(confirmed)  # exactly one keycode per confirmed payment
        (mm_codes,) = store.db.execute("SELECT count(*) FROM keycodes WHERE op_seq = 0").fetchone()
        assert mm_codes == len(confirmed)
        for device in devices:
            total = sum(t.callback.amount for t in confirmed if int(t.callback.account) == device)
            (credit_s,) = store.db.execute(
                "SELECT sum(credit_s) FROM keycodes WHERE device = ? AND op_seq = 0", (device,)
            ).fetchone()
            assert credit_s == total // PRICE_PER_DAY * 86_400  # plan price per day, exactly
        texts = {r[0] for r in store.db.execute("SELECT text FROM keycodes WHERE op_seq = 0")}
    finally:
        store.close()

    # every keycode reaches the customer's phone despite SMS loss (resends until a receipt)
    def received() -> set[str]:
        return {m.text.rsplit(" ", 1)[-1] for m in gateway.inbox.messages(PHONE)}

    all_in = asyncio.Event()
    gateway.inbox.listen(lambda _: all_in.set() if texts <= received() else None)
    if not texts <= received():
        async with asyncio.timeout(20):
            await all_in.wait()
    assert any(not s.fate.delivered for s in gateway.history)  # loss happened and was overcome

    # and the selling agent's handset on its next sync
    assert (await agent.sync()).pending == 0
    for device in devices:
        handset_codes = await agent.keycodes_for(device)
        expected = sum(1 for t in confirmed if int(t.callback.account) == device)
        assert len(handset_codes) == 1 + expected  # the sale's keycode and each payment's

    async with aiohttp.ClientSession(headers=bearer(db)) as http:
        for t in confirmed:
            async with http.get(server.make_url(f"/v1/payments/{t.txn}")) as response:
                steps = await response.json()
            assert steps["outcome"] == "confirmed"
            assert steps["paid_ms"] <= steps["received_ms"] <= steps["confirmed_ms"]
            assert steps["confirmed_ms"] == steps["issued_ms"]
            assert steps["issued_ms"] <= steps["sms_sent_ms"]
            assert steps["issued_ms"] <= steps["handset_downlinked_ms"]
            assert steps["handset_synced_ms"] is None  # the handset has not confirmed it yet
    await agent.sync()  # the next exchange's cursor says the entries arrived
    async with aiohttp.ClientSession(headers=bearer(db)) as http:
        for t in confirmed:
            async with http.get(server.make_url(f"/v1/payments/{t.txn}")) as response:
                steps = await response.json()
            assert steps["handset_downlinked_ms"] <= steps["handset_synced_ms"]
        async with http.get(server.make_url("/v1/reports/activation")) as response:
            days = (await response.json())["items"]  # one day, two if run across midnight
        for step in ("issued", "sms_delivered", "handset_downlinked"):
            assert sum(d[step]["count"] for d in days) == len(confirmed)
        assert sum(d["payments"] for d in days) == len(confirmed)
        assert all(0 <= d["issued"]["p50_s"] <= d["sms_delivered"]["p50_s"] for d in days)
    await agent.close()
    await server.close()


@pytest.mark.payg_platform(mm_secret=SECRET, audit=False)
async def test_callback_answers_conflicts_and_bad_signatures_without_writing(
    payg_platform: PaygPlatform,
) -> None:
    url = payg_platform.url + "/v1/mm/callback"
    body = (
        b'{"txn":"X1","account":"99999999","amount":100,"msisdn":"+2332000","status":"success",'
        b'"paid_ms":1}'
    )
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=body) as response:
            assert response.status == 401
            assert (await response.json())["error"] == "missing_signature"
        async with http.post(url, data=body, headers={SIGNATURE_HEADER: "00"}) as response:
            assert (await response.json())["error"] == "bad_signature"
        signed = {SIGNATURE_HEADER: sign(SECRET, body)}
        for duplicate in (False, True):
            async with http.post(url, data=body, headers=signed) as response:
                assert response.status == 422
                doc = await response.json()
                assert doc["error"] == "unknown_account"
                assert doc["duplicate"] is duplicate
        other = body.replace(b"100", b"200")
        async with http.post(url, data=other, headers={SIGNATURE_HEADER: sign(SECRET, other)}) as r:
            assert r.status == 409
            assert (await r.json())["error"] == "txn_conflict"
    store = Store.open(payg_platform.db)
    try:
        assert store.db.execute("SELECT count(*), max(amount) FROM mm_txns").fetchone() == (1, 100)
    finally:
        store.close()


def test_plans_are_seeded_and_within_their_configuration() -> None:
    config = MnoConfig(delay_s=(0.1, 0.2), reorder_window_s=0.5, duplicate_rate=0.9, seed=3)
    a, b = MnoPlan(config), MnoPlan(config)
    plans = [a.decide() for _ in range(200)]
    assert plans == [b.decide() for _ in range(200)]
    assert all(0.1 <= p.delay_s <= 0.7 for p in plans)
    assert all(len(p.lost_answers) == config.max_attempts for p in plans)
    assert all(list(p.duplicates_s) == sorted(p.duplicates_s) for p in plans)
    assert max(len(p.duplicates_s) for p in plans) > 1
    sms = SmsConfig(delay_s=(0.0, 1.0), loss_rate=0.5, receipt_loss_rate=0.5, seed=3)
    fates = [SmsPlan(sms).decide() for _ in range(3)]
    assert fates == [SmsPlan(sms).decide() for _ in range(3)]
    many = SmsPlan(sms)
    drawn = [many.decide() for _ in range(400)]
    assert all(f.delivered or not f.receipt for f in drawn)  # no receipt for a lost message
    assert 100 < sum(f.delivered for f in drawn) < 300


@pytest.mark.parametrize(
    "bad",
    [
        {"delay_s": (1.0, 0.5)},
        {"duplicate_rate": 1.0},
        {"failure_rate": -0.1},
        {"timeout_s": 0.0},
        {"retry_s": (-1.0,)},
    ],
)
def test_bad_simulator_configuration_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        MnoConfig(**bad)  # type: ignore[arg-type]


async def test_simulator_calls_back_only_on_loopback() -> None:
    with pytest.raises(ValueError):
        MnoSimulator("http://example.com/cb", SECRET)
