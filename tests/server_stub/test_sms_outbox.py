"""The SMS outbox's resend rule as a state machine over virtual time: a message is handed out
when new, again only after `resend_after` without a receipt, never after a receipt, never more
than `max_attempts` times; receipts count once. Checked against a model by Hypothesis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server_stub.callbacks import MoneyCallback
from server_stub.notify import Receipt, ResendRule, SmsSender
from server_stub.store import Store

from .fixtures import PRICE_PER_DAY
from .platform import Sold, copy_db, sold_platform

RESEND_MS = 1_000
MAX_ATTEMPTS = 3
T0 = 1_790_000_100_000


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Sold]:
    path = tmp_path_factory.mktemp("sms") / "template.db"
    return path, sold_platform(path)


Step = tuple[str, int]  # ("advance", ms) | ("receipt", message index) | ("claim", 0)

steps = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.integers(0, 1_500)),
        st.tuples(st.just("receipt"), st.integers(0, 3)),
        st.tuples(st.just("claim"), st.just(0)),
    ),
    max_size=30,
)


@settings(max_examples=40)
@given(messages=st.integers(1, 4), script=steps)
def test_resend_rule_matches_its_model(
    template: tuple[Path, Sold],
    tmp_path_factory: pytest.TempPathFactory,
    messages: int,
    script: list[Step],
) -> None:
    path, sold = template
    store = Store.open(copy_db(path, tmp_path_factory.mktemp("ex") / "s.db"))
    try:
        for i in range(messages):
            cb = MoneyCallback(
                f"S{i}", str(sold.devices[0]), PRICE_PER_DAY, "+233200000001", "success", T0
            )
            assert store.mobile_money(cb, T0).keycode
        ids = [r[0] for r in store.db.execute("SELECT sms FROM sms ORDER BY sms")]
        assert len(ids) == messages
        now = T0
        attempts = dict.fromkeys(ids, 0)
        sent_at: dict[int, int] = {}
        delivered: set[int] = set()
        for action, value in script:
            if action == "advance":
                now += value
            elif action == "receipt":
                if value < messages:
                    sms = ids[value]
                    assert store.sms_delivered(sms, now) is (sms not in delivered)  # first counts
                    delivered.add(sms)
            else:
                due = {
                    s
                    for s in ids
                    if s not in delivered
                    and attempts[s] < MAX_ATTEMPTS
                    and (s not in sent_at or sent_at[s] + RESEND_MS <= now)
                }
                claimed = store.sms_due(now, RESEND_MS, MAX_ATTEMPTS)
                assert {c[0] for c in claimed} == due
                for s in due:
                    attempts[s] += 1
                    sent_at[s] = now
            waiting = [
                sent_at[s] + RESEND_MS
                for s in sent_at
                if s not in delivered and attempts[s] < MAX_ATTEMPTS
            ]
            assert store.sms_next_due_ms(RESEND_MS, MAX_ATTEMPTS) == min(waiting, default=None)
        rows = store.db.execute("SELECT sms, attempts, delivered_ms FROM sms").fetchall()
        for sms, count, delivered_ms in rows:
            assert count == attempts[sms] <= MAX_ATTEMPTS
            assert (delivered_ms is not None) == (sms in delivered)
    finally:
        store.close()


class FirstLost:
    """A gateway that loses every message's first copy and delivers the rest."""

    def __init__(self) -> None:
        self.submitted: list[tuple[int, float]] = []
        self.resent = asyncio.Event()

    def submit(self, msisdn: str, text: str, ref: int, on_receipt: Receipt) -> None:
        self.submitted.append((ref, time.monotonic()))
        if [r for r, _ in self.submitted].count(ref) > 1:
            on_receipt(ref, time.time())
            self.resent.set()


async def test_sender_resends_when_due_not_at_its_poll(
    template: tuple[Path, Sold], tmp_path: Path
) -> None:
    """With a safety poll far longer than the resend wait, the resend still goes out on time:
    the sender sleeps until the store says the message falls due, not until the next poll."""
    path, sold = template
    store = Store.open(copy_db(path, tmp_path / "s.db"))

    async def call(fn: Callable[..., Any], *args: Any) -> Any:
        return fn(store, *args)

    gateway = FirstLost()
    rule = ResendRule(resend_after_s=0.3, max_attempts=3, poll_s=3600.0)
    sender = SmsSender(gateway, call, lambda: int(time.time() * 1000), rule)
    cb = MoneyCallback("W1", str(sold.devices[0]), PRICE_PER_DAY, "+233200000001", "success", T0)
    try:
        assert store.mobile_money(cb, int(time.time() * 1000)).keycode
        sender.start()
        sender.wake()
        async with asyncio.timeout(10):
            await gateway.resent.wait()
        await sender.stop()
        (first, at1), (again, at2) = gateway.submitted
        assert first == again
        assert at2 - at1 >= 0.29  # not before it fell due (the store's clock counts whole ms)
        assert store.sms_next_due_ms(300, 3) is None  # delivered: nothing waits for a resend
    finally:
        await sender.stop()
        store.close()
