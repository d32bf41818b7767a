"""Growing backoff after failed secret attempts (provisioning codes, report tokens).

Pure: the caller passes ``now`` (seconds) and owns the clock. Each key (an agent, a source
address) may fail `free` times; every failure after that blocks the key for a doubling time,
capped. While a key is blocked, attempts are answered "retry after" without being checked, so
guessing costs the guesser time and learns nothing. A success forgets the key, and a key that
stays quiet for `forget_s` starts over. Memory is bounded: the stalest keys go first.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    free: int = 5  # failures allowed before the first block
    first_s: float = 1.0
    cap_s: float = 300.0
    forget_s: float = 3600.0
    max_keys: int = 10_000

    def __post_init__(self) -> None:
        if self.free < 0 or not 0 < self.first_s <= self.cap_s or self.max_keys < 1:
            raise ValueError("need free >= 0, 0 < first_s <= cap_s and max_keys >= 1")


@dataclass
class _State:
    failures: int
    last: float
    until: float


class Throttle:
    def __init__(self, backoff: Backoff | None = None) -> None:
        self.backoff = backoff or Backoff()
        self._keys: OrderedDict[str, _State] = OrderedDict()

    def retry_after(self, key: str, now: float) -> int | None:
        """Whole seconds until `key` may try again, or None when it may try now."""
        state = self._keys.get(key)
        if state is None or now >= state.until:
            return None
        return max(1, math.ceil(state.until - now))

    def failed(self, key: str, now: float) -> int | None:
        """Count a failed attempt; returns the block it starts (seconds), if any."""
        b = self.backoff
        state = self._keys.pop(key, None)
        if state is None or now - state.last > b.forget_s:
            state = _State(0, now, now)
        state.failures += 1
        state.last = now
        over = state.failures - b.free
        block = None
        if over > 0:
            seconds = min(b.cap_s, b.first_s * 2 ** min(over - 1, 62))
            state.until = now + seconds
            block = max(1, math.ceil(seconds))
        self._keys[key] = state
        while len(self._keys) > b.max_keys:
            self._keys.popitem(last=False)
        return block

    def succeeded(self, key: str) -> None:
        self._keys.pop(key, None)

    def __len__(self) -> int:
        return len(self._keys)
