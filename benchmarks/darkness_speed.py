"""Attribution's cost at month scale: a synthetic month of dark intervals and deliveries for N
meters (weekly payments through the month's generators, village outages, the issue's four
incidents) attributed by `field_lab.simulate.darkness.attribute`, one JSON line per size.

The records are made up here (no engine): this measures attribution alone, the part of
`field-lab simulate` that runs after the month is over.

    python benchmarks/darkness_speed.py [--meters 2000 20000] [--days 30]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

from field_lab.simulate import postmortem
from field_lab.simulate.darkness import Dark, Delivery, Outage, Stage, attribute
from field_lab.simulate.month import (
    DAY,
    HOUR,
    Month,
    agent_scope,
    coverage_of,
    habit_of,
    load,
    payments,
    village_outages,
)

EXAMPLE = Path(__file__).parents[1] / "examples" / "a-month.toml"
"""The issue's four incidents (the fleet is the benchmark's own)."""


def synthetic(
    meters: int, days: int, seed: int
) -> tuple[list[Dark], list[Delivery], list[Outage], Month]:
    _, example = load(EXAMPLE)  # its incidents, on the default month
    month = (
        Month(incidents=example.incidents)
        .with_days(days)
        .resolve_agents([str(a) for a in range(max(18, meters // 10))])
    )
    plan = month.plans["solar-home"]
    rng = random.Random(seed)
    end = days * DAY
    agents = max(18, meters // 10)
    windows = {
        v: village_outages(
            seed=seed, village=v, coverage=month.coverage[coverage_of(seed, v, month)], days=days
        )
        for v in range(month.villages)
    }
    # an agent's handset is out when its village's link is
    outages = [
        Outage(agent_scope(str(agent)), a, b)
        for agent in range(agents)
        for a, b in windows[agent % month.villages]
    ]
    darks: list[Dark] = []
    deliveries: list[Delivery] = []
    for m in range(meters):
        meter = f"m{m}"
        agent = str(m % agents)
        credit = rng.uniform(0, 7) * DAY
        habit = habit_of(seed, m, plan)
        for p in payments(
            seed=seed, customer=m, plan=plan, habit=habit, credit_until=credit, days=days
        ):
            via = "sms" if rng.random() < 0.8 else "agent"
            edges = [p.at]
            for mean in (60.0, 2.0, 600.0 if via == "sms" else 4 * HOUR, 300.0):
                edges.append(edges[-1] + rng.expovariate(1 / mean))
            applied = edges[-1] if edges[-1] < end else None
            names = ("operator", "platform", "delivery", "entry")
            stages = tuple(
                Stage(
                    n,
                    a,
                    b,
                    via=via if n == "delivery" else "",
                    scope=agent_scope(agent) if n == "delivery" and via == "agent" else "",
                )
                for n, a, b in zip(names, edges, edges[1:], strict=False)
            )
            if applied is None:
                stages = tuple(s for s in stages if s.start < end) or stages[:1]
                last = stages[-1]
                stages = (
                    *stages[:-1],
                    Stage(last.name, last.start, max(last.start, end), last.via, last.scope),
                )
            deliveries.append(Delivery(meter, p.at, applied, stages))
            if p.at > credit:
                darks.append(Dark(meter, credit, applied if applied is not None else end))
                credit = (applied if applied is not None else end) + p.days * DAY
            else:
                credit += p.days * DAY
        if credit < end:
            darks.append(Dark(meter, credit, end))
    return darks, deliveries, outages, month


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for meters in args.meters:
        darks, deliveries, outages, month = synthetic(meters, args.days, args.seed)
        began = time.perf_counter()
        dark = attribute(
            dark=darks,
            deliveries=deliveries,
            incidents=month.incidents,
            outages=outages,
            start=0,
            end=month.end,
        )
        attributed = time.perf_counter() - began
        began = time.perf_counter()
        postmortem.summary(dark)
        postmortem.files(dark)
        postmortem.lines(dark)
        written = time.perf_counter() - began
        print(
            json.dumps(
                {
                    "meters": meters,
                    "days": args.days,
                    "dark_intervals": len(darks),
                    "deliveries": len(deliveries),
                    "outages": len(outages),
                    "attribute_s": round(attributed, 3),
                    "outputs_s": round(written, 3),
                    "paid_waiting_h": round(dark.paid_waiting_ms / 3_600_000, 1),
                    "unpaid_h": round(dark.unpaid_ms / 3_600_000, 1),
                    "loadavg_1m": round(os.getloadavg()[0], 2),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
