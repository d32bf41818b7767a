"""Emulated handsets per CPU core: the lab at a few fleet sizes, CPU measured, one JSON line each.

For each fleet size the default scenario runs for a short stretch; the process's CPU seconds
(user + system, all threads) over the measured phase give the CPU one handset costs at the
scenario's activity rate, so `handsets_per_core` = how many such handsets one busy core
carries. Figures are ratios within one run on one machine, not absolute promises.

    python benchmarks/lab_scale.py [--agents 50 200 800] [--duration 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from field_lab.lab.lab import Lab
from field_lab.scenario import DEFAULT


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one(agents: int, duration: float) -> dict[str, object]:
    scenario = replace(
        DEFAULT.with_overrides(agents=agents, devices=agents * 10, duration_s=duration, seed=7),
        settle_s=20,
    )
    with tempfile.TemporaryDirectory(prefix="lab-scale-") as tmp:
        lab = Lab(scenario, Path(tmp))
        marks: dict[str, tuple[float, float]] = {}

        def progress(current: Lab) -> None:
            if current.phase == "field" and "field" not in marks:
                marks["field"] = (time.monotonic(), cpu_seconds())

        lab.progress = progress
        start = (time.monotonic(), cpu_seconds())
        await lab.run()
        end = (time.monotonic(), cpu_seconds())
    field_start = marks.get("field", start)
    wall = end[0] - field_start[0]
    cpu = end[1] - field_start[1]
    s = lab.stats
    return {
        "agents": agents,
        "devices": len(lab.sites),
        "setup_wall_s": round(field_start[0] - start[0], 1),
        "field_wall_s": round(wall, 1),
        "field_cpu_s": round(cpu, 2),
        "cpu_share_of_one_core": round(cpu / wall, 3),
        "cpu_ms_per_handset_second": round(1000 * cpu / wall / agents, 3),
        "handsets_per_core": round(agents * wall / cpu) if cpu else None,
        "operations": s.total.ops,
        "late_starts": s.late_starts,
        "sale_success_rate": (s.total.sale_failed.total - s.total.sale_failed.hits)
        / max(1, s.total.sale_failed.total),
        "lost_ops": s.checks.get("lost_ops"),
        "duplicate_ops": s.checks.get("duplicate_ops"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[50, 200, 800])
    parser.add_argument("--duration", type=float, default=30.0)
    args = parser.parse_args()
    print(json.dumps({"cores": os.cpu_count(), "duration_s": args.duration}))
    for agents in args.agents:
        print(json.dumps(asyncio.run(one(agents, args.duration))), flush=True)


if __name__ == "__main__":
    main()
