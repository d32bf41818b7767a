"""The platform in its own process, so load generator and server do not share one interpreter.

In one process the load generator's client work (aiohttp, frame codecs, envelope sealing) and the
server's (HTTP, store thread) take turns on one GIL, and the figure measures their sum. Apart,
each side has its own interpreter, and the CPU each one spends is read from /proc, so a
benchmark can print CPU per exchange on each side (what tells whether the server or the load
generator is the bottleneck on a small machine).

`python benchmarks/x.py --in-process` keeps the old single-process layout for comparison.
`--workers N` runs the platform as N processes on one port (SO_REUSEPORT) and one database, as
`server-stub serve --workers N` does (docs/platform.md); CPU figures add up all N.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
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


def _serve(db: str, platform: Platform, port: int, conn: Connection) -> None:
    """The child: serve on 127.0.0.1 until the parent says stop (or goes away)."""
    from field_lab.world.platform import serving  # imported in the child only

    async def main() -> None:
        shared = platform.workers > 1
        async with serving(Path(db), config=platform, port=port, reuse_port=shared) as url:
            conn.send(url)
            await asyncio.get_running_loop().run_in_executor(None, _wait, conn)

    asyncio.run(main())


def _wait(conn: Connection) -> None:
    with contextlib.suppress(EOFError):  # EOF: the parent died, stop serving
        conn.recv()


class Served:
    """A platform serving in child processes (one per worker): its URL and its CPU use."""

    def __init__(self, url: str, *pids: int) -> None:
        self.url = url
        self.pids = pids
        self.workers = len(pids)

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def loop_cpu_seconds(self) -> float:
        """The main threads' CPU: the event loops (HTTP, frames, metrics); the rest of the
        processes is the store threads and the report readers."""
        return sum(cpu_seconds(pid, pid) for pid in self.pids)


@asynccontextmanager
async def serving_here(db: Path, platform: Platform, workers: int = 1) -> AsyncIterator[Served]:
    """The old layout: the platform in this process (its CPU is this process's)."""
    from field_lab.world.platform import serving

    if workers != 1:
        raise ValueError("--in-process serves with one worker: drop --workers")
    async with serving(db, config=platform) as url:
        yield Served(url, os.getpid())


@asynccontextmanager
async def serving_apart(db: Path, platform: Platform, workers: int = 1) -> AsyncIterator[Served]:
    """`server_stub` on `db` in `workers` spawned child processes on one port (worker 0
    first: it picks the port); stops them (bounded) on exit."""
    ctx = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    children: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    try:
        url, port = "", 0
        for worker in range(workers):
            ours, theirs = ctx.Pipe()
            config = replace(platform, workers=workers, worker=worker, owns_interpreter=True)
            child = ctx.Process(target=_serve, args=(str(db), config, port, theirs), daemon=True)
            child.start()
            children.append((child, ours))
            if not await loop.run_in_executor(None, ours.poll, START_TIMEOUT_S):
                raise RuntimeError(f"the platform did not start within {START_TIMEOUT_S} s")
            url = ours.recv()
            port = int(url.rpartition(":")[2])
        yield Served(url, *(child.pid for child, _ in children if child.pid is not None))
    finally:
        for _, ours in children:
            with contextlib.suppress(OSError):
                ours.send("stop")
        for child, _ in children:
            await loop.run_in_executor(None, child.join, 30.0)
            if child.is_alive():
                child.kill()
                child.join(5.0)


def serving_options(p: argparse.ArgumentParser) -> None:
    """The server layout flags every load benchmark takes."""
    p.add_argument(
        "--in-process",
        action="store_true",
        help="serve in this process (sharing its interpreter) instead of a child process",
    )
    p.add_argument(
        "--workers",
        type=int,
        choices=range(1, 17),
        default=1,
        metavar="N",
        help="platform processes on one port and database (server-stub serve --workers N)",
    )
    p.add_argument(
        "--no-write-lock",
        action="store_true",
        help="with --workers above 1: leave writers to SQLite's busy handler (to compare)",
    )


def served_by(
    args: argparse.Namespace, db: Path, platform: Platform
) -> AbstractAsyncContextManager[Served]:
    """The platform as `serving_options` asked for it."""
    platform = replace(platform, write_lock=not args.no_write_lock)
    serve = serving_here if args.in_process else serving_apart
    return serve(db, platform, args.workers)


LOCK_NAMES = ("wait", "held", "held_cpu", "transactions")


def lock_counters(metrics_text: str) -> dict[str, float]:
    """The write lock's counters in a /metrics page (all workers'; zeros with one worker)."""
    from prometheus_client.parser import text_string_to_metric_families

    found = dict.fromkeys(LOCK_NAMES, 0.0)
    for family in text_string_to_metric_families(metrics_text):
        for name in LOCK_NAMES:
            if (
                family.name == f"payg_write_lock_{name}"
                or family.name == f"payg_write_lock_{name}_seconds"
            ):
                found[name] = sum(s.value for s in family.samples if s.name.endswith("_total"))
    return found


async def settled_lock_counters(get: Callable[[], Awaitable[str]]) -> dict[str, float]:
    """`lock_counters` once every worker has published what it counted until now."""
    from server_stub.metrics_share import PUBLISH_S

    await asyncio.sleep(PUBLISH_S + 0.2)
    return lock_counters(await get())


def lock_use(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, object]:
    """How busy the one writer's seat was: the share of the time some worker held the write
    lock, the share in which the holder ran on a CPU (the rest: waiting for its process's
    GIL or for a core), and the mean wait for it per transaction."""
    d = {name: after[name] - before[name] for name in LOCK_NAMES}
    return {
        "write_lock_held_share": round(d["held"] / seconds, 3),
        "write_lock_held_cpu_share": round(d["held_cpu"] / seconds, 3),
        "write_lock_wait_ms_per_txn": round(1000 * d["wait"] / max(1, d["transactions"]), 3),
        "write_lock_transactions": int(d["transactions"]),
    }
