"""The mobile-money operator simulator: takes customer payments and calls the platform back the
way operators do — late, twice, out of order, retried after timeouts, sometimes failed.

`MnoPlan` (pure, seeded) decides everything about a transaction when it is paid: the callback
delay (base plus a reorder jitter), whether the payment fails, how many duplicate callbacks
follow and when, and which attempts lose the platform's answer (the operator then sees a
timeout and retries). Deciding up front keeps a run reproducible whatever the network timing.
`MnoSimulator` is the asyncio shell: it signs JSON callbacks, hands each attempt to its
`CallbackSender` and records every attempt and answer per transaction for the lab's checks.
The sender is the seam for how a callback travels: `HttpCallbacks` POSTs over real HTTP (the
lab, chaos and load benchmarks); `field-lab simulate` carries it through the platform's door on
its virtual clock, with the same decisions, signing, retries and records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol
from urllib.parse import urlsplit

from agent_client.errors import TransientError
from agent_client.transport import Http1Transport, Timeouts
from server_stub.callbacks import SIGNATURE_HEADER, MoneyCallback, sign


@dataclass(frozen=True)
class MnoConfig:
    delay_s: tuple[float, float] = (0.05, 0.5)  # uniform, payment -> first callback
    reorder_window_s: float = 0.0  # extra uniform delay: later payments can overtake
    duplicate_rate: float = 0.0  # chance of each extra copy of the callback (geometric)
    duplicate_spread_s: float = 1.0  # duplicates arrive within this after the first send
    lost_answer_rate: float = 0.0  # the platform answered but the operator timed out
    failure_rate: float = 0.0  # the payment fails permanently (callback status "failed")
    timeout_s: float = 5.0  # per attempt
    retry_s: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)  # waits between attempts
    seed: int = 0

    def __post_init__(self) -> None:
        lo, hi = self.delay_s
        if not 0 <= lo <= hi <= 3600 or not 0 <= self.reorder_window_s <= 3600:
            raise ValueError("delays must satisfy 0 <= min <= max <= 3600")
        for name in ("duplicate_rate", "lost_answer_rate", "failure_rate"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be within [0, 1)")
        if not 0 < self.timeout_s <= 600 or not 0 <= self.duplicate_spread_s <= 3600:
            raise ValueError("timeout_s must be in (0, 600], duplicate_spread_s in [0, 3600]")
        if len(self.retry_s) > 20 or any(not 0 <= r <= 3600 for r in self.retry_s):
            raise ValueError("at most 20 retries, each wait within 0..3600 s")

    @property
    def max_attempts(self) -> int:
        return len(self.retry_s) + 1


@dataclass(frozen=True)
class TxnPlan:
    delay_s: float
    fails: bool
    duplicates_s: tuple[float, ...]  # offsets after the first send
    lost_answers: tuple[bool, ...]  # per attempt: the operator never sees the answer


MAX_DUPLICATES = 5
KEEP_ALIVE_S = 30.0
"""An idle callback connection is closed after this (the platform keeps one 75 s)."""


class MnoPlan:
    """Seeded decisions, one `TxnPlan` per payment, in payment order."""

    def __init__(self, config: MnoConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)

    def decide(self) -> TxnPlan:
        c, rng = self.config, self.rng
        delay = rng.uniform(*c.delay_s) + rng.uniform(0, c.reorder_window_s)
        fails = rng.random() < c.failure_rate
        duplicates: list[float] = []
        while len(duplicates) < MAX_DUPLICATES and rng.random() < c.duplicate_rate:
            duplicates.append(rng.uniform(0, c.duplicate_spread_s))
        lost = tuple(rng.random() < c.lost_answer_rate for _ in range(c.max_attempts))
        return TxnPlan(delay, fails, tuple(sorted(duplicates)), lost)


class Final(Enum):
    PENDING = "pending"
    ACKNOWLEDGED = "acknowledged"  # a 2xx the operator saw
    REFUSED = "refused"  # a 4xx: the operator stops and reverses the money
    GAVE_UP = "gave_up"  # every attempt failed or timed out
    CANCELLED = "cancelled"  # the simulator was stopped first


@dataclass
class Attempt:
    kind: str  # "callback", "retry" or "duplicate"
    sent_at: float
    answered_at: float | None = None
    status: int | None = None  # the platform's HTTP status, if one came back
    answer: dict[str, object] | None = None
    error: str | None = None  # "timeout", "answer_lost", a connection error name
    seen: bool = False  # the operator saw the answer (not lost, not timed out)


@dataclass
class Txn:
    callback: MoneyCallback
    plan: TxnPlan
    paid_at: float
    attempts: list[Attempt] = field(default_factory=list)
    final: Final = Final.PENDING

    @property
    def txn(self) -> str:
        return self.callback.txn


def retryable(status: int | None) -> bool:
    """Operators retry when they got no answer or a 5xx; anything else is final."""
    return status is None or status >= 500


@dataclass(frozen=True)
class Reply:
    """What came back for one attempt: the HTTP status and the JSON object, if it was one."""

    status: int
    answer: dict[str, object] | None


class NoReply(Exception):
    """An attempt got no answer at all; `reason` is what the operator records ("timeout",
    "refused", a connection error's name). The operator retries on its ladder."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CallbackSender(Protocol):
    """How a signed callback reaches the platform (a socket, or a door on a virtual clock)."""

    async def open(self) -> None: ...

    async def send(self, body: bytes, headers: dict[str, str], timeout_s: float) -> Reply:
        """Deliver one attempt; raise `NoReply` when no answer came back."""
        ...

    async def close(self) -> None: ...


class HttpCallbacks:
    """POSTs callbacks to the platform over real HTTP on 127.0.0.1: agent_client's HTTP/1.1
    client (`Http1Transport`), a pool of up to `connections` kept-alive connections (an
    operator's gateway holds a few; aiohttp's client cost several times the CPU a request)."""

    def __init__(self, url: str, connections: int = 64) -> None:
        if not url.startswith("http://127.0.0.1"):
            raise ValueError("the simulator calls back on 127.0.0.1 only")
        if connections < 1:
            raise ValueError(f"connections must be >= 1, got {connections}")
        parts = urlsplit(url)
        self.url = url
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._path = parts.path or "/"
        self._idle: list[Http1Transport] = []
        self._slots: asyncio.Semaphore | None = None
        self._limit = connections
        self._open = False

    async def open(self) -> None:
        self._slots = asyncio.Semaphore(self._limit)
        self._open = True

    async def send(self, body: bytes, headers: dict[str, str], timeout_s: float) -> Reply:
        if not self._open or self._slots is None:
            raise RuntimeError("start() the simulator first")
        async with self._slots:
            client = self._idle.pop() if self._idle else self._client(timeout_s)
            try:
                async with asyncio.timeout(timeout_s):
                    reply = await client.request(self._path, body, headers)
            except TimeoutError:
                raise NoReply("timeout") from None
            except TransientError as exc:  # the connection failed: no answer
                cause = exc.__cause__
                raise NoReply(type(cause or exc).__name__) from None
            finally:  # a failed exchange closed its connection: the next one opens anew
                self._idle.append(client)
        answer: object = None
        with contextlib.suppress(ValueError):
            answer = json.loads(reply.body)
        return Reply(reply.status, answer if isinstance(answer, dict) else None)

    def _client(self, timeout_s: float) -> Http1Transport:
        timeouts = Timeouts(connect_s=timeout_s, read_s=timeout_s, total_s=timeout_s)
        return Http1Transport(self._origin, timeouts=timeouts, keep_alive_s=KEEP_ALIVE_S)

    async def close(self) -> None:
        self._open = False
        idle, self._idle = self._idle, []
        for client in idle:
            await client.close()


class MnoSimulator:
    def __init__(
        self,
        callbacks: str | CallbackSender,
        secret: bytes,
        config: MnoConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        epoch: float = 0.0,
        prefix: str = "MM",
    ) -> None:
        """`callbacks`: the platform's callback URL (sent over HTTP) or a `CallbackSender`;
        `clock`: seconds on the caller's clock; `epoch`: the Unix time of that clock's zero
        (what a callback's `paid_ms` says; 0 for a clock that reads Unix time)."""
        self.sender = HttpCallbacks(callbacks) if isinstance(callbacks, str) else callbacks
        self.secret = secret
        self.config = config or MnoConfig()
        self.clock = clock
        self.epoch = epoch
        self.prefix = prefix
        self.history: dict[str, Txn] = {}
        self._plan = MnoPlan(self.config)
        self._started = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.sender.open()
        self._started = True

    def pay(self, account: int | str, amount: int, msisdn: str, *, hold_s: float = 0.0) -> str:
        """A customer pays; returns the operator's transaction id. Callbacks follow, `hold_s`
        later than the plan says (an operator having a bad day)."""
        if not self._started:
            raise RuntimeError("start() the simulator first")
        txn_id = f"{self.prefix}{len(self.history) + 1:08d}"
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
        self._spawn(self._deliver(txn, plan.delay_s + hold_s))
        return txn_id

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, txn: Txn, delay_s: float) -> None:
        try:
            await asyncio.sleep(delay_s)
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
            reply = await self.sender.send(body, headers, self.config.timeout_s)
        except NoReply as exc:
            attempt.error = exc.reason
            return attempt
        attempt.status = reply.status
        attempt.answer = reply.answer
        attempt.answered_at = self.clock()
        attempt.seen = not lost
        if lost:
            attempt.error = "answer_lost"
        return attempt

    @property
    def busy(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout_s: float) -> bool:
        """Wait (bounded) until every callback and retry is done; True if all finished."""
        try:
            async with asyncio.timeout(timeout_s):
                while self._tasks:
                    await asyncio.wait(set(self._tasks))
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Drain for up to `timeout_s` (0: not at all), cancel what is left, close the sender."""
        if timeout_s > 0:
            await self.drain(timeout_s)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        await self.sender.close()
        self._started = False
