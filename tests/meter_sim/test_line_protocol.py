"""The line protocol core, and its stdio, TCP and pseudo-terminal shells."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meter_sim import FileStorage, Meter
from meter_sim.line_protocol import MAX_LINE, Device, LineSession
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
def test_any_bytes_get_at_most_one_answer_per_line_end(chunks: list[bytes]) -> None:
    s = session()
    out = b"".join(s.feed(chunk) for chunk in chunks)
    data = b"".join(chunks)
    replies = out.split(b"\n")[:-1] if out else []
    assert len(replies) <= data.count(b"\n") + data.count(b"\r")
    for reply in replies:
        assert reply.startswith((b"OK ", b"ERR "))


REQUESTS = st.sampled_from(
    [
        "HELLO",
        f"CODE {full_add(1, 24)}",
        f"CODE {full_add(2, 1)}",
        "KEY *",
        "KEY 5",
        "WAIT 60",
        "TIME 99999",
        "STATUS",
        "POWER",
        "RESET",
        "POWER off",
        "FLY",
        "",
    ]
)


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    out, at = [], 0
    for size in sizes:
        out.append(data[at : at + size])
        at += size
    return [*out, data[at:]]


@given(
    st.lists(REQUESTS, max_size=12),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.lists(st.integers(1, 30), max_size=12),
)
def test_cr_lf_and_crlf_lines_get_the_same_answers_however_they_arrive(
    lines: list[str], ending: str, sizes: list[int]
) -> None:
    reference = session()
    want = b"".join(reference.feed(line.encode() + b"\n") for line in lines)
    s = session()
    data = "".join(line + ending for line in lines).encode()
    assert b"".join(s.feed(chunk) for chunk in chunked(data, sizes)) == want


def test_cr_only_lines_are_answered_at_once() -> None:
    s = session()
    assert s.feed(b"HELLO\r").startswith(b"OK HELLO")
    assert s.feed(b"STATUS\r\n").startswith(b"OK STATUS time=0 ")
    assert s.feed(b"\nWAIT 5\n") == b"OK TIME 5\n"  # a bare LF ends a (blank) line too
    # the example: nothing is dropped
    answers = session().feed(b"HELLO\rHELLO\rTIME 0.0004\n").decode().splitlines()
    assert [a.split()[1] for a in answers] == ["HELLO", "HELLO", "TIME"]


@given(
    st.sampled_from(["HELLO", "STATUS", f"CODE {full_add(1, 24)}", "WAIT 60", "KEY *"]),
    st.data(),
)
def test_a_stray_cr_refuses_the_whole_line_and_changes_nothing(
    line: str, data: st.DataObject
) -> None:
    s = session()
    assert s.feed(b"STATUS\n").startswith(b"OK STATUS")  # this connection ends lines with LF
    before = ask(s, "STATUS")
    at = data.draw(st.integers(0, len(line) - 1))
    broken = (line[:at] + "\r" + line[at:]).encode()
    out = s.feed(broken + data.draw(st.sampled_from([b"\n", b"\r\n"])))
    assert out.startswith(b"ERR stray-cr ")
    assert out.count(b"\n") == 1
    assert ask(s, "STATUS") == before


EXTRA = st.text(alphabet="abc019 .", min_size=1, max_size=10).filter(lambda t: t.strip())


@given(st.sampled_from(["HELLO", "STATUS", "POWER", "RESET", "KEY 5", "TIME 5", "WAIT 5"]), EXTRA)
def test_extra_arguments_are_refused_and_nothing_is_done(line: str, extra: str) -> None:
    s = session()
    assert ask(s, "WAIT 10") == "OK TIME 10"
    assert ask(s, "KEY *") == "OK KEY accepted"
    before = ask(s, "STATUS")
    assert ask(s, f"{line} {extra}").startswith(f"ERR bad-argument {line.split()[0]} takes")
    assert ask(s, "STATUS") == before
    # the half-typed code survived: neither a power cycle nor a reset nor a key happened
    rest = [k for k in full_add(1, 24)[1:] if k != " "]
    answers = [ask(s, f"KEY {k}") for k in rest]
    assert answers[-1] == "OK KEY applied credit=86400 state=enabled"


def test_missing_arguments_are_refused() -> None:
    s = session()
    for line in ("KEY", "CODE", "TIME", "WAIT"):
        assert ask(s, line).startswith(f"ERR bad-argument {line} takes")
    assert ask(s, "POWER off").startswith("ERR bad-argument POWER takes no arguments")


@pytest.mark.parametrize("word", ["1e3", "+5", "-1", "1_0", "inf", "nan", "0x10", "5s", "1e13"])
def test_seconds_are_plain_decimals(word: str) -> None:
    s = session()
    assert ask(s, f"TIME {word}").startswith("ERR bad-argument TIME takes")
    assert ask(s, f"WAIT {word}").startswith("ERR bad-argument WAIT takes")


def test_seconds_may_have_a_fraction() -> None:
    s = session()
    assert ask(s, "TIME 5.") == "OK TIME 5"
    assert ask(s, "WAIT .5") == "OK TIME 5.5"
    assert ask(s, "TIME 007.25") == "OK TIME 7.25"
    assert ask(s, "TIME 1000000000000") == "OK TIME 1000000000000"
    assert ask(s, "WAIT 1").startswith("ERR bad-argument the device clock stops at")


def test_two_connections_share_one_meter_and_one_clock() -> None:
    device = Device(Meter.nexus(KEY))
    a, b = LineSession(device), LineSession(device)
    assert ask(a, "WAIT 100") == "OK TIME 100"
    assert ask(b, "STATUS").startswith("OK STATUS time=100 ")
    assert ask(b, "KEY *") == "OK KEY accepted"  # B keeps working on the same clock
    assert ask(b, "WAIT 5") == "OK TIME 105"
    assert ask(a, "TIME 50").startswith("ERR clock-backwards")
    rest = [k for k in full_add(1, 24)[1:] if k != " "]
    answers = [ask(a, f"KEY {k}") for k in rest]  # A finishes the code B started
    assert answers[-1] == "OK KEY applied credit=86400 state=enabled"
    # half a line on one connection is its own: B's lines are not glued to it
    assert a.feed(b"STAT") == b""
    assert b.feed(b"HELLO\n").startswith(b"OK HELLO")
    assert a.feed(b"US\n").startswith(b"OK STATUS time=105 credit=86400 ")


def test_reset_gives_a_factory_meter(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "meter.bin")
    s = LineSession(Meter.nexus(KEY, storage=storage))
    fresh = ask(LineSession(Meter.nexus(KEY)), "STATUS")
    code = full_add(1, 24)
    assert ask(s, f"CODE {code}") == "OK CODE applied credit=86400 state=enabled"
    assert ask(s, "WAIT 3600") == "OK TIME 3600"
    assert ask(s, "KEY *") == "OK KEY accepted"
    assert ask(s, "RESET") == "OK RESET time=0"
    assert ask(s, "STATUS") == fresh
    assert ask(s, f"CODE {code}") == "OK CODE applied credit=86400 state=enabled"  # ids forgotten
    assert ask(s, "RESET") == "OK RESET time=0"
    # the stored image is the factory one too: a meter booting from it has no credit
    assert ask(LineSession(Meter.nexus(KEY, storage=storage)), "STATUS") == fresh


def test_reset_on_the_wall_clock_keeps_the_time() -> None:
    s = LineSession(Meter.nexus(KEY), clock=lambda: 42.0)
    assert ask(s, f"CODE {full_add(1, 24)}").startswith("OK CODE applied")
    assert ask(s, "RESET") == "OK RESET time=42"
    assert ask(s, "STATUS").startswith("OK STATUS time=42 credit=0 state=disabled")


async def _line(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readline(), 5)


async def test_two_tcp_connections_one_waits_the_other_keeps_working() -> None:
    stop = asyncio.Event()
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(
        serve_tcp(
            Meter.nexus(KEY), "127.0.0.1", 0, ready=lambda h, p: bound.set_result(p), stop=stop
        )
    )
    port = await asyncio.wait_for(bound, 5)
    ra, wa = await asyncio.open_connection("127.0.0.1", port)
    rb, wb = await asyncio.open_connection("127.0.0.1", port)
    try:
        wa.write(f"CODE {full_add(1, 24)}\nWAIT 100\n".encode())
        assert (await _line(ra)).startswith(b"OK CODE applied")
        assert await _line(ra) == b"OK TIME 100\n"
        wb.write(b"STATUS\rKEY 5\rWAIT 20\r")  # B, a terminal sending CR, is 100 s on too
        assert (await _line(rb)).startswith(b"OK STATUS time=100 credit=86300 ")
        assert await _line(rb) == b"OK KEY rejected\n"
        assert await _line(rb) == b"OK TIME 120\n"
        wa.write(b"STATUS\n")
        assert (await _line(ra)).startswith(b"OK STATUS time=120 credit=86280 ")
    finally:
        for w in (wa, wb):
            w.close()
            await w.wait_closed()
        stop.set()
        await asyncio.wait_for(server, 5)


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
