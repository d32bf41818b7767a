"""The sync core against a server over a hostile network: a dict model, and the real store.

The network may lose requests, lose responses, deliver a request twice, or deliver an answer
late (after the client gave up and moved on: reordering). The model server dedups on (handset,
seq) and refuses "poison" operations; the second machine runs the same rules against
server_stub's SQLite store. Invariants: the server applies each key at most once, the client
never believes an op was applied that was not, and after the link heals every op ends
acknowledged or rejected and every downlink entry arrives exactly once, in order.
"""

from __future__ import annotations

import random
import tempfile
from collections import Counter
from pathlib import Path

import msgpack
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agent_client.protocol.auth import Claim, HandsetKey
from agent_client.protocol.errors import UsageError
from agent_client.protocol.frames import (
    DownlinkFrame,
    Entry,
    Payment,
    Reason,
    decode_uplink,
    encode_downlink,
    entry_from_row,
)
from agent_client.protocol.keycodes import KeycodeFormat
from agent_client.protocol.ops import Kind, Operation
from agent_client.protocol.pacing import Pacing
from agent_client.protocol.sync import Request, State, SyncConfig, SyncCore
from server_stub.keycodes import DeviceSecret
from server_stub.store import DeviceRecord, Store
from tests.server_stub.fixtures import PRICE_PER_DAY, seed_platform

HANDSET = 7
ENTRIES_PER_FRAME = 3


class ModelServer:
    handset = HANDSET

    def __init__(self) -> None:
        self.digests: dict[int, bytes] = {}
        self.applied = Counter[int]()
        self.rejected: dict[int, Reason] = {}
        self.poison: set[int] = set()
        self.entries: list[Entry] = []

    def make_op(self, seq: int, amount: int, poison: bool) -> Operation:
        if poison:
            self.poison.add(seq)
        return Operation.make(seq, Kind.RECORD_PAYMENT, 100 + seq, 5, amount)

    def add_entry(self, amount: int) -> None:
        self.entries.append(Payment(5, amount, f"MM{len(self.entries)}"))

    def check(self) -> None:
        pass

    def close(self) -> None:
        pass

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


