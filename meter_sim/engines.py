"""Per-protocol engines: each pairs a validator with its brute-force guard and NV fields.

The Meter is protocol-agnostic; an engine answers three questions for it: may a frame be
evaluated now, what does this frame do, and what must be persisted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meter_sim.actions import Decision
from meter_sim.credit import Credit
from meter_sim.keypad import NEXUS_FULL, NEXUS_SMALL, OPENPAYGO, OPENPAYGO_RESTRICTED, Keypad
from meter_sim.nexus.full import decide_full
from meter_sim.nexus.policy import NexusPolicy
from meter_sim.nexus.small import decide_small
from meter_sim.nexus.state import NexusState
from meter_sim.nv import Kind, Snapshot, encode_nexus_state, encode_token_state, key_fingerprint
from meter_sim.openpaygo.policy import TokenPolicy
from meter_sim.openpaygo.state import TokenState
from meter_sim.openpaygo.token import process_token
from meter_sim.outcomes import Outcome, PaygState
from meter_sim.ratelimit import EntryBlock, NexusBucket, NexusRateLimit, OpenPaygoBlocking


@dataclass(slots=True)
class NexusEngine:
    secret_key: bytes
    small: bool
    limit: NexusRateLimit | None
    payg_id: str
    policy: NexusPolicy
    state: NexusState
    bucket: NexusBucket
    saved: tuple[NexusState, Credit, int, bytes] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    """The last `nv_state` and what it encoded (a duplicate code changes nothing)."""

    @property
    def kind(self) -> Kind:
        return Kind.NEXUS_SMALL if self.small else Kind.NEXUS_FULL

    @property
    def fingerprint(self) -> int:
        return key_fingerprint(self.secret_key)

    @property
    def keypad(self) -> Keypad:
        return NEXUS_SMALL if self.small else NEXUS_FULL

    def refusal(self, now: float) -> str | None:
        if self.limit is not None and self.bucket.is_limited(self.limit, now):
            wait = self.limit.refill_seconds - self.bucket.level(self.limit, now)
            return f"rate limited: next attempt in {wait:.0f} s"
        return None

    def evaluate(self, frame: str, payg: PaygState, now: float) -> Decision[NexusState]:
        if self.limit is not None:
            self.bucket = self.bucket.spend(self.limit, now)
        if self.small:
            decision = decide_small(frame, self.secret_key, self.state, payg, self.policy)
        else:
            decision = decide_full(
                frame, self.secret_key, self.state, payg, self.payg_id, self.policy
            )
        self.state = decision.state
        return decision

    def persist(self, credit: Credit, now: float) -> Snapshot:
        grace = self.bucket.grace(self.limit, now) if self.limit is not None else 0
        return Snapshot(credit=credit, clock=now, nexus=self.state, grace=grace)

    def nv_state(self, credit: Credit, now: float) -> bytes:
        """`encode_state(self.persist(credit, now))`, without building the snapshot."""
        grace = self.bucket.grace(self.limit, now) if self.limit is not None else 0
        state, saved = self.state, self.saved
        if saved is not None and saved[0] is state and saved[1] is credit and saved[2] == grace:
            return saved[3]
        encoded = encode_nexus_state(state, credit, grace)
        self.saved = (state, credit, grace, encoded)
        return encoded

    def restore(self, snap: Snapshot, now: float) -> None:
        assert snap.nexus is not None
        self.state = snap.nexus
        if self.limit is not None:
            self.bucket = NexusBucket.on_boot(self.limit, snap.grace, now)


@dataclass(slots=True)
class OpenPaygoEngine:
    secret_key: bytes
    starting_code: int
    restricted_digits: bool
    time_divider: int
    initial_count: int
    blocking: OpenPaygoBlocking | None
    policy: TokenPolicy
    state: TokenState
    block: EntryBlock

    @property
    def kind(self) -> Kind:
        return Kind.OPENPAYGO

    @property
    def fingerprint(self) -> int:
        return key_fingerprint(self.secret_key, self.starting_code)

    @property
    def keypad(self) -> Keypad:
        return OPENPAYGO_RESTRICTED if self.restricted_digits else OPENPAYGO

    def refusal(self, now: float) -> str | None:
        if self.blocking is not None and self.block.is_blocked(now):
            wait = self.block.blocked_until - now
            return f"blocked after {self.block.invalid_count} invalid tokens for {wait:.0f} s"
        return None

    def evaluate(self, frame: str, payg: PaygState, now: float) -> Decision[TokenState]:
        decision = process_token(
            frame,
            secret_key=self.secret_key,
            starting_code=self.starting_code,
            state=self.state,
            restricted_digits=self.restricted_digits,
            time_divider=self.time_divider,
            policy=self.policy,
        )
        self.state = decision.state
        if decision.outcome is Outcome.APPLIED:
            self.block = self.block.after_valid()
        elif decision.outcome is Outcome.INVALID and self.blocking is not None:
            self.block = self.block.after_invalid(self.blocking, now)
        return decision

    def persist(self, credit: Credit, now: float) -> Snapshot:
        return Snapshot(credit=credit, clock=now, token=self.state, block=self.block)

    def nv_state(self, credit: Credit, now: float) -> bytes:
        """`encode_state(self.persist(credit, now))`, without building the snapshot."""
        return encode_token_state(self.state, credit, self.block)

    def restore(self, snap: Snapshot, now: float) -> None:
        assert snap.token is not None
        assert snap.block is not None
        self.state = snap.token
        self.block = snap.block


Engine = NexusEngine | OpenPaygoEngine
