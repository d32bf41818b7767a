"""Emulated handsets per CPU core: the lab at a few fleet sizes, one JSON line each.

For each fleet size the default scenario runs against `server-stub` in its own process (a load
generator's cost is measured without the platform under test's), seeded afresh. The lab
process's CPU seconds (user + system, all threads) over the field phase give the CPU one
handset costs at the scenario's activity rate, so `handsets_per_core` = how many such handsets
one busy core carries. Set-up (seeding, provisioning, stock, installed base) is timed apart,
with the garbage collector's share of it (`setup_gc_s`); `setup_cpu_s` is the lab process's,
`setup_workers_cpu_s` its set-up workers' (`field_lab.world.prepare`), and the platform's is in
`platform_cpu_s`. Handsets that keep a connection between polls open it over their links at the
end of set-up, as a handset long in the field has it from its last poll (`warmed_before_field`;
its CPU is set-up's step `warm_up`, not the field's).
Memory (RSS) and open file descriptors are sampled once a second during the field phase; the
per-1000 figures are over the process's level before the lab started. Listing the
descriptors is this script's own cost, not the lab's (about 30 ms of CPU at 18,000 open, once
a second): its CPU is subtracted from `field_cpu_s` and printed as `probe_cpu_s`. The machine's load
average is printed with each line: other work on the machine slows everything down.

    python benchmarks/lab_scale.py [--agents 1000 4000 10000] [--duration 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from field_lab.lab.lab import Lab, Target
from field_lab.scenario import DEFAULT
from field_lab.world.fixture import Stocking, seed
from server_stub.cli import AUDIT_TOKEN_ENV, SECRET_ENV


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of another process (the platform's), from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GcClock:
    """Wall seconds the garbage collector spent, from the interpreter's own callbacks."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._began


