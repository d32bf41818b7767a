"""The sync state machine: which operations go in the next exchange, and what an answer means.

Pure and synchronous. The shell hands it the outbox's sendable operations and ``now``; it returns
a `Request` (body bytes plus the seqs it carries); the shell reports back either the response body
(`receive`) or a transient failure (`fail`). Transitions are the table below; a response or
failure for a request that is no longer current (a late answer after a timeout) still yields its
facts (acks, rejections, entries) but moves neither the state nor the batch size.

An exchange carries what the measured link moves in a few seconds (`pacing`: bytes and time,
bounded by the body cap), so a backlog of hundreds goes in one round trip. A count cap backs that
up as TCP's window does on loss: halved after a failed exchange, doubled back (up to its maximum,
where it starts) after good ones. Failures schedule the next attempt with capped exponential
backoff and jitter.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from .errors import UsageError
from .frames import (
    MAX_OPS,
    DownlinkFrame,
    Entry,
    Reason,
    UplinkFrame,
    decode_downlink,
    encode_uplink,
)
from .ops import Operation
from .pacing import LinkEstimate, Pacing


class State(Enum):
    IDLE = "idle"
    SENDING = "sending"
    BACKOFF = "backoff"


class Input(Enum):
    START = "start"
    RESPONSE = "response"
    FAILURE = "failure"


TRANSITIONS: dict[tuple[State, Input], State] = {
    (State.IDLE, Input.START): State.SENDING,
    (State.BACKOFF, Input.START): State.SENDING,
    (State.SENDING, Input.RESPONSE): State.IDLE,
    (State.SENDING, Input.FAILURE): State.BACKOFF,
}


@dataclass(frozen=True)
class SyncConfig:
    initial_batch: int = 512
    min_batch: int = 1
    max_batch: int = 512
    max_body: int = 48 * 1024  # the body cap: well under a minute of GPRS uplink
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 300.0
    pacing: Pacing = field(default_factory=Pacing)

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.initial_batch <= self.max_batch <= MAX_OPS:
            raise ValueError("need 1 <= min_batch <= initial_batch <= max_batch <= MAX_OPS")
        if not 0 < self.backoff_base_s <= self.backoff_cap_s:
            raise ValueError("need 0 < backoff_base_s <= backoff_cap_s")


@dataclass(frozen=True)
class Request:
    number: int
    body: bytes
    seqs: tuple[int, ...]
    started: float = 0.0  # when it was sent (the shell's clock)
    size: int = 0  # uplink body bytes (for the link estimate; 0: unknown)


@dataclass(frozen=True)
class Result:
    """What one downlink frame means for the handset's stores."""

    acked: tuple[int, ...]
    rejected: tuple[tuple[int, Reason], ...]
    entries: tuple[tuple[int, Entry], ...]  # (entry number, entry), only ones past our cursor
    cursor: int
    more: bool  # the server has more downlink entries: sync again
    server_ms: int
    current: bool  # it answered the request in flight (not a late answer)


