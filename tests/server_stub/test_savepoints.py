"""Operations are applied without a savepoint each (two statements saved per operation), since
a refusal normally comes before any write. One that refuses after writing must still leave
nothing of itself: the request is rolled back and run again with savepoints, and the answer
and the database are the same as if it had been careful from the start."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent_client.protocol.auth import Claim, HandsetKey
from agent_client.protocol.frames import Reason
from agent_client.protocol.ops import Kind, Operation
from server_stub.store import Handset, Refused, Store

from .fixtures import seed_platform


class LateRefusal(Store):
    """A rule that refuses a customer named "Late" after writing the customer row."""

    def _apply(self, handset: Handset, op: Operation, now_ms: int) -> None:
        super()._apply(handset, op, now_ms)
        if op.kind is Kind.REGISTER_CUSTOMER and op.field("name") == "Late":
            raise Refused(Reason.BAD_FIELD)


OPS = [
    Operation.make(1, Kind.REGISTER_CUSTOMER, 1, "Esi", "+233200000001"),
    Operation.make(2, Kind.REGISTER_CUSTOMER, 1, "Late", "+233200000002"),
    Operation.make(3, Kind.REGISTER_CUSTOMER, 1, "Kofi", "+233200000003"),
]


@pytest.mark.parametrize("grouped", [False, True])
def test_a_refusal_after_a_write_leaves_nothing_of_it(tmp_path: Path, grouped: bool) -> None:
    path = tmp_path / "s.db"
    seeded = seed_platform(path)
    setup = Store.open(path)
    handset = setup.provision("ama", seeded.agents["ama"][1], HandsetKey.generate().public, 1)
    setup.close()
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    store = LateRefusal(db)
    try:
        if grouped:
            with store.group():
                reply = store.exchange(Claim(handset, 5, b""), OPS, 0, 10)
        else:
            reply = store.exchange(Claim(handset, 5, b""), OPS, 0, 10)
        names = [n for (n,) in db.execute("SELECT name FROM customers ORDER BY seq")]
        outcomes = list(db.execute("SELECT seq, outcome FROM ops ORDER BY seq"))
        last_ms = db.execute(
            "SELECT last_ms FROM handsets WHERE handset = ?", (handset,)
        ).fetchone()
    finally:
        store.close()
    assert reply.acked == (1, 3)
    assert reply.rejected == ((2, Reason.BAD_FIELD),)
    assert names == ["Esi", "Kofi"]  # the late refusal's row is gone, the others stay
    assert outcomes == [(1, 0), (2, int(Reason.BAD_FIELD)), (3, 0)]
    assert last_ms == (5,)  # the request counted once
