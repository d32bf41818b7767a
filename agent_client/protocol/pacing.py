"""How much one exchange may carry: the bytes the measured link moves in a few seconds.

Pure. The sync core reports each finished exchange (uplink body bytes, seconds from send to
answer); `LinkEstimate` keeps the link's round trip (the fastest recent exchange, mostly
latency) and its uplink rate (bytes over the time an exchange took beyond that round trip,
counted only when the transfer is visible above the round trip's noise). The budget is what
moves in `target_s` at that rate, bounded below by `floor_bytes` and above by the body cap: a
backlog goes in one exchange when the link can carry it in a few seconds, rather than in a
count that starts small and doubles (each doubling a round trip: 800 ms on GPRS).

Before any measurement the rate is a prior: a slow GPRS uplink's (8 kbit/s), so the first
budget (4 KB) already carries a few hundred compact operations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PRIOR_RATE_BPS = 1_000.0  # bytes/s: 8 kbit/s, below a typical GPRS uplink (20 kbit/s)
MIN_RATE_BPS = 100.0
MAX_RATE_BPS = 10_000_000.0
VISIBLE = 0.25  # a transfer shorter than this share of the round trip is noise, not a rate
WINDOW = 8


@dataclass(frozen=True)
class Pacing:
    target_s: float = 4.0  # one exchange should take about this long on the measured link
    floor_bytes: int = 4096  # never budget less than this (a failure shrinks the count instead)
    prior_rate_bps: float = PRIOR_RATE_BPS

    def __post_init__(self) -> None:
        if not (self.target_s > 0 and self.floor_bytes > 0):
            raise ValueError("need target_s > 0 and floor_bytes > 0")
        if not MIN_RATE_BPS <= self.prior_rate_bps <= MAX_RATE_BPS:
            raise ValueError(f"prior_rate_bps outside [{MIN_RATE_BPS}, {MAX_RATE_BPS}]")


@dataclass
class LinkEstimate:
    """The handset's view of its link: round trip and uplink rate, from its own exchanges."""

    rate_bps: float = PRIOR_RATE_BPS
    rtt_s: float | None = None
    _elapsed: list[float] = field(default_factory=list)

    def observe(self, up_bytes: int, elapsed_s: float) -> None:
        """One exchange carried `up_bytes` and was answered `elapsed_s` after it was sent."""
        if up_bytes < 0 or not elapsed_s >= 0.0:
            return  # a clock that stepped back says nothing about the link
        self._elapsed = [*self._elapsed[-(WINDOW - 1) :], elapsed_s]
        self.rtt_s = min(self._elapsed)
        transfer = elapsed_s - self.rtt_s
        if up_bytes and transfer > VISIBLE * self.rtt_s and transfer > 0.0:
            sample = min(MAX_RATE_BPS, max(MIN_RATE_BPS, up_bytes / transfer))
            self.rate_bps = (self.rate_bps + sample) / 2
        elif up_bytes and elapsed_s > 0.0:
            # the transfer hid under the round trip: the link moves at least this much
            self.rate_bps = max(self.rate_bps, min(MAX_RATE_BPS, up_bytes / elapsed_s))

    def budget(self, pacing: Pacing, cap: int) -> int:
        """Uplink body bytes for the next exchange."""
        return max(1, min(cap, max(pacing.floor_bytes, int(self.rate_bps * pacing.target_s))))
