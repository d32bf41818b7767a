"""The mobile-money operator on the simulated clock: the same seeded decisions as
`field_lab.world.mno` (`MnoPlan`: delay, failure, duplicates, lost answers), the same signed
callbacks, carried into the platform through its `Door` instead of a socket.

Incidents enter here: a payment made while an `operator_delay` incident lasts has its callback
held back `delay_hours` more; while the platform is down every attempt is refused and the
operator retries on its ladder (hours long, as real operators do), never giving up in minutes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from field_lab.simulate.month import HOUR, Incident
from field_lab.simulate.wire import Door, PlatformDown
from field_lab.world.mno import Attempt, Final, MnoConfig, MnoPlan, Txn, retryable
from server_stub.callbacks import SIGNATURE_HEADER, MoneyCallback, sign

CALLBACK_PATH = "/v1/mm/callback"
RETRY_S = (30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 1800.0) + (3600.0,) * 12
"""Waits between callback attempts: about 17 hours in all before the operator gives up."""


class Operator:
    """Takes customers' payments and calls the platform back, late and retried."""

    def __init__(
        self,
        door: Door,
        secret: bytes,
        config: MnoConfig,
        *,
        clock: Callable[[], float],
        epoch: float,
        delays: Sequence[Incident] = (),
        base: float = 0.0,
    ) -> None:
        """`clock`: simulated seconds; `epoch`: the Unix time of simulated second 0 (what the
        callback's `paid_ms` says); `delays`: operator_delay incidents, their times relative
        to `base` on the clock."""
        self.door = door
        self.secret = secret
        self.config = config
        self.clock = clock
        self.epoch = epoch
        self.delays = [(base + d.start, base + d.end, d.delay_hours * HOUR) for d in delays]
        self.history: dict[str, Txn] = {}
        self._plan = MnoPlan(config)
        self._tasks: set[asyncio.Task[None]] = set()

    def extra_delay(self, t: float) -> float:
        """How much later than usual a payment made at `t` is called back."""
        return sum(extra for start, end, extra in self.delays if start <= t < end)

    def pay(self, account: int, amount: int, msisdn: str) -> str:
        """A customer pays; returns the transaction id. Callbacks follow."""
        txn_id = f"MM{len(self.history) + 1:08d}"
        plan = self._plan.decide()
        paid_at = self.clock()
        callback = MoneyCallback(
            txn=txn_id,
            account=str(account),
            amount=amount,
            msisdn=msisdn,
            status="failed" if plan.fails else "success",
            paid_ms=int((self.epoch + paid_at) * 1000),
        )
        txn = Txn(callback, plan, paid_at)
        self.history[txn_id] = txn
        self._spawn(self._deliver(txn, plan.delay_s + self.extra_delay(paid_at)))
        return txn_id

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, txn: Txn, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            for offset in txn.plan.duplicates_s:
                self._spawn(self._duplicate(txn, offset))
            for attempt in range(self.config.max_attempts):
                kind = "callback" if attempt == 0 else "retry"
                sent = await self._send(txn, kind, txn.plan.lost_answers[attempt])
                if sent.seen and not retryable(sent.status):
                    assert sent.status is not None
                    txn.final = Final.ACKNOWLEDGED if sent.status < 300 else Final.REFUSED
                    return
                if attempt < len(self.config.retry_s):
                    await asyncio.sleep(self.config.retry_s[attempt])
            txn.final = Final.GAVE_UP
        except asyncio.CancelledError:
            if txn.final is Final.PENDING:
                txn.final = Final.CANCELLED
            raise

    async def _duplicate(self, txn: Txn, offset: float) -> None:
        await asyncio.sleep(offset)
        await self._send(txn, "duplicate", lost=False)

    async def _send(self, txn: Txn, kind: str, lost: bool) -> Attempt:
        body = json.dumps(txn.callback.to_json()).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.secret, body)}
        attempt = Attempt(kind, self.clock())
        txn.attempts.append(attempt)
        try:
            answer = await self.door("POST", CALLBACK_PATH, headers, body)
        except PlatformDown:
            attempt.error = "refused"
            return attempt
        attempt.status = answer.status
        try:
            doc = json.loads(answer.body)
        except ValueError:
            doc = None
        attempt.answer = doc if isinstance(doc, dict) else None
        attempt.answered_at = self.clock()
        attempt.seen = not lost
        if lost:
            attempt.error = "answer_lost"
        return attempt

    async def drain(self, timeout_s: float) -> bool:
        """Wait (bounded, simulated seconds) until every callback is done."""
        try:
            async with asyncio.timeout(timeout_s):
                while self._tasks:
                    await asyncio.wait(set(self._tasks))
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))


def operator_config(scenario_mm: Any, seed: int) -> MnoConfig:
    """The scenario's operator habits with the simulation's retry ladder."""
    return MnoConfig(
        delay_s=tuple(scenario_mm.delay_s),
        reorder_window_s=scenario_mm.reorder_window_s,
        duplicate_rate=scenario_mm.duplicate_rate,
        lost_answer_rate=scenario_mm.lost_answer_rate,
        failure_rate=scenario_mm.failure_rate,
        retry_s=RETRY_S,
        seed=seed,
    )
