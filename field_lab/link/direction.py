"""One direction of a radio link: a FIFO bottleneck in virtual time, counting bytes only.

Theory of operation. `send(now, stream, nbytes)` turns bytes into packets of at most one MSS and
schedules each packet at once (eagerly), so the caller gets the delivery schedule back:

    start   = max(now, end of the previous packet), pushed back by the radio's wake-up
    attempt = serialisation at the profile's rate (or on the trace's delivery opportunities),
              paused during outages; each lost attempt (Gilbert-Elliott) is followed by the
              retransmission delay and another attempt, and the link serves nothing else
              meanwhile, which is how ARQ and TCP turn loss into a delay spike
    deliver = max(previous delivery, end of the successful attempt + one-way delay ± jitter)

Delivery is in order, as RLC/TCP deliver it. Bytes not yet serialised occupy the bounded queue;
a caller must not send more than `space(now)` (the shells hold the rest back, like a full
socket buffer). Nothing here reads a clock or sleeps: `now` is always a parameter.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass

from field_lab.link.errors import UsageError
from field_lab.link.loss import LossChain
from field_lab.link.outages import OutageSchedule
from field_lab.link.profiles import Profile
from field_lab.link.trace import OPPORTUNITY_BYTES, OpportunityCursor


@dataclass(frozen=True, slots=True)
class Delivery:
    """`nbytes` of `stream` arrive at the far end at `at` (header-only packets have 0 bytes)."""

    at: float
    stream: int
    nbytes: int


@dataclass(slots=True)
class _Packet:
    stream: int
    payload: int
    ready: float
    losses: int
    finish: float = 0.0
    deliver: float = 0.0


@dataclass(slots=True)
class DirectionStats:
    packets: int = 0
    payload_bytes: int = 0
    wire_bytes: int = 0
    lost_attempts: int = 0
    retransmit_delay_s: float = 0.0  # time spent on lost attempts and their waits
    dropped_packets: int = 0


class Radio:
    """The handset's radio, shared by both directions: it sleeps after `idle_s` without traffic
    and the first packet after that waits `wakeup_s` (TBF / RRC setup)."""

    __slots__ = ("_active_until", "_awake_from", "idle_s", "wakeup_s", "wakeups")

    def __init__(self, profile: Profile, epoch: float) -> None:
        self.idle_s = profile.idle_s
        self.wakeup_s = profile.wakeup_s
        self._active_until = -math.inf  # asleep at the start: the first packet pays the wake-up
        self._awake_from = epoch
        self.wakeups = 0

    def start(self, t: float) -> float:
        """When a packet that could start at `t` really starts."""
        if t > self._active_until + self.idle_s:
            self._awake_from = t + self.wakeup_s
            self._active_until = self._awake_from
            self.wakeups += 1
        return max(t, self._awake_from)

    def busy_until(self, t: float) -> None:
        self._active_until = max(self._active_until, t)

    def retune(self, profile: Profile) -> None:
        """Take the idle timer and wake-up cost of another profile."""
        self.idle_s = profile.idle_s
        self.wakeup_s = profile.wakeup_s

    def settle(self, now: float) -> None:
        """Forget activity planned after `now` (its packets are about to be re-timed)."""
        self._active_until = min(self._active_until, now)


class Direction:
    """One way ("up" or "down") of a link; see the module docstring."""

    def __init__(
        self,
        profile: Profile,
        name: str,
        radio: Radio,
        outages: OutageSchedule,
        rng: random.Random,
        epoch: float,
    ) -> None:
        if name not in ("up", "down"):
            raise UsageError(f"direction must be 'up' or 'down', got {name!r}")
        self.profile = profile
        self.name = name
        self.stats = DirectionStats()
        self._radio = radio
        self._outages = outages
        self._rng = rng
        self._epoch = epoch
        self._take(profile)
        self._queue: deque[_Packet] = deque()  # scheduled, not yet delivered, in order
        self._busy_until = -math.inf
        self._last_deliver = -math.inf
        self._now = -math.inf

    def _take(self, profile: Profile) -> None:
        """Everything this direction derives from its profile."""
        name = self.name
        self.profile = profile
        self._chain = LossChain(profile.loss, self._rng)
        rate = profile.up_bps if name == "up" else profile.down_bps
        self._seconds_per_byte = 8.0 / rate if rate > 0.0 else math.inf
        mean_rate = profile.rate_bps(name)  # the trace's mean rate for a trace-driven direction
        self._mean_seconds_per_byte = 8.0 / mean_rate if mean_rate > 0.0 else math.inf
        trace = profile.trace(name)
        self._cursor = OpportunityCursor(trace) if trace is not None else None
        self._leftover = 0  # unused bytes of the cursor's current opportunity
        self._owd = profile.rtt_s / 2.0

    # -- time ------------------------------------------------------------------------------
    def _advance(self, now: float) -> None:
        if now < self._now:
            raise UsageError(f"time went backwards on the {self.name}link: {now} < {self._now}")
        self._now = now

    def _transmit(self, t: float, wire: int) -> float:
        """End of one attempt of `wire` bytes that may start at `t` (link time, absolute)."""
        if self._cursor is None:
            rel = self._outages.up_time_end(t - self._epoch, wire * self._seconds_per_byte)
            return rel + self._epoch
        return self._transmit_on_trace(t, wire)

    def _transmit_on_trace(self, t: float, wire: int) -> float:
        cursor = self._cursor
        assert cursor is not None
        remaining = max(wire, 1)  # a header-less empty packet still needs an opportunity
        current = cursor.current()
        end = t
        if self._leftover and current is not None and current + self._epoch >= t:
            used = min(remaining, self._leftover)
            self._leftover -= used
            remaining -= used
            end = current + self._epoch
        while remaining > 0:
            at = cursor.advance_to(end - self._epoch)
            up = self._outages.next_up(at)
            while up > at:  # opportunities inside an outage are lost
                if math.isinf(up):
                    return math.inf
                at = cursor.advance_to(up)
                up = self._outages.next_up(at)
            used = min(remaining, OPPORTUNITY_BYTES)
            remaining -= used
            self._leftover = OPPORTUNITY_BYTES - used
            end = at + self._epoch
        return end

    def _schedule(self, packet: _Packet) -> None:
        t = self._radio.start(max(packet.ready, self._busy_until))
        wire = packet.payload + self.profile.header_bytes
        for attempt in range(packet.losses + 1):
            if attempt:
                t += self.profile.retransmit_s
            t = self._transmit(t, wire)
        packet.finish = t
        self._busy_until = t
        self._radio.busy_until(t)
        jitter = self.profile.jitter_s
        owd = self._owd + (self._rng.uniform(-jitter / 2.0, jitter / 2.0) if jitter else 0.0)
        packet.deliver = max(self._last_deliver, t + owd)
        self._last_deliver = packet.deliver

    # -- the sans-I/O interface ------------------------------------------------------------
    def earliest(self, t: float) -> float:
        """`t`, or the latest time this direction has already been given if that is later:
        reactions to an arrival happen at the arrival, not at the (later) poll."""
        return max(t, self._now)

    def space(self, now: float) -> int:
        """Bytes the queue can take at `now` (payload of packets not yet fully serialised)."""
        self._advance(now)
        queued = sum(p.payload for p in self._queue if p.finish > now)
        return max(0, self.profile.queue_bytes - queued)

    def send(self, now: float, stream: int, nbytes: int) -> tuple[Delivery, ...]:
        """Queue `nbytes` of `stream` (0: one header-only packet such as SYN or FIN).

        Raises UsageError if `nbytes` is negative or more than `space(now)`.
        """
        queued = len(self._queue)
        self.enqueue(now, stream, nbytes)
        return tuple(Delivery(p.deliver, stream, p.payload) for p in list(self._queue)[queued:])

    def enqueue(self, now: float, stream: int, nbytes: int) -> None:
        """`send` without the schedule handed back (the link's own packets: no object each)."""
        if nbytes < 0:
            raise UsageError(f"nbytes must be >= 0, got {nbytes}")
        if nbytes and nbytes > self.space(now):
            raise UsageError(f"{nbytes} bytes do not fit the queue ({self.space(now)} free)")
        self._advance(now)
        profile, stats = self.profile, self.stats
        header = profile.header_bytes
        for size in profile.packet_sizes(nbytes):
            packet = _Packet(stream, size, now, self._chain.losses_before_success())
            self._schedule(packet)
            self._queue.append(packet)
            stats.packets += 1
            stats.payload_bytes += size
            losses = packet.losses
            stats.wire_bytes += (size + header) * (losses + 1)
            if losses:
                stats.lost_attempts += losses
                serialise = (size + header) * self._mean_seconds_per_byte
                stats.retransmit_delay_s += losses * (profile.retransmit_s + serialise)

    def deliverable(self, now: float) -> list[Delivery]:
        """Pop, in order, every packet that has arrived by `now`."""
        return [Delivery(at, stream, nbytes) for at, stream, nbytes in self.arrived(now)]

    def arrived(self, now: float) -> list[tuple[float, int, int]]:
        """`deliverable` as (at, stream, nbytes) tuples (the link's own use: per packet)."""
        out: list[tuple[float, int, int]] = []
        queue = self._queue
        while queue and queue[0].deliver <= now:
            packet = queue.popleft()
            out.append((packet.deliver, packet.stream, packet.payload))
        return out

    def next_delivery_time(self) -> float | None:
        return self._queue[0].deliver if self._queue else None

    def next_space_time(self, now: float) -> float | None:
        """When the next queued packet finishes serialising (frees queue space), if any."""
        for packet in self._queue:
            if packet.finish > now:
                return packet.finish
        return None

    def busy(self, now: float) -> bool:
        """Whether a packet is still being serialised at `now` (Nagle holds small writes)."""
        return self._busy_until > now

    def drop_streams(self, now: float, streams: set[int]) -> int:
        """Forget every packet of `streams` (a connection reset); later packets move up."""
        kept: deque[_Packet] = deque()
        dropped = 0
        for packet in self._queue:
            if packet.stream in streams:
                dropped += 1
            else:
                kept.append(packet)
        if not dropped:
            return 0
        self.stats.dropped_packets += dropped
        self._queue = kept
        self.retime(now)
        return dropped

    def retime(self, now: float, *, keep_progress: bool = False) -> None:
        """Schedule again every packet not yet fully serialised at `now`, because the outages
        or the profile changed under them; packets serialised by then keep their delivery.
        `keep_progress`: the outages changed only from `now` on, so a packet keeps the start
        it had and serialisation pauses and resumes around them (as for a planned outage);
        otherwise none starts before `now`."""
        done = [p for p in self._queue if p.finish <= now]
        pending = [p for p in self._queue if p.finish > now]
        floor = -math.inf if keep_progress else now
        self._busy_until = max((p.finish for p in done), default=floor)
        self._last_deliver = max((p.deliver for p in done), default=-math.inf)
        for packet in pending:
            if not keep_progress:
                packet.ready = max(packet.ready, now)
            self._schedule(packet)

    def retune(self, now: float, profile: Profile) -> None:
        """Behave as `profile` from `now` on: rate, delay, jitter, loss, trace and MTU of later
        packets; queued packets start again from `now` (each keeps the lost attempts it drew)."""
        self._take(profile)
        self.retime(now)
