"""The analytical link model: what a transfer should cost, by formula.

The benchmark, the tests and the lab all report measured times as ratios to these functions, so
there is exactly one formula. Two levels:

- `floor_seconds`: DESIGN.md's physical floor, RTT + bytes_up*8/rate_up + bytes_down*8/rate_down
  (+ one RTT for the handshake on a cold connection). Payload bytes only, no loss, no wake-up.
- `expected_transfer_time`: the expected time of the same exchange on the emulated link: per
  direction the packets' wire bytes (payload + headers) at the rate, half the RTT, and the
  expected retransmission delay (expected lost attempts per packet from the Gilbert-Elliott
  chain, each costing the retransmission delay plus the packet again); plus the wake-up on an
  idle radio and the SYN / SYN-ACK round trip on a cold connection. Outages are not included
  (they are not part of a floor). For a trace-driven direction the trace's mean rate is used, so
  the model is then exact only up to the opportunity spacing.
"""

from __future__ import annotations

import math

from field_lab.link.profiles import Profile


def one_way_time(profile: Profile, direction: str, nbytes: int) -> float:
    """Expected time from writing `nbytes` (one write; 0: a header-only packet) on an idle,
    awake link to its last byte arriving at the far end."""
    if nbytes < 0:
        raise ValueError(f"nbytes must be >= 0, got {nbytes}")
    rate = profile.rate_bps(direction)
    if rate == 0.0:
        return math.inf
    losses = profile.loss.expected_losses_per_packet if profile.loss is not None else 0.0
    total = profile.rtt_s / 2.0
    for size in profile.packet_sizes(nbytes):
        serialise = (size + profile.header_bytes) * 8.0 / rate
        total += serialise + losses * (profile.retransmit_s + serialise)
    return total


def expected_transfer_time(
    profile: Profile, bytes_up: int, bytes_down: int, *, warm: bool = True, awake: bool = True
) -> float:
    """Expected seconds for a request of `bytes_up` answered by `bytes_down` (either may be 0 for
    a one-way transfer), on a warm or cold connection, with an awake or sleeping radio."""
    total = 0.0 if awake else profile.wakeup_s
    if not warm:
        total += one_way_time(profile, "up", 0) + one_way_time(profile, "down", 0)
    if bytes_up:
        total += one_way_time(profile, "up", bytes_up)
    if bytes_down:
        total += one_way_time(profile, "down", bytes_down)
    return total


def floor_seconds(profile: Profile, bytes_up: int, bytes_down: int, warm: bool = True) -> float:
    """DESIGN.md's floor for a sync: RTT + bytes/rate each way (+ a handshake RTT when cold)."""
    if bytes_up < 0 or bytes_down < 0:
        raise ValueError("byte counts must be >= 0")
    up, down = profile.rate_bps("up"), profile.rate_bps("down")
    if up == 0.0 or down == 0.0:
        return math.inf
    rtts = 1 if warm else 2
    return rtts * profile.rtt_s + bytes_up * 8.0 / up + bytes_down * 8.0 / down
