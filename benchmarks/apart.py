"""The platform in its own process, so load generator and server do not share one interpreter.

In one process the load generator's client work (aiohttp, frame codecs, envelope sealing) and the
server's (HTTP, store thread) take turns on one GIL, and the figure measures their sum. Apart,
each side has its own interpreter, and the CPU each one spends is read from /proc, so a
benchmark can print CPU per exchange on each side (what tells whether the server or the load
generator is the bottleneck on a small machine).

`python benchmarks/x.py --in-process` keeps the old single-process layout for comparison.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from multiprocessing.connection import Connection
from pathlib import Path

from server_stub.app import Platform

TICKS = os.sysconf("SC_CLK_TCK")
START_TIMEOUT_S = 60.0


def cpu_seconds(pid: int | None = None, tid: int | None = None) -> float:
    """User + system CPU so far of a process (all its threads; this process when None), or
    of its thread `tid` alone."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(path) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _serve(db: str, platform: Platform, conn: Connection) -> None:
    """The child: serve on 127.0.0.1 until the parent says stop (or goes away)."""
    from field_lab.world.platform import serving  # imported in the child only

    async def main() -> None:
        async with serving(Path(db), config=platform) as url:
            conn.send(url)
            await asyncio.get_running_loop().run_in_executor(None, _wait, conn)

    asyncio.run(main())


def _wait(conn: Connection) -> None:
    with contextlib.suppress(EOFError):  # EOF: the parent died, stop serving
        conn.recv()


class Served:
    """A platform serving in a child process: its URL and its CPU use."""

    def __init__(self, url: str, pid: int) -> None:
        self.url = url
        self.pid = pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def loop_cpu_seconds(self) -> float:
        """The main thread's CPU: the event loop (HTTP, frames, metrics); the rest of the
        process is the store thread and the report readers."""
        return cpu_seconds(self.pid, self.pid)


@asynccontextmanager
async def serving_here(db: Path, platform: Platform) -> AsyncIterator[Served]:
    """The old layout: the platform in this process (its CPU is this process's)."""
    from field_lab.world.platform import serving

    async with serving(db, config=platform) as url:
        yield Served(url, os.getpid())


@asynccontextmanager
async def serving_apart(db: Path, platform: Platform) -> AsyncIterator[Served]:
    """`server_stub` on `db` in a spawned child process; stops it (bounded) on exit."""
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=_serve, args=(str(db), platform, theirs), daemon=True)
    child.start()
    loop = asyncio.get_running_loop()
    try:
        if not await loop.run_in_executor(None, ours.poll, START_TIMEOUT_S):
            raise RuntimeError(f"the platform did not start within {START_TIMEOUT_S} s")
        assert child.pid is not None
        yield Served(ours.recv(), child.pid)
    finally:
        with contextlib.suppress(OSError):
            ours.send("stop")
        await loop.run_in_executor(None, child.join, 30.0)
        if child.is_alive():
            child.kill()
            child.join(5.0)
