"""The SMS gateway simulator and the phones' inboxes.

`SmsGateway.submit` takes a message the way an aggregator's API does and, after a seeded delay,
either drops it (loss) or puts it in the recipient's `Inbox` and sends a delivery receipt back
(which can itself be lost, so the platform resends and the phone sees a repeat). The decision
per message is pure (`SmsPlan.decide`); the shell only schedules it on the running loop. The lab
reads phones through `Inbox` (a list per MSISDN, an awaitable `next`, or a listener).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from server_stub.notify import Receipt


@dataclass(frozen=True)
class SmsConfig:
    delay_s: tuple[float, float] = (0.02, 0.2)  # uniform submit -> handset
    loss_rate: float = 0.0  # the message never arrives
    receipt_loss_rate: float = 0.0  # it arrives but the receipt does not come back
    seed: int = 0

    def __post_init__(self) -> None:
        lo, hi = self.delay_s
        if not 0 <= lo <= hi <= 3600:
            raise ValueError(f"delay_s must be 0 <= min <= max <= 3600, got {self.delay_s}")
        for name in ("loss_rate", "receipt_loss_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be within 0..1")


@dataclass(frozen=True)
class Fate:
    delay_s: float
    delivered: bool
    receipt: bool


class SmsPlan:
    """Seeded decisions, one per submitted message, in submission order."""

    def __init__(self, config: SmsConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)

    def decide(self) -> Fate:
        c = self.config
        delay = self.rng.uniform(*c.delay_s)
        delivered = self.rng.random() >= c.loss_rate
        receipt = self.rng.random() >= c.receipt_loss_rate
        return Fate(delay, delivered, delivered and receipt)


@dataclass(frozen=True)
class Message:
    msisdn: str
    text: str
    at: float  # when it reached the phone (gateway clock)


@dataclass
class Submitted:
    """The gateway's record of one submission, for the lab's checks."""

    ref: int
    msisdn: str
    submitted_at: float
    fate: Fate
    delivered_at: float | None = None


class Inbox:
    """Phones: what each MSISDN has received, in arrival order."""

    def __init__(self) -> None:
        self._messages: dict[str, list[Message]] = defaultdict(list)
        self._waiters: dict[str, asyncio.Queue[Message]] = {}
        self._listeners: list[Callable[[Message], None]] = []

    def listen(self, fn: Callable[[Message], None]) -> None:
        self._listeners.append(fn)

    def messages(self, msisdn: str) -> list[Message]:
        return list(self._messages.get(msisdn, ()))

    def _queue(self, msisdn: str) -> asyncio.Queue[Message]:
        return self._waiters.setdefault(msisdn, asyncio.Queue())

    async def next(self, msisdn: str, timeout_s: float) -> Message:
        """The phone's next message (raises TimeoutError after `timeout_s`)."""
        async with asyncio.timeout(timeout_s):
            return await self._queue(msisdn).get()

    def deliver(self, message: Message) -> None:
        self._messages[message.msisdn].append(message)
        self._queue(message.msisdn).put_nowait(message)
        for fn in self._listeners:
            fn(message)


@dataclass
class SmsGateway:
    config: SmsConfig = field(default_factory=SmsConfig)
    inbox: Inbox = field(default_factory=Inbox)
    clock: Callable[[], float] = time.time
    history: list[Submitted] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._plan = SmsPlan(self.config)
        self._pending: set[asyncio.TimerHandle] = set()

    def submit(self, msisdn: str, text: str, ref: int, on_receipt: Receipt) -> None:
        """Accept one message for delivery (must be called on the running loop)."""
        fate = self._plan.decide()
        record = Submitted(ref, msisdn, self.clock(), fate)
        self.history.append(record)
        if not fate.delivered:
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def arrive() -> None:
            self._pending.discard(handle)
            record.delivered_at = self.clock()
            self.inbox.deliver(Message(msisdn, text, record.delivered_at))
            if fate.receipt:
                on_receipt(ref, record.delivered_at)

        handle = loop.call_later(fate.delay_s, arrive)
        self._pending.add(handle)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def stop(self) -> None:
        """Drop whatever is still on its way (the network swallowed it)."""
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