class RealServer:
    """server_stub's Store on a temp file: payments on a device another handset sold; poison
    ops pay an account nobody sold; new entries are devices joining the agent's stock."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory()
        path = Path(self._tmp.name) / "s.db"
        seeded = seed_platform(path, agents=("ama",), per_format=1)
        self.store = Store.open(path)
        seller = self.store.provision("ama", "code-ama-7f3a9c", HandsetKey.generate().public, 1)
        self.handset = self.store.provision(
            "ama", "code-ama-7f3a9c", HandsetKey.generate().public, 1
        )
        self.device = seeded.stock["ama"][0]
        sale = [
            Operation.make(1, Kind.REGISTER_CUSTOMER, 1, "Esi", "+233200000001"),
            Operation.make(2, Kind.RECORD_SALE, 1, 1, self.device, seeded.plan, PRICE_PER_DAY),
        ]
        self.store.exchange(Claim(seller, 1, b""), sale, 0, 1)
        self.poison: set[int] = set()
        self.ts = 1
        self.serial = 50_000_000

    def make_op(self, seq: int, amount: int, poison: bool) -> Operation:
        if poison:
            self.poison.add(seq)
        account = 999 if poison else self.device
        price = PRICE_PER_DAY * (1 + amount % 5)  # whole days: one keycode per payment
        return Operation.make(seq, Kind.RECORD_PAYMENT, 100 + seq, account, price)

    def handle(self, body: bytes) -> bytes:
        frame = decode_uplink(body)
        self.ts += 1
        reply = self.store.exchange(Claim(self.handset, self.ts, b""), frame.ops, frame.cursor, 1)
        return encode_downlink(reply)

    def add_entry(self, amount: int) -> None:
        self.serial += 1
        secret = DeviceSecret(KeycodeFormat.NEXUS_FULL, bytes(16))
        self.store.add_devices(self.store.agent_id("ama"), [DeviceRecord(self.serial, secret)])

    def _rows(self, sql: str) -> list[tuple[int, ...]]:
        return list(self.store.db.execute(sql, (self.handset,)).fetchall())

    @property
    def entries(self) -> list[Entry]:
        rows = self._rows("SELECT body FROM downlink WHERE handset = ? ORDER BY n")
        return [entry_from_row(msgpack.unpackb(body)) for (body,) in rows]

    @property
    def applied(self) -> Counter[int]:
        return Counter(
            s for (s,) in self._rows("SELECT seq FROM ops WHERE handset = ? AND outcome = 0")
        )

    @property
    def rejected(self) -> dict[int, Reason]:
        rows = self._rows("SELECT seq, outcome FROM ops WHERE handset = ? AND outcome != 0")
        return {seq: Reason(outcome) for seq, outcome in rows}

    def check(self) -> None:
        """Each applied payment issued exactly one keycode: none applied twice."""
        (issued,) = self._rows("SELECT count(*) FROM keycodes WHERE handset = ?")[0]
        assert issued == sum(self.applied.values())

    def close(self) -> None:
        self.store.close()
        self._tmp.cleanup()


class SyncModel(RuleBasedStateMachine):
    server_factory: type[ModelServer] | type[RealServer] = ModelServer

    def __init__(self) -> None:
        super().__init__()
        config = SyncConfig(
            initial_batch=2,
            max_batch=8,
            backoff_base_s=1,
            backoff_cap_s=8,
            pacing=Pacing(target_s=0.05, floor_bytes=40),  # small budgets: the byte fit matters
        )
        self.server = self.server_factory()
        self.core = SyncCore(self.server.handset, 0, config, random.Random(1))
        self.ops: dict[int, Operation] = {}
        self.state: dict[int, str] = {}  # pending / acked / rejected
        self.reasons: dict[int, Reason] = {}
        self.inbox: list[tuple[int, Entry]] = []
        self.flight: Request | None = None
        self.late: list[tuple[Request, bytes]] = []
        self.now = 0.0

    # -- the handset side ----------------------------------------------------------------------

    def sendable(self) -> list[Operation]:
        return [self.ops[s] for s, state in self.state.items() if state == "pending"]

    def apply(self, request: Request, body: bytes) -> None:
        result = self.core.receive(request, body, self.now)
        for seq in result.acked:
            assert self.state[seq] != "rejected"
            self.state[seq] = "acked"
        for seq, reason in result.rejected:
            assert self.state[seq] != "acked"
            self.state[seq], self.reasons[seq] = "rejected", reason
        self.inbox += result.entries

    @rule(poison=st.booleans(), amount=st.integers(1, 10**6))
    def enqueue(self, poison: bool, amount: int) -> None:
        seq = len(self.ops) + 1
        self.ops[seq] = self.server.make_op(seq, amount, poison)
        self.state[seq] = "pending"

    @rule(amount=st.integers(1, 10**6))
    def server_confirms_a_payment(self, amount: int) -> None:
        self.server.add_entry(amount)

    @precondition(lambda self: self.flight is None)
    @rule()
    def start(self) -> None:
        if not self.core.ready(self.now):
            try:
                self.core.start(self.sendable(), self.now)
            except UsageError:
                return
            raise AssertionError("started while backing off")
        budget, cap = self.core.budget, self.core.batch_size
        self.flight = self.core.start(self.sendable(), self.now)
        sent = self.flight.seqs
        assert (
            list(sent) == sorted(s for s, st in self.state.items() if st == "pending")[: len(sent)]
        )
        assert len(sent) <= cap
        assert len(self.flight.body) <= budget or len(sent) <= 1

    @precondition(lambda self: self.flight is not None)
    @rule(
        fate=st.sampled_from(["ok", "lost_request", "lost_response", "twice", "late"]),
        took=st.floats(0, 5),
    )
    def deliver(self, fate: str, took: float) -> None:
        self.now += took
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
        self.server.check()

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
        try:
            self.settle()
        finally:
            self.server.close()

    def settle(self) -> None:
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


class SyncRealStore(SyncModel):
    server_factory = RealServer


TestSyncRealStore = SyncRealStore.TestCase
TestSyncRealStore.settings = settings(
    settings.default,
    max_examples=min(40, settings.default.max_examples),
    stateful_step_count=30,
    suppress_health_check=[HealthCheck.too_slow],
)
