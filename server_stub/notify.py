"""The platform's SMS sender: drains the durable ``sms`` outbox into a gateway, with resends.

The outbox row is written in the same transaction that issues the keycode, so a message is
never lost to a crash; this task only hands due rows to the gateway (`Store.sms_due` counts the
attempt as it claims them) and records receipts. A message with no receipt after
`resend_after_s` is sent again, up to `max_attempts` times. Between claims the task sleeps until
the earliest resend falls due (the store says when), a new message wakes it, or `poll_s` passes
(a safety net, not the schedule): an idle platform does not query its outbox to find nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from .store import Store

StoreCall = Callable[..., Coroutine[Any, Any, Any]]
Receipt = Callable[[int, float], None]  # (the platform's reference, delivered at)


class Gateway(Protocol):
    def submit(self, msisdn: str, text: str, ref: int, on_receipt: Receipt) -> None: ...


@dataclass(frozen=True)
class ResendRule:
    resend_after_s: float = 5.0
    max_attempts: int = 3
    poll_s: float = 0.05  # the longest the sender sleeps without looking at the outbox

    def __post_init__(self) -> None:
        if not (0 < self.resend_after_s <= 86_400 and 1 <= self.max_attempts <= 100):
            raise ValueError("resend_after_s must be in (0, 86400] and max_attempts in 1..100")
        if not 0 < self.poll_s <= 86_400:
            raise ValueError("poll_s must be in (0, 86400]")


class SmsSender:
    def __init__(
        self,
        gateway: Gateway,
        call: StoreCall,
        now_ms: Callable[[], int],
        rule: ResendRule | None = None,
    ) -> None:
        self.gateway = gateway
        self.call = call
        self.now_ms = now_ms
        self.rule = rule or ResendRule()
        self._wake = asyncio.Event()
        self._receipts: set[asyncio.Task[Any]] = set()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """A new message is in the outbox: look now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sms-sender")

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            due, wait_s = await self.call(self._claim)
            for sms, msisdn, text in due:
                self.gateway.submit(msisdn, text, sms, self._receipt)
            if len(due) == 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self._wake.wait()

    def _claim(self, store: Store) -> tuple[list[tuple[int, str, str]], float]:
        """On the store thread (the clock is read when the claim runs, not when queued): the
        messages to send now and, when there are none, how long to sleep before looking again."""
        rule = self.rule
        after_ms, now_ms = int(rule.resend_after_s * 1000), self.now_ms()
        due = store.sms_due(now_ms, after_ms, rule.max_attempts)
        if due:
            return due, 0.0
        next_ms = store.sms_next_due_ms(after_ms, rule.max_attempts)
        if next_ms is None:
            return due, rule.poll_s
        return due, min(rule.poll_s, max(0.001, (next_ms - now_ms) / 1000))

    def _receipt(self, ref: int, _delivered_at: float) -> None:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(
            self.call(Store.sms_delivered, ref, self.now_ms())
        )
        self._receipts.add(task)
        task.add_done_callback(self._receipts.discard)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop claiming; let receipts already in hand reach the store (bounded)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._receipts:
            await asyncio.wait(set(self._receipts), timeout=timeout_s)