@contextlib.contextmanager
def platform(db: Path, mm_secret: bytes, token: str) -> Iterator[tuple[str, int]]:
    """`server-stub serve` on the seeded `db`, in its own process; yields its URL and pid."""
    port = free_port()
    env = {**os.environ, SECRET_ENV: mm_secret.decode(), AUDIT_TOKEN_ENV: token}
    code = "import sys; from server_stub.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["--db", str(db), "serve", "--port", str(port), "--synchronous", "normal"]
    args += ["--shutdown-timeout", "2"]
    proc = subprocess.Popen([sys.executable, "-c", code, *args], env=env, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if proc.poll() is not None:
                raise RuntimeError(f"server-stub exited with {proc.returncode}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def one(agents: int, duration: float) -> dict[str, object]:
    scenario = replace(
        DEFAULT.with_overrides(agents=agents, devices=agents * 10, duration_s=duration, seed=7),
        settle_s=20,
    )
    base_rss, base_fds = rss_mb(), open_fds()
    start = (time.monotonic(), cpu_seconds())
    with tempfile.TemporaryDirectory(prefix="lab-scale-") as tmp:
        workdir = Path(tmp)
        fixture = await asyncio.to_thread(seed, workdir / "server.db", Stocking.of(scenario))
        seeded = time.monotonic()
        mm_secret, token = secrets.token_hex(16).encode(), secrets.token_urlsafe(16)
        with platform(workdir / "server.db", mm_secret, token) as (url, pid):
            lab = Lab(scenario, workdir, target=Target(url, fixture, token, mm_secret))
            marks: dict[str, tuple[float, float]] = {}
            counts: dict[str, tuple[int, float]] = {"start": (0, process_cpu_seconds(pid))}
            peak = {"rss": 0.0, "fds": 0}
            probes = {"field": 0.0}  # this script's own CPU in the field (listing descriptors)
            gc_clock = GcClock()
            gc_at: dict[str, float] = {}
            gc.callbacks.append(gc_clock)

            def progress(current: Lab) -> None:
                if current.phase == "field":
                    marks.setdefault("field", (time.monotonic(), cpu_seconds()))
                    counts.setdefault("field", (current.field_syncs, process_cpu_seconds(pid)))
                    gc_at.setdefault("field", gc_clock.seconds)
                    began = time.thread_time()
                    peak["rss"] = max(peak["rss"], rss_mb())
                    peak["fds"] = max(peak["fds"], open_fds())
                    probes["field"] += time.thread_time() - began
                elif "field" in marks:
                    marks.setdefault("settle", (time.monotonic(), cpu_seconds()))
                    counts.setdefault("settle", (current.field_syncs, process_cpu_seconds(pid)))
                    gc_at.setdefault("settle", gc_clock.seconds)

            lab.progress = progress
            try:
                await lab.run()
            finally:
                gc.callbacks.remove(gc_clock)
    field_start = marks.get("field", start)
    field_end = marks.get("settle", field_start)
    wall = field_end[0] - field_start[0]
    cpu = field_end[1] - field_start[1] - probes["field"]
    s = lab.stats
    per_k = 1000 / agents
    syncs = counts.get("settle", (0, 0.0))[0] - counts.get("field", (0, 0.0))[0]
    due = agents * wall / scenario.agents.sync_interval_s if wall else 0.0
    pace = min(1.0, syncs / due) if due else 0.0
    platform_cpu = {
        "setup": counts.get("field", counts["start"])[1] - counts["start"][1],
        "field": counts.get("settle", (0, 0.0))[1] - counts.get("field", (0, 0.0))[1],
    }
    return {
        "agents": agents,
        "devices": len(lab.sites),
        "setup_wall_s": round(field_start[0] - start[0], 1),
        "setup_steps_s": {"seed_platform": round(seeded - start[0], 2), **lab.setup_s},
        "setup_cpu_s": round(field_start[1] - start[1], 2),
        "setup_workers_cpu_s": round(lab.setup_workers_cpu_s, 2),
        "setup_steps_cpu_s": lab.setup_cpu_s,
        "setup_gc_s": round(gc_at.get("field", 0.0), 2),
        "field_wall_s": round(wall, 1),
        "field_cpu_s": round(cpu, 2),
        "probe_cpu_s": round(probes["field"], 2),
        "field_gc_s": round(gc_at.get("settle", 0.0) - gc_at.get("field", 0.0), 2),
        "cpu_share_of_one_core": round(cpu / wall, 3) if wall else None,
        "cpu_ms_per_handset_second": round(1000 * cpu / (wall * agents * pace), 4)
        if wall and pace
        else None,
        "field_syncs": syncs,
        "pace": round(pace, 3),
        "handsets_per_core": round(agents * wall / cpu * pace) if cpu else None,
        "platform_cpu_s": {k: round(v, 2) for k, v in platform_cpu.items()},
        "rss_mb_per_1000_handsets": round((peak["rss"] - base_rss) * per_k, 1),
        "fds_per_1000_handsets": round((peak["fds"] - base_fds) * per_k),
        "descriptor_limit": lab.descriptor_limit,
        "warm_handsets": lab.warm,
        "warmed_before_field": lab.warmed,
        "syncing_peak": lab.syncing_peak,
        "operations": s.total.ops,
        "exchanges": s.total.exchanges,
        "late_starts": s.late_starts,
        "sale_success_rate": round(
            (s.total.sale_failed.total - s.total.sale_failed.hits)
            / max(1, s.total.sale_failed.total),
            3,
        ),
        "lost_ops": s.checks.get("lost_ops"),
        "duplicate_ops": s.checks.get("duplicate_ops"),
        "load_average": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[1000, 4000, 10000])
    parser.add_argument("--duration", type=float, default=30.0)
    args = parser.parse_args()
    # A plain SIGTERM would skip the `finally` that stops the platform's process.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    print(json.dumps({"cores": os.cpu_count(), "duration_s": args.duration}))
    for agents in args.agents:
        print(json.dumps(asyncio.run(one(agents, args.duration))), flush=True)


if __name__ == "__main__":
    main()
