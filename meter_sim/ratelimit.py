"""Brute-force protection: the Nexus token bucket and the OpenPAYGO entry block.

Both are pure values advanced by `now`, and both persist what the references persist so that a
power cycle never hands an attacker fresh attempts.
"""

from __future__ import annotations

from dataclasses import dataclass

from meter_sim.errors import ConfigError


@dataclass(frozen=True, slots=True)
class NexusRateLimit:
    """Nexus keycode rate limit; defaults are the reference firmware's Kconfig defaults."""

    bucket_max: int = 128
    """Most attempts that can be banked."""
    initial_count: int = 6
    """Attempts available at first power-up, and at most after any reboot."""
    refill_seconds: float = 720.0
    """Device seconds to earn one attempt (5 codes an hour sustained)."""

    def __post_init__(self) -> None:
        if not 1 <= self.bucket_max <= 255:
            raise ConfigError(f"bucket_max must be 1..255, got {self.bucket_max}")
        if not 0 <= self.initial_count <= self.bucket_max:
            raise ConfigError(
                f"initial_count must be 0..bucket_max ({self.bucket_max}), got {self.initial_count}"
            )
        if not self.refill_seconds > 0:
            raise ConfigError(f"refill_seconds must be > 0, got {self.refill_seconds}")


@dataclass(frozen=True, slots=True)
class NexusBucket:
    """Bucket level in seconds of credit for attempts, as of device time `at`."""

    seconds: float
    at: float

    @classmethod
    def on_boot(cls, limit: NexusRateLimit, grace: int, now: float) -> NexusBucket:
        return cls(seconds=min(grace, limit.initial_count) * limit.refill_seconds, at=now)

    @classmethod
    def first_power_up(cls, limit: NexusRateLimit, now: float) -> NexusBucket:
        return cls.on_boot(limit, limit.initial_count, now)

    def level(self, limit: NexusRateLimit, now: float) -> float:
        cap = limit.bucket_max * limit.refill_seconds
        return min(cap, self.seconds + max(0.0, now - self.at))

    def attempts(self, limit: NexusRateLimit, now: float) -> int:
        return int(self.level(limit, now) // limit.refill_seconds)

    def is_limited(self, limit: NexusRateLimit, now: float) -> bool:
        return self.attempts(limit, now) < 1

    def spend(self, limit: NexusRateLimit, now: float) -> NexusBucket:
        """Every finished frame costs one attempt, valid or not."""
        return NexusBucket(seconds=self.level(limit, now) - limit.refill_seconds, at=now)

    def grace(self, limit: NexusRateLimit, now: float) -> int:
        """What NV keeps: attempts to grant after a reboot."""
        return min(limit.initial_count, self.attempts(limit, now))


@dataclass(frozen=True, slots=True)
class OpenPaygoBlocking:
    """Entry block after invalid tokens; defaults follow the OpenPAYGO documentation.

    After the n-th consecutive invalid token beyond `free_attempts`, entry is blocked for
    `first_block_seconds * 2**(n-1)`, capped at `max_block_seconds`. Already-used tokens are
    not errors; any valid token clears the count.
    """

    first_block_seconds: float = 60.0
    max_block_seconds: float = 512 * 60.0
    free_attempts: int = 0

    def __post_init__(self) -> None:
        if not self.first_block_seconds > 0:
            raise ConfigError(f"first_block_seconds must be > 0, got {self.first_block_seconds}")
        if not self.max_block_seconds >= self.first_block_seconds:
            raise ConfigError("max_block_seconds must be >= first_block_seconds")
        if not 0 <= self.free_attempts <= 1000:
            raise ConfigError(f"free_attempts must be 0..1000, got {self.free_attempts}")

    def block_seconds(self, invalid_count: int) -> float:
        n = invalid_count - self.free_attempts
        if n <= 0:
            return 0.0
        if n > 40:  # 2**40 minutes is far past any cap; avoid float overflow
            return self.max_block_seconds
        return float(min(self.max_block_seconds, self.first_block_seconds * 2 ** (n - 1)))


@dataclass(frozen=True, slots=True)
class EntryBlock:
    """Consecutive invalid tokens and the device time until which entry is refused."""

    invalid_count: int = 0
    blocked_until: float = 0.0

    def is_blocked(self, now: float) -> bool:
        return now < self.blocked_until

    def after_invalid(self, policy: OpenPaygoBlocking, now: float) -> EntryBlock:
        count = min(self.invalid_count + 1, 0xFFFF)
        return EntryBlock(invalid_count=count, blocked_until=now + policy.block_seconds(count))

    def after_valid(self) -> EntryBlock:
        return EntryBlock()
