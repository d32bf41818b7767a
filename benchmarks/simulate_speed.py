"""How fast `field-lab simulate` runs a month: simulated seconds per wall second at a few fleet
sizes, one JSON line per size (the issue's four incidents, the example month's habits).

Wall time depends on what else the machine runs; each line also gives the process's CPU
seconds and the load average, so a figure from a busy machine can be read for what it is, and
the CPU seconds of set-up with day 0 and of each later whole day (a cost per day that climbs
through the month is something growing with its history).

    python benchmarks/simulate_speed.py [--sizes 10x100 50x500 100x1000] [--days 7] [--seed 1]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from pathlib import Path

from field_lab.simulate import month as months
from field_lab.simulate.command import scratch
from field_lab.simulate.run import simulate

EXAMPLE = Path(__file__).parents[1] / "examples" / "a-month.toml"


def size(text: str) -> tuple[int, int]:
    agents, _, devices = text.partition("x")
    return int(agents), int(devices)


def one(agents: int, devices: int, days: int, seed: int) -> dict[str, object]:
    scenario, month = months.load(EXAMPLE)
    scenario = scenario.with_overrides(agents=agents, devices=devices, seed=seed)
    raw = months.to_dict(month)
    raw["simulate"]["days"] = days
    for incident in raw["incident"]:  # the same four, squeezed into a shorter month
        incident["day"] = min(incident["day"], days - 1)
        incident["hours"] = min(incident["hours"], 24)
        if incident["kind"] == "agent_offline":
            incident["agent"] = 0
    month = months.parse(raw)
    days_at: list[float] = []  # CPU seconds when each simulated day from day 1 began

    def progress(line: str) -> None:
        if line.startswith("day "):
            days_at.append(time.process_time())

    cpu, wall = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="simulate-bench-", dir=scratch()) as work:
        outcome = simulate(scenario, month, Path(work), progress=progress)
    wall = time.perf_counter() - wall
    per_day = [round(b - a, 2) for a, b in itertools.pairwise(days_at)]
    figures = outcome.verdict.figures()
    return {
        "agents": agents,
        "devices": devices,
        "days": days,
        "simulated_s": month.end,
        "wall_s": round(wall, 2),
        "month_wall_s": round(outcome.month_wall_s, 2),
        "cpu_s": round(time.process_time() - cpu, 2),
        "sim_s_per_wall_s": round(month.end / wall, 1),
        "setup_and_day0_cpu_s": round(days_at[0] - cpu, 2) if days_at else None,
        "day_cpu_s": per_day,  # days 1 to N-2: flat unless something grows with the month
        "device_days_per_cpu_s": round(devices * days / (time.process_time() - cpu), 1),
        "payments": outcome.evidence.counters.get("payments_mobile", 0)
        + outcome.evidence.counters.get("payments_cash", 0),
        "all_checks_verified": all(v == 0 for v in figures.values()),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cores": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", nargs="+", type=size, default=[(10, 100), (50, 500), (100, 1000)]
    )
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for agents, devices in args.sizes:
        print(json.dumps(one(agents, devices, args.days, args.seed)), flush=True)


if __name__ == "__main__":
    main()
