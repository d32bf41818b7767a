"""The callback's core, in-process: any order of callbacks, duplicates and tampered replays
gives exactly one outcome per transaction (the first content wins), one keycode per confirmed
payment that buys a day, message ids in order per device, and balances that add up."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server_stub.callbacks import MoneyCallback, Outcome, parse_callback
from server_stub.errors import RequestError
from server_stub.store import Store

from .fixtures import PRICE_PER_DAY
from .platform import DOWN_PAYMENT, Sold, copy_db, sold_platform
from .test_keycodes import meter_for

UNKNOWN_ACCOUNT = 99_999_999
NOW = 1_790_000_100_000


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Sold]:
    path = tmp_path_factory.mktemp("mm") / "template.db"
    return path, sold_platform(path)


def callbacks(devices: list[int]) -> st.SearchStrategy[list[MoneyCallback]]:
    one = st.builds(
        MoneyCallback,
        txn=st.just(""),
        account=st.sampled_from([*devices, UNKNOWN_ACCOUNT]).map(str),
        amount=st.sampled_from([PRICE_PER_DAY // 2, PRICE_PER_DAY, 250, 10 * PRICE_PER_DAY]),
        msisdn=st.just("+233200000001"),
        status=st.sampled_from(["success", "success", "success", "failed"]),
        paid_ms=st.integers(NOW - 10_000, NOW),
    )
    return st.lists(one, min_size=1, max_size=6).map(
        lambda cbs: [replace(cb, txn=f"T{i}") for i, cb in enumerate(cbs)]
    )


@st.composite
def deliveries(draw: st.DrawFn, devices: list[int]) -> tuple[list[MoneyCallback], list[int]]:
    """Transactions and an arrival order: every txn at least once, any repeats, any order;
    a negative index is a tampered replay (same txn, another amount)."""
    txns = draw(callbacks(devices))
    order = list(range(len(txns))) + draw(st.lists(st.integers(0, len(txns) - 1), max_size=12))
    order = draw(st.permutations(order))
    tampered = draw(st.lists(st.integers(0, len(txns) - 1), max_size=3))
    return txns, order + [-1 - i for i in tampered]


@settings(max_examples=40)
@given(data=st.data())
def test_any_callback_order_gives_one_outcome_and_one_keycode_per_payment(
    template: tuple[Path, Sold], tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    path, sold = template
    txns, order = data.draw(deliveries(sold.devices))
    store = Store.open(copy_db(path, tmp_path_factory.mktemp("ex") / "s.db"))
    try:
        first: dict[str, Outcome] = {}
        for i, index in enumerate(order):
            cb = txns[index] if index >= 0 else txns[-1 - index]
            if index < 0:
                cb = replace(cb, amount=cb.amount + 1)
            if index < 0 and cb.txn in first:
                with pytest.raises(RequestError) as refused:
                    store.mobile_money(cb, NOW + i)
                assert refused.value.code == "txn_conflict"
                continue
            answer = store.mobile_money(cb, NOW + i)
            if cb.txn in first:
                assert answer.duplicate
                assert answer.outcome is first[cb.txn]
            else:
                assert not answer.duplicate
                first[cb.txn] = answer.outcome
            expected = (
                Outcome.FAILED
                if cb.status == "failed"
                else Outcome.UNKNOWN_ACCOUNT
                if int(cb.account) == UNKNOWN_ACCOUNT
                else Outcome.CONFIRMED
            )
            assert answer.outcome is expected
        check_ledger(store, sold, {t.txn: t for t in txns})
    finally:
        store.close()


def check_ledger(store: Store, sold: Sold, txns: dict[str, MoneyCallback]) -> None:
    db = store.db
    rows = db.execute("SELECT txn, outcome, amount, device, keycode FROM mm_txns").fetchall()
    assert {r[0] for r in rows} == set(txns)
    confirmed = [r for r in rows if r[1] == "confirmed"]
    # the row is written whole, once: a confirmed payment names its device, the handset that
    # sold it and when it was confirmed (even one buying no day); any other names none
    for txn, outcome, device, handset, confirmed_ms, keycode, downlink_n in db.execute(
        "SELECT txn, outcome, device, handset, confirmed_ms, keycode, downlink_n FROM mm_txns"
    ):
        named = (device, handset, confirmed_ms)
        if outcome == "confirmed":
            assert device == int(txns[txn].account)
            assert None not in named
            assert (keycode is None) == (downlink_n is None)
        else:
            assert named == (None, None, None)
            assert keycode is None
    keycodes = [r[4] for r in confirmed if r[4] is not None]
    assert len(keycodes) == len(set(keycodes))  # never two payments on one keycode
    for _, _, amount, _, keycode in confirmed:
        if amount >= PRICE_PER_DAY:
            assert keycode is not None  # a payment that buys a day gets its keycode
    (mm_codes,) = db.execute("SELECT count(*) FROM keycodes WHERE op_seq = 0").fetchone()
    assert mm_codes == len(keycodes)  # and no keycode without its payment
    for device in sold.devices:
        paid = sum(r[2] for r in confirmed if r[3] == device)
        spent, balance = db.execute(
            "SELECT (SELECT coalesce(sum(amount), 0) FROM keycodes WHERE device = ?), balance"
            " FROM devices WHERE device = ?",
            (device, device),
        ).fetchone()
        assert spent + balance == DOWN_PAYMENT + paid  # money is credited or carried, exactly
        ids = [
            r[0]
            for r in db.execute(
                "SELECT message_id FROM keycodes WHERE device = ? ORDER BY keycode", (device,)
            )
        ]
        assert ids == sorted(set(ids))  # issued in order per device
        meter, now = meter_for(sold.seeded.secrets[device]), 0.0
        for text, credit_s in db.execute(
            "SELECT text, credit_s FROM keycodes WHERE device = ? ORDER BY keycode", (device,)
        ).fetchall():
            now += 720  # past the keypad's rate limit
            before = meter.credit_remaining(now)
            assert meter.enter_keycode(text, now).outcome == "applied"  # the meter accepts each
            assert meter.credit_remaining(now) - before == credit_s


@given(body=st.binary(max_size=200))
def test_callback_parser_refuses_garbage_with_a_coded_error(body: bytes) -> None:
    refusal: RequestError | None = None
    try:
        parse_callback(body)
    except RequestError as exc:
        refusal = exc
    if refusal is not None:
        assert refusal.status == 400
        assert refusal.code in ("malformed_json", "bad_field")


@settings(suppress_health_check=[HealthCheck.too_slow])  # regex strategies on a busy machine
@given(
    cb=st.builds(
        MoneyCallback,
        txn=st.from_regex(r"[A-Za-z0-9_.-]{1,40}", fullmatch=True),
        account=st.from_regex(r"[0-9]{1,10}", fullmatch=True),
        amount=st.integers(1, 10**9),
        msisdn=st.from_regex(r"\+?[0-9]{6,16}", fullmatch=True),
        status=st.sampled_from(["success", "failed"]),
        paid_ms=st.integers(0, 2**53),
    ),
    drop=st.sampled_from(["txn", "account", "amount", "msisdn", "status", "paid_ms", None]),
)
def test_callback_round_trips_and_any_missing_field_is_named(
    cb: MoneyCallback, drop: str | None
) -> None:
    doc = cb.to_json()
    assert parse_callback(json.dumps(doc).encode()) == cb
    if drop is not None:
        del doc[drop]
        with pytest.raises(RequestError) as refused:
            parse_callback(json.dumps(doc).encode())
        assert drop in refused.value.detail
