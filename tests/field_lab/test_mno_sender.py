"""`MnoSimulator` through its `CallbackSender` seam: the operator's decisions, signing,
retries and records are the same whatever carries the callback (HTTP in the lab, the
platform's door in `field-lab simulate`); a sender's faults show up in the history."""

from __future__ import annotations

import json

from field_lab.world.mno import Final, MnoConfig, MnoSimulator, NoReply, Reply, Txn
from server_stub.callbacks import SIGNATURE_HEADER, sign

SECRET = b"operator-secret"


class Scripted:
    """Answers each attempt from a script: a status, or a reason for no answer at all."""

    def __init__(self, script: list[int | str]) -> None:
        self.script = script
        self.sent: list[tuple[bytes, dict[str, str]]] = []
        self.opened = self.closed = False

    async def open(self) -> None:
        self.opened = True

    async def send(self, body: bytes, headers: dict[str, str], timeout_s: float) -> Reply:
        self.sent.append((body, headers))
        step = self.script.pop(0)
        if isinstance(step, str):
            raise NoReply(step)
        return Reply(step, {"outcome": "applied"} if step < 300 else None)

    async def close(self) -> None:
        self.closed = True


def config(**extra: object) -> MnoConfig:
    return MnoConfig(delay_s=(0.0, 0.0), retry_s=(0.0, 0.0, 0.0), seed=3, **extra)  # type: ignore[arg-type]


async def test_no_answer_and_5xx_are_retried_until_a_2xx() -> None:
    sender = Scripted(["timeout", 503, "refused", 200])
    mno = MnoSimulator(sender, SECRET, config(), clock=lambda: 100.0, epoch=1_700_000_000.0)
    await mno.start()
    txn = mno.history[mno.pay(42, 500, "+233200000001")]
    assert await mno.drain(5.0)
    await mno.stop()
    assert sender.opened
    assert sender.closed
    assert txn.final is Final.ACKNOWLEDGED
    assert [a.kind for a in txn.attempts] == ["callback", "retry", "retry", "retry"]
    assert [a.error for a in txn.attempts] == ["timeout", None, "refused", None]
    assert [a.status for a in txn.attempts] == [None, 503, None, 200]
    assert txn.attempts[-1].answer == {"outcome": "applied"}
    body, headers = sender.sent[0]
    assert headers[SIGNATURE_HEADER] == sign(SECRET, body)
    doc = json.loads(body)
    assert doc["paid_ms"] == (1_700_000_000 + 100) * 1000  # the epoch places the clock's zero
    assert doc["account"] == "42"


async def one_payment(sender: Scripted) -> Txn:
    """One payment through `sender`, drained; its record."""
    mno = MnoSimulator(sender, SECRET, config())
    await mno.start()
    txn = mno.history[mno.pay(1, 500, "+233200000001")]
    assert await mno.drain(5.0)
    await mno.stop()
    return txn


async def test_a_4xx_is_final_and_silence_gives_up_after_the_ladder() -> None:
    first = await one_payment(Scripted([409]))
    assert first.final is Final.REFUSED
    assert len(first.attempts) == 1
    second = await one_payment(Scripted(["timeout"] * 4))
    assert second.final is Final.GAVE_UP
    assert len(second.attempts) == config().max_attempts


async def test_a_hold_delays_the_first_callback_on_the_clock() -> None:
    sender = Scripted([200])
    mno = MnoSimulator(sender, SECRET, config())
    await mno.start()
    mno.pay(1, 500, "+233200000001", hold_s=1.0)
    assert not await mno.drain(0.05)  # still held back
    assert sender.sent == []
    assert await mno.drain(5.0)
    await mno.stop()
    assert len(sender.sent) == 1
