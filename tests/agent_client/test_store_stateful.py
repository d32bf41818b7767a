"""The handset store against a dict model: what it says is unsettled, and what it offers to
send, always agree with what its file holds.

A store that is its file's sole writer (`Storage(locks=False)`) keeps the count of unsettled
operations in memory and skips the outbox read when it is zero; this machine drives it through
every write it makes (enqueues, a lot of sales, freezes, acks and refusals heard once, twice or
for settled operations, a caller's own transaction, one that fails, a reopen) and compares
after each step with the model and with a fresh count of the file. A store that forgets to
move its count is caught (`test_a_store_that_forgets_a_settlement_is_caught`).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from agent_client.database import Inline, Storage
from agent_client.protocol.frames import Reason
from agent_client.protocol.ops import Kind
from agent_client.protocol.sync import Result
from agent_client.store import HandsetStore, OpState

T = TypeVar("T")
SOLE = Storage(journal="truncate", synchronous="off", runner=Inline(), locks=False)
UNSETTLED = (OpState.PENDING, OpState.IN_FLIGHT)
seqs = st.lists(st.integers(1, 40), max_size=6, unique=True)


def answer(acked: tuple[int, ...], rejected: tuple[int, ...]) -> Result:
    refused = tuple((seq, Reason.NOT_IN_STOCK) for seq in rejected)
    return Result(acked, refused, (), 0, False, 1, True)


class StoreModel(RuleBasedStateMachine):
    store_class: type[HandsetStore] = HandsetStore

    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory()
        self.path = Path(self._tmp.name) / "h.db"
        self.loop = asyncio.new_event_loop()
        self.store = self.run(self.store_class.open(self.path, SOLE))
        self.state: dict[int, OpState] = {}

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)

    def teardown(self) -> None:
        try:
            self.run(self.store.close())
        finally:
            self.loop.close()
            self._tmp.cleanup()

    # -- what the handset does -----------------------------------------------------------------

    @rule(amount=st.integers(1, 10**6))
    def enqueue(self, amount: int) -> None:
        op = self.run(self.store.enqueue(Kind.RECORD_PAYMENT, 100, 5, amount, now_ms=1))
        self.state[op.seq] = OpState.PENDING

    @rule(n=st.integers(0, 3))
    def sell_a_lot(self, n: int) -> None:
        sales = [(f"c{i}", "+255700000001", 1000 + i, 1, 500) for i in range(n)]
        for customer, sale in self.run(self.store.enqueue_sales(100, sales, now_ms=1)):
            self.state[customer.seq] = self.state[sale.seq] = OpState.PENDING

    @rule(frozen=seqs)
    def freeze(self, frozen: list[int]) -> None:
        self.run(self.store.mark_in_flight(frozen, last_ms=5))
        for seq in frozen:
            if self.state.get(seq) is OpState.PENDING:
                self.state[seq] = OpState.IN_FLIGHT

    @rule(acked=seqs, rejected=seqs)
    def answered(self, acked: list[int], rejected: list[int]) -> None:
        """Acks and refusals of any seq: unsettled, settled already (heard twice), unknown."""
        rejected = [seq for seq in rejected if seq not in acked]
        self.run(self.store.apply(answer(tuple(acked), tuple(rejected)), 2, last_ms=6))
        for seqs_, to in ((acked, OpState.ACKNOWLEDGED), (rejected, OpState.REJECTED)):
            for seq in seqs_:
                if self.state.get(seq) in UNSETTLED:
                    self.state[seq] = to

    @rule(seq=st.integers(1, 40), to=st.sampled_from(OpState))
    def a_callers_own_transaction(self, seq: int, to: OpState) -> None:
        async def write() -> None:
            async with self.store.transaction() as db:
                await db.execute("UPDATE outbox SET state = ? WHERE seq = ?", (to.value, seq))

        self.run(write())
        if seq in self.state:
            self.state[seq] = to

    @rule(seq=st.integers(1, 40))
    def a_transaction_that_fails(self, seq: int) -> None:
        async def write() -> None:
            async with self.store.transaction() as db:
                await db.execute("UPDATE outbox SET state = 'acknowledged' WHERE seq = ?", (seq,))
                raise LookupError("the caller changed its mind")

        with pytest.raises(LookupError):
            self.run(write())

    @rule()
    def reopen(self) -> None:
        self.run(self.store.close())
        self.store = self.run(self.store_class.open(self.path, SOLE))

    # -- invariants ----------------------------------------------------------------------------

    def unsettled_seqs(self) -> list[int]:
        return sorted(seq for seq, state in self.state.items() if state in UNSETTLED)

    @invariant()
    def the_store_agrees_with_its_file(self) -> None:
        """What it keeps first (a read below may count afresh), then what it reads."""
        unsettled = self.unsettled_seqs()
        assert self.run(self.store.unsettled()) == len(unsettled)
        for limit in (1, 3, 512):
            sent = [op.seq for op in self.run(self.store.sendable(limit))]
            assert sent == unsettled[:limit]
        counts = self.run(self.store.counts())  # read from the file every time
        assert counts == {s: sum(1 for v in self.state.values() if v is s) for s in OpState}


TestStoreModel = StoreModel.TestCase
TestStoreModel.settings = settings(
    settings.default,
    max_examples=min(60, settings.default.max_examples),
    stateful_step_count=25,
    suppress_health_check=[HealthCheck.too_slow],
    deadline=None,
)


class ForgetsSettlements(HandsetStore):
    """Injected fault: acks and refusals do not move the kept count."""

    def _moved(self, delta: int) -> None:
        if delta > 0:
            super()._moved(delta)


class ForgetfulStoreModel(StoreModel):
    store_class = ForgetsSettlements


def test_a_store_that_forgets_a_settlement_is_caught() -> None:
    with pytest.raises(AssertionError):
        run_state_machine_as_test(
            ForgetfulStoreModel,
            settings=settings(
                max_examples=200,
                stateful_step_count=25,
                deadline=None,
                database=None,
                phases=[Phase.generate],  # caught is enough: no shrinking
                suppress_health_check=list(HealthCheck),
            ),
        )


async def test_a_shared_file_is_read_every_time(tmp_path: Path) -> None:
    """With file locks (another connection may write the file) nothing is kept: an operation
    another writer queued is offered at once."""
    mine = await HandsetStore.open(tmp_path / "h.db")
    theirs = await HandsetStore.open(tmp_path / "h.db")
    assert await mine.sendable(10) == []
    assert await mine.unsettled() == 0
    op = await theirs.enqueue(Kind.RECORD_PAYMENT, 100, 5, 700, now_ms=1)
    assert await mine.sendable(10) == [op]
    assert await mine.unsettled() == 1
    await theirs.close()
    await mine.close()


class Counting(Inline):
    """Runs inline, counting the calls that reach the database."""

    def __init__(self) -> None:
        self.calls = 0

    async def call(self, fn: Callable[[], T]) -> T:
        self.calls += 1
        return await super().call(fn)


async def test_a_sole_writer_with_nothing_unsettled_does_not_read_its_outbox(
    tmp_path: Path,
) -> None:
    """A poll's sync asks what to send before and after its exchange, and how many are left:
    with everything settled none of that reaches the database."""
    runner = Counting()
    store = await HandsetStore.open(tmp_path / "h.db", replace(SOLE, runner=runner))
    op = await store.enqueue(Kind.RECORD_PAYMENT, 100, 5, 700, now_ms=1)
    assert await store.sendable(512) == [op]  # read: all there is, so the count is known
    await store.mark_in_flight([op.seq], last_ms=2)
    await store.apply(answer((op.seq,), ()), 3, last_ms=4)
    before = runner.calls
    assert await store.sendable(512) == []
    assert await store.unsettled() == 0
    assert runner.calls == before
    await store.enqueue(Kind.RECORD_PAYMENT, 100, 5, 800, now_ms=5)
    before = runner.calls
    assert await store.unsettled() == 1
    assert len(await store.sendable(512)) == 1  # something to send: read
    assert runner.calls == before + 1
    await store.close()
