"""The line protocol core, and its stdio, TCP and pseudo-terminal shells."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from meter_sim import Meter
from meter_sim.line_protocol import MAX_LINE, LineSession
from meter_sim.serve import open_pty, serve_pty, serve_tcp

from .helpers import HOUR, KEY, full_add


def session() -> LineSession:
    return LineSession(Meter.nexus(KEY))


def ask(s: LineSession, line: str) -> str:
    return s.feed(line.encode() + b"\n").decode().rstrip("\n")


def test_code_then_time_then_status() -> None:
    s = session()
    assert ask(s, "HELLO").startswith("OK HELLO meter-sim line-protocol=1 protocol=nexus-full")
    assert ask(s, f"CODE {full_add(1, 24)}") == "OK CODE applied credit=86400 state=enabled"
    assert ask(s, "WAIT 3600") == "OK TIME 3600"
    assert ask(s, "STATUS") == (
        "OK STATUS time=3600 credit=82800 state=enabled output=on restricted=0 limited=0"
        " protocol=nexus-full"
    )
    assert ask(s, f"CODE {full_add(1, 24)}") == "OK CODE duplicate credit=82800 state=enabled"


def test_keys_one_by_one() -> None:
    s = session()
    keys = [k for k in full_add(1, 2) if k != " "]
    replies = [ask(s, f"KEY {k}") for k in keys]
    assert replies[:-1] == ["OK KEY accepted"] * (len(keys) - 1)
    assert replies[-1] == f"OK KEY applied credit={2 * HOUR} state=enabled"
    assert ask(s, "KEY 5") == "OK KEY rejected"


def test_errors_are_specific() -> None:
    s = session()
    assert ask(s, "FLY").startswith("ERR unknown-command")
    assert ask(s, "KEY").startswith("ERR bad-argument")
    assert ask(s, "KEY 12").startswith("ERR bad-argument")
    assert ask(s, "TIME -1").startswith("ERR bad-argument")
    assert ask(s, "TIME nan").startswith("ERR bad-argument")
    assert ask(s, "TIME 100") == "OK TIME 100"
    assert ask(s, "TIME 50").startswith("ERR clock-backwards")
    assert ask(s, "STATUS").startswith("OK STATUS time=100 ")
    assert s.feed(b"\xff\xfe\n").startswith(b"ERR bad-encoding")
    assert s.feed(b"A" * (MAX_LINE + 50) + b"\n").startswith(b"ERR line-too-long")
    assert ask(s, "HELLO").startswith("OK HELLO")


def test_partial_lines_and_crlf() -> None:
    s = session()
    assert s.feed(b"HEL") == b""
    assert s.feed(b"LO\r\nSTA").startswith(b"OK HELLO")
    assert s.feed(b"TUS\n").startswith(b"OK STATUS")
    assert s.feed(b"\n\r\n  \n") == b""


def test_power_cycle_reports_nv() -> None:
    s = session()
    ask(s, f"CODE {full_add(1, 24)}")
    assert ask(s, "POWER") == "OK POWER nv=ok"
    assert ask(s, "STATUS").startswith("OK STATUS time=0 credit=86400 ")


@given(st.lists(st.binary(max_size=40), max_size=20))
def test_any_bytes_get_one_answer_per_line(chunks: list[bytes]) -> None:
    s = session()
    out = b"".join(s.feed(chunk) for chunk in chunks)
    data = b"".join(chunks)
    complete = data.split(b"\n")[:-1]
    answered = [line for line in complete if line.rstrip(b"\r").strip() or len(line) > MAX_LINE]
    replies = out.split(b"\n")[:-1] if out else []
    assert len(replies) <= len(complete)
    assert len(replies) >= len([x for x in answered if len(x) <= MAX_LINE + 1])
    for reply in replies:
        assert reply.startswith((b"OK ", b"ERR "))


async def test_tcp_shell_on_loopback() -> None:
    meter = Meter.nexus(KEY)
    stop = asyncio.Event()
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(
        serve_tcp(meter, "127.0.0.1", 0, ready=lambda h, p: bound.set_result(p), stop=stop)
    )
    port = await asyncio.wait_for(bound, 5)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"CODE {full_add(1, 24)}\nSTATUS\n".encode())
    await writer.drain()
    first = await asyncio.wait_for(reader.readline(), 5)
    second = await asyncio.wait_for(reader.readline(), 5)
    assert first == b"OK CODE applied credit=86400 state=enabled\n"
    assert second.startswith(b"OK STATUS time=0 credit=86400")
    writer.close()
    await writer.wait_closed()
    stop.set()
    await asyncio.wait_for(server, 5)


async def test_pty_shell() -> None:
    controller, path = open_pty()
    stop = asyncio.Event()
    task = asyncio.create_task(serve_pty(LineSession(Meter.nexus(KEY)), controller, stop=stop))
    device = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(device, f"CODE {full_add(1, 3)}\n".encode())
        loop = asyncio.get_running_loop()
        reply = b""
        deadline = loop.time() + 5
        while not reply.endswith(b"\n") and loop.time() < deadline:
            await asyncio.sleep(0.01)
            with contextlib.suppress(BlockingIOError):
                reply += os.read(device, 4096)
        assert reply == b"OK CODE applied credit=10800 state=enabled\n"
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        os.close(device)
        os.close(controller)


def test_stdio_shell_in_a_subprocess() -> None:
    script = f"HELLO\nCODE {full_add(1, 1)}\nBOGUS\n"
    done = subprocess.run(
        [sys.executable, "-m", "meter_sim.cli", "serve", "--stdio"],
        input=script.encode(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    lines = done.stdout.decode().splitlines()
    assert lines[0].startswith("OK HELLO")
    assert lines[1] == "OK CODE applied credit=3600 state=enabled"
    assert lines[2].startswith("ERR unknown-command")