class SyncCore:
    def __init__(
        self,
        handset: int,
        cursor: int = 0,
        config: SyncConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.handset = handset
        self.cursor = cursor
        self.config = config or SyncConfig()
        self.batch_size = self.config.initial_batch
        self.state = State.IDLE
        self.failures = 0
        self.retry_at = 0.0
        self._rng = rng or random.Random()
        self._number = 0
        self._current: Request | None = None
        self.link = LinkEstimate(self.config.pacing.prior_rate_bps)

    def _move(self, event: Input) -> None:
        try:
            self.state = TRANSITIONS[self.state, event]
        except KeyError:
            raise UsageError(f"{event.value} is not allowed while {self.state.value}") from None

    def ready(self, now: float) -> bool:
        return self.state is State.IDLE or (self.state is State.BACKOFF and now >= self.retry_at)

    @property
    def budget(self) -> int:
        """Uplink body bytes the next exchange may carry (measured link, body cap)."""
        return self.link.budget(self.config.pacing, self.config.max_body)

    def fit(self, sendable: Sequence[Operation]) -> tuple[tuple[Operation, ...], bytes]:
        """The next batch: the longest seq-ordered prefix of `sendable`, at most `batch_size`
        operations, whose body fits the budget (at least one operation), and that body."""
        ops = tuple(sorted(sendable, key=lambda op: op.seq)[: self.batch_size])
        budget = self.budget

        def body(n: int) -> bytes:
            return encode_uplink(UplinkFrame(self.handset, self.cursor, ops[:n]))

        whole = body(len(ops))
        if len(whole) <= budget or len(ops) <= 1:
            return ops, whole
        low, high = 1, len(ops) - 1  # body(low) is taken whatever its size; body(high+1) is over
        while low < high:
            mid = (low + high + 1) // 2
            if len(body(mid)) <= budget:
                low = mid
            else:
                high = mid - 1
        return ops[:low], body(low)

    def start(self, sendable: Sequence[Operation], now: float) -> Request:
        """Freeze the next batch (`fit`) into a body."""
        self._check_ready(now)
        ops, body = self.fit(sendable)
        return self._begin(body, tuple(op.seq for op in ops), now, len(body))

    def begin(self, seqs: Sequence[int], now: float, size: int = 0) -> Request:
        """Start an exchange whose body an adapter makes (`agent_client.adapters`): the core
        paces it (batch size, backoff, the link estimate from `size`) without knowing its wire
        format."""
        self._check_ready(now)
        return self._begin(b"", tuple(seqs), now, size)

    def _check_ready(self, now: float) -> None:
        if self.state is State.BACKOFF and now < self.retry_at:
            raise UsageError(f"backing off until {self.retry_at:.3f}, now {now:.3f}")

    def _begin(self, body: bytes, seqs: tuple[int, ...], now: float, size: int) -> Request:
        self._move(Input.START)
        self._number += 1
        self._current = Request(self._number, body, seqs, now, size)
        return self._current

    def answered(self, request: Request, cursor: int, elapsed_s: float | None = None) -> bool:
        """The platform answered `request` (through an adapter) `elapsed_s` after it went out,
        and the handset has taken its entries up to `cursor`; returns whether it was the
        current request."""
        current = self._settle(request, elapsed_s)
        self.cursor = max(self.cursor, cursor)
        return current

    def _settle(self, request: Request, elapsed_s: float | None) -> bool:
        current = request is self._current and self.state is State.SENDING
        if current:
            if elapsed_s is not None:
                self.link.observe(request.size, elapsed_s)
            self._move(Input.RESPONSE)
            self._current = None
            self.failures = 0
            self.batch_size = min(self.config.max_batch, self.batch_size * 2)
        return current

    def receive(self, request: Request, body: bytes, now: float | None = None) -> Result:
        """Interpret a response body (received at `now`, for the link estimate); FrameError
        propagates (the shell then calls `fail`)."""
        frame = decode_downlink(body)
        current = self._settle(request, None if now is None else now - request.started)
        return Result(
            frame.acked,
            frame.rejected,
            self._take_entries(frame),
            self.cursor,
            frame.more,
            frame.server_ms,
            current,
        )

    def _take_entries(self, frame: DownlinkFrame) -> tuple[tuple[int, Entry], ...]:
        fresh, self.cursor = fresh_entries(frame, self.cursor)
        return fresh

    def fail(self, request: Request, now: float) -> float:
        """A transient failure of `request`; returns when the next attempt may start."""
        if request is self._current and self.state is State.SENDING:
            self._move(Input.FAILURE)
            self._current = None
            self.failures += 1
            self.batch_size = max(self.config.min_batch, self.batch_size // 2)
            ceiling = min(
                self.config.backoff_cap_s,
                self.config.backoff_base_s * 2 ** min(self.failures - 1, 32),
            )
            self.retry_at = now + ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        return self.retry_at


def fresh_entries(frame: DownlinkFrame, cursor: int) -> tuple[tuple[tuple[int, Entry], ...], int]:
    """The entries of `frame` past `cursor`, numbered, and the cursor after taking them. A gap
    (the page starts beyond cursor + 1) takes nothing: entries are never skipped."""
    if frame.first_entry > cursor + 1:
        return (), cursor
    fresh = tuple(
        (n, entry) for n, entry in enumerate(frame.entries, start=frame.first_entry) if n > cursor
    )
    return fresh, max(cursor, frame.last_entry)
