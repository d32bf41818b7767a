"""`field-lab simulate` with one shard against several: wall and CPU seconds, one JSON line per
shard count, each a fresh `field-lab simulate` process (its shards' CPU counted with it).

Wall time depends on what else the machine runs; each line gives the load average before and
after, so a figure from a busy machine can be read for what it is.

    python benchmarks/simulate_shards.py [--days 7] [--agents 200] [--devices 2000] [--seed 1]
                                         [--shards 1 2] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one(args: argparse.Namespace, shards: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="simulate-shards-bench-") as tmp:
        out = Path(tmp) / "out"
        command = [
            sys.executable,
            "-m",
            "field_lab.cli",
            "simulate",
            *("--days", str(args.days), "--agents", str(args.agents)),
            *("--devices", str(args.devices), "--seed", str(args.seed)),
            *("--shards", str(shards), "--out", str(out)),
        ]
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=7200)
        wall = time.perf_counter() - began
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode not in (0, 99):
            raise SystemExit(f"simulate --shards {shards} failed: {done.stderr.strip()[-500:]}")
        doc = json.loads((out / "summary.json").read_text())
    dark = doc["household_dark_hours"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "shards": shards,
        "days": args.days,
        "agents": args.agents,
        "devices": args.devices,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "shard_cpu_s": doc["wall"].get("shard_cpu_seconds"),
        "unpaid_h": round(dark["unpaid"], 1),
        "paid_waiting_h": round(dark["paid_waiting"], 1),
        "households": dark["households"],
        "all_checks_verified": doc["all_checks_verified"],
        "load_average_1m": [round(load, 2), round(os.getloadavg()[0], 2)],
        "cores": len(os.sched_getaffinity(0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=1, help="repeat the shard counts, in turn")
    args = parser.parse_args()
    for _ in range(args.rounds):
        for shards in args.shards:
            print(json.dumps(one(args, shards)), flush=True)


if __name__ == "__main__":
    main()
