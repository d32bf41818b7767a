"""The sync core against a model server over a hostile network.

The network may lose requests, lose responses, deliver a request twice, or deliver an answer
late (after the client gave up and moved on: reordering). The server model dedups on (handset,
seq) and refuses "poison" operations. Invariants: the server applies each key at most once, the
client never believes an op was applied that was not, and after the link heals every op ends
acknowledged or rejected and every downlink entry arrives exactly once, in order.
"""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agent_client.protocol.errors import UsageError
from agent_client.protocol.frames import (
    DownlinkFrame,
    Payment,
    Reason,
    decode_uplink,
    encode_downlink,
)
from agent_client.protocol.ops import Kind, Operation
from agent_client.protocol.sync import Request, State, SyncConfig, SyncCore

HANDSET = 7
ENTRIES_PER_FRAME = 3


class ModelServer:
    def __init__(self) -> None:
        self.digests: dict[int, bytes] = {}
        self.applied = Counter[int]()
        self.rejected: dict[int, Reason] = {}
        self.poison: set[int] = set()
        self.entries: list[Payment] = []

    def handle(self, body: bytes) -> bytes:
        frame = decode_uplink(body)
        assert frame.handset == HANDSET
        acked, rejected = [], []
        for op in frame.ops:
            if op.seq in self.digests:
                if self.digests[op.seq] != op.digest():
                    rejected.append((op.seq, Reason.CONFLICT))
                elif op.seq in self.rejected:
                    rejected.append((op.seq, self.rejected[op.seq]))
                else:
                    acked.append(op.seq)
                continue
            self.digests[op.seq] = op.digest()
            if op.seq in self.poison:
                self.rejected[op.seq] = Reason.NOT_IN_STOCK
                rejected.append((op.seq, Reason.NOT_IN_STOCK))
            else:
                self.applied[op.seq] += 1
                acked.append(op.seq)
        start = frame.cursor + 1
        page = self.entries[frame.cursor : frame.cursor + ENTRIES_PER_FRAME]
        more = frame.cursor + len(page) < len(self.entries)
        reply = DownlinkFrame(1, tuple(acked), tuple(rejected), start, tuple(page), more)
        return encode_downlink(reply)


class SyncModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        config = SyncConfig(initial_batch=2, max_batch=8, backoff_base_s=1, backoff_cap_s=8)
        self.core = SyncCore(HANDSET, 0, config, random.Random(1))
        self.server = ModelServer()
        self.ops: dict[int, Operation] = {}
        self.state: dict[int, str] = {}  # pending / acked / rejected
        self.reasons: dict[int, Reason] = {}
        self.inbox: list[tuple[int, Payment]] = []
        self.flight: Request | None = None
        self.late: list[tuple[Request, bytes]] = []
        self.now = 0.0

    # -- the handset side ----------------------------------------------------------------------

    def sendable(self) -> list[Operation]:
        return [self.ops[s] for s, state in self.state.items() if state == "pending"]

    def apply(self, request: Request, body: bytes) -> None:
        result = self.core.receive(request, body)
        for seq in result.acked:
            assert self.state[seq] != "rejected"
            self.state[seq] = "acked"
        for seq, reason in result.rejected:
            assert self.state[seq] != "acked"
            self.state[seq], self.reasons[seq] = "rejected", reason
        for n, entry in result.entries:
            assert isinstance(entry, Payment)
            self.inbox.append((n, entry))

    @rule(poison=st.booleans(), amount=st.integers(1, 10**6))
    def enqueue(self, poison: bool, amount: int) -> None:
        seq = len(self.ops) + 1
        self.ops[seq] = Operation.make(seq, Kind.RECORD_PAYMENT, 100 + seq, 5, amount)
        self.state[seq] = "pending"
        if poison:
            self.server.poison.add(seq)

    @rule(amount=st.integers(1, 10**6))
    def server_confirms_a_payment(self, amount: int) -> None:
        self.server.entries.append(Payment(5, amount, f"MM{len(self.server.entries)}"))

    @precondition(lambda self: self.flight is None)
    @rule()
    def start(self) -> None:
        if not self.core.ready(self.now):
            try:
                self.core.start(self.sendable(), self.now)
            except UsageError:
                return
            raise AssertionError("started while backing off")
        self.flight = self.core.start(self.sendable(), self.now)

    @precondition(lambda self: self.flight is not None)
    @rule(fate=st.sampled_from(["ok", "lost_request", "lost_response", "twice", "late"]))
    def deliver(self, fate: str) -> None:
        request, self.flight = self.flight, None
        assert request is not None
        if fate == "lost_request":
            self.core.fail(request, self.now)
            return
        body = self.server.handle(request.body)
        if fate == "twice":
            body = self.server.handle(request.body)
        if fate in ("ok", "twice"):
            self.apply(request, body)
        else:
            self.core.fail(request, self.now)
            if fate == "late":
                self.late.append((request, body))

    @precondition(lambda self: self.late)
    @rule(index=st.integers(0, 10))
    def late_answer_arrives(self, index: int) -> None:
        request, body = self.late.pop(index % len(self.late))
        self.apply(request, body)

    @rule(seconds=st.floats(0, 20))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def applied_at_most_once(self) -> None:
        assert all(count == 1 for count in self.server.applied.values())

    @invariant()
    def client_beliefs_match_server_facts(self) -> None:
        for seq, state in self.state.items():
            if state == "acked":
                assert self.server.applied[seq] == 1
            if state == "rejected":
                assert self.server.rejected[seq] == self.reasons[seq]

    @invariant()
    def inbox_is_an_ordered_prefix(self) -> None:
        assert [n for n, _ in self.inbox] == list(range(1, len(self.inbox) + 1))
        assert [e for _, e in self.inbox] == self.server.entries[: len(self.inbox)]
        assert self.core.cursor == len(self.inbox)

    def teardown(self) -> None:
        """Heal the link: a bounded number of clean exchanges must settle everything."""
        if self.flight is not None:
            self.core.fail(self.flight, self.now)
        for _ in range(200):
            if not self.sendable() and self.core.cursor == len(self.server.entries):
                break
            self.now = max(self.now, self.core.retry_at)
            request = self.core.start(self.sendable(), self.now)
            self.apply(request, self.server.handle(request.body))
            assert self.core.state is State.IDLE
        assert not self.sendable()
        assert {s for s, st_ in self.state.items() if st_ == "acked"} == set(self.server.applied)
        assert {s for s, st_ in self.state.items() if st_ == "rejected"} == self.server.poison
        assert [e for _, e in self.inbox] == self.server.entries


TestSyncModel = SyncModel.TestCase
# Bugs here need a few rare steps in a row (entry, late answer, fresh answer); give it room.
TestSyncModel.settings = settings(
    settings.default, max_examples=max(400, settings.default.max_examples)
)
