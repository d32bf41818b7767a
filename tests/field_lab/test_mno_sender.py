"""`MnoSimulator` through its `CallbackSender` seam: the operator's decisions, signing,
retries and records are the same whatever carries the callback (HTTP in the lab, the
platform's door in `field-lab simulate`); a sender's faults show up in the history."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from field_lab.world.mno import Final, HttpCallbacks, MnoConfig, MnoSimulator, NoReply, Reply, Txn
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


class Platform:
    """A socket on 127.0.0.1 answering each request from a script: a status, or silence."""

    def __init__(self, script: list[int | None]) -> None:
        self.script = script
        self.connections = 0
        self.bodies: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.script:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                self.bodies.append(await reader.readexactly(length))
                status = self.script.pop(0)
                if status is None:  # silence until the operator gives up and hangs up
                    await reader.read()
                    return
                answer = json.dumps({"status": status}).encode()
                writer.write(
                    b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(answer), answer)
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def test_http_callbacks_record_a_5xx_as_an_answer_and_silence_as_a_timeout() -> None:
    """The real sender (agent_client's HTTP/1.1 client, pooled): a 503 is an answer with its
    status (retried by the operator's rule, not by the client), a silent platform a
    "timeout", and the kept connection carries the next callback."""
    platform = Platform([503, 200, None])
    server = await asyncio.start_server(platform.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sender = HttpCallbacks(f"http://127.0.0.1:{port}/v1/mm/callback", connections=2)
    await sender.open()
    try:
        first = await sender.send(b"{}", {"Content-Type": "application/json"}, 2.0)
        second = await sender.send(b'{"a": 1}', {}, 2.0)
        with pytest.raises(NoReply) as silent:
            await sender.send(b"{}", {}, 0.2)
    finally:
        await sender.close()
        server.close()
        await server.wait_closed()
    assert (first.status, first.answer) == (503, {"status": 503})
    assert (second.status, second.answer) == (200, {"status": 200})
    assert silent.value.reason == "timeout"
    assert platform.connections == 1  # one kept-alive connection carried all three
    assert platform.bodies == [b"{}", b'{"a": 1}', b"{}"]


async def test_http_callbacks_name_a_refused_connection() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = HttpCallbacks(f"http://127.0.0.1:{port}/cb")
    await sender.open()
    with pytest.raises(NoReply) as refused:
        await sender.send(b"{}", {}, 2.0)
    await sender.close()
    assert refused.value.reason == "ConnectionRefusedError"
    with pytest.raises(ValueError, match="connections"):
        HttpCallbacks("http://127.0.0.1:1/cb", connections=0)
