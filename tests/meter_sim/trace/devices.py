"""Devices for replay tests: the real serve shells in a background loop, and a meter session
that misbehaves on purpose (diverges, goes silent, sends garbage or half a line, reboots)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import select
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from meter_sim import Meter
from meter_sim.line_protocol import Device, LineSession, VirtualClock
from meter_sim.serve import open_pty, serve_pty, serve_tcp

BANNER = b"\x00\xff\xfe BOOT fake-meter v0\r\n"


class Misbehaving(LineSession):
    """A line session whose answer to request number n (0 is the replayer's HELLO) follows
    `plan[n]`: `diverge`, `silent`, `garbage`, `partial`, `echo`, `flood` or `reboot`."""

    def __init__(self, meter: Meter | Device, plan: dict[int, str]) -> None:
        super().__init__(meter)
        self.plan = plan
        self.requests = 0
        self._pending = bytearray()

    def feed(self, data: bytes) -> bytes:
        self._pending += data
        out = bytearray()
        while (end := self._pending.find(b"\n")) >= 0:
            line = bytes(self._pending[: end + 1])
            del self._pending[: end + 1]
            n, self.requests = self.requests, self.requests + 1
            action = self.plan.get(n)
            if action == "reboot":
                self.meter.power_cycle(self.clock())
                self.clock = VirtualClock()  # the real-time clock restarts from zero
                out += BANNER
                continue
            if action == "silent":
                continue
            answer = super().feed(line)
            if action == "diverge":
                answer = (
                    answer.replace(b"applied", b"duplicate")
                    if b"applied" in answer
                    else (answer.replace(b"state=enabled", b"state=disabled"))
                )
            elif action == "garbage":
                answer = b"\x13\x37\xff~~noise~~\n" + answer
            elif action == "partial":
                answer = answer[: len(answer) // 2]
            elif action == "echo":
                answer = line.replace(b"\n", b"\r\n") + answer  # a terminal echoing input
            elif action == "flood":
                answer = b"x" * 20_000 + answer  # no newline until after the answer
            out += answer
        return bytes(out)


class Background:
    """An asyncio loop in a thread, so blocking replays in the test thread can talk to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, None]) -> concurrent.futures.Future[None]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@contextlib.contextmanager
def pty_device(session: LineSession) -> Iterator[str]:
    """Serve `session` with meter_sim's pty shell; yields the device-side path."""
    controller, path = open_pty()
    bg = Background()
    stop = asyncio.Event()
    task = bg.run(serve_pty(session, controller, stop=stop))
    try:
        yield path
    finally:
        bg.loop.call_soon_threadsafe(stop.set)
        task.result(5)
        bg.close()
        os.close(controller)


@contextlib.contextmanager
def tcp_device(meter: Meter, make_session: Callable[[Device], LineSession]) -> Iterator[str]:
    """Serve `meter` with meter_sim's TCP shell on 127.0.0.1; yields `tcp://127.0.0.1:PORT`."""
    bg = Background()
    stop = asyncio.Event()
    bound: concurrent.futures.Future[int] = concurrent.futures.Future()
    task = bg.run(
        serve_tcp(
            meter,
            "127.0.0.1",
            0,
            make_session=make_session,
            ready=lambda h, p: bound.set_result(p),
            stop=stop,
        )
    )
    try:
        yield f"tcp://127.0.0.1:{bound.result(5)}"
    finally:
        bg.loop.call_soon_threadsafe(stop.set)
        task.result(5)
        bg.close()


@contextlib.contextmanager
def cli_process(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`meter-sim ARGS` in a subprocess; yields it with the first line it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "meter_sim.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, f"meter-sim {args[0]} did not start"
        yield proc, proc.stdout.readline()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.communicate(timeout=10)
