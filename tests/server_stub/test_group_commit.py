"""Group commit on the real store: exchanges that waited together are committed by one commit
before any of them is answered, answered together on the event loop, and one that fails
after writing leaves nothing of itself and loses none of the others."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from functools import partial
from pathlib import Path

import pytest

from agent_client.protocol.auth import Claim, HandsetKey
from agent_client.protocol.frames import DownlinkFrame
from agent_client.protocol.ops import Kind, Operation
from server_stub.runner import StoreThread
from server_stub.store import Handset, Store

from .fixtures import seed_platform

OPS = [Operation.make(1, Kind.REGISTER_CUSTOMER, 1, "Esi", "+233200000001")]


class BreaksAfterWriting(Store):
    """The end of `broken`'s exchange fails, after its operations were written."""

    broken = 0

    def _escrow_sync(self, handset: Handset, cursor: int, now_ms: int) -> None:
        if handset.handset == self.broken:
            raise RuntimeError("the disk hiccuped mid-exchange")
        super()._escrow_sync(handset, cursor, now_ms)


def committed(path: Path) -> set[int]:
    """Handsets whose operation another connection can read: committed, not just written."""
    db = sqlite3.connect(str(path))
    try:
        return {h for (h,) in db.execute("SELECT handset FROM ops")}
    finally:
        db.close()


@pytest.mark.parametrize("breaks", [0, 1, 2], ids=["first", "middle", "last"])
async def test_a_group_is_committed_before_any_answer_and_one_failure_is_its_own(
    tmp_path: Path, breaks: int
) -> None:
    """The group's first exchange runs without a savepoint (the transaction is its undo):
    when it is the one that fails, the others must still be kept."""
    path = tmp_path / "s.db"
    seeded = seed_platform(path)
    store = BreaksAfterWriting.open(path)
    code = seeded.agents["ama"][1]
    handsets = [store.provision("ama", code, HandsetKey.generate().public, 1) for _ in range(3)]
    store.broken = handsets[breaks]
    thread = StoreThread()
    thread.grouping = store.group
    gate, busy = threading.Event(), threading.Event()
    seen: list[tuple[int, set[int], int]] = []  # (handset answered, committed then, answered)
    try:
        thread.submit(lambda: (busy.set(), gate.wait(10)))  # the exchanges queue behind it
        assert busy.wait(10)
        futures: list[asyncio.Future[DownlinkFrame]] = []
        for h in handsets:
            futures.append(
                thread.answer_grouped(partial(store.exchange, Claim(h, 5, b""), OPS, 0, 9))
            )
            futures[-1].add_done_callback(
                lambda _, h=h: seen.append((h, committed(path), sum(f.done() for f in futures)))
            )
        gate.set()
        answers = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 10)
    finally:
        gate.set()
        thread.shutdown()
        store.close()
    broken = answers.pop(breaks)
    assert isinstance(broken, RuntimeError)
    assert [a.acked for a in answers if isinstance(a, DownlinkFrame)] == [(1,), (1,)]
    survivors = set(handsets) - {handsets[breaks]}
    assert committed(path) == survivors  # the broken exchange left nothing of itself
    assert sorted(h for h, _, _ in seen) == sorted(handsets)
    for _, visible, answered in seen:
        assert visible == survivors  # each answer found the whole group committed
        assert answered == 3  # and the group answered together
