"""Which OpenPAYGO tokens of a simulated month a lower count of the same chain also makes, had
the platform issued plain tokens (counts 2, 4, 6, ... in payment order, every payment paid):
the tokens `issue_token(..., unambiguous=True)` now skips. One JSON line.

A clash with an odd count is read as a SET there (the credit left is lost); with an earlier
ADD it is the same text issued twice. This is how the full-size month's two judge findings
were told apart from chance without running the month again (docs/simulate.md).

    python benchmarks/openpaygo_clashes.py [--agents 2000] [--devices 20000] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from agent_client.protocol.keycodes import KeycodeFormat
from field_lab.scenario import DEFAULT
from field_lab.simulate import month as months
from field_lab.simulate.schedule import schedule_of
from field_lab.world.fixture import Stocking, seed
from meter_sim.openpaygo.chain import STANDARD, code_chain

OPENPAYGO = (KeycodeFormat.OPENPAYGO, KeycodeFormat.OPENPAYGO_RESTRICTED)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--devices", type=int, default=20000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    began = time.perf_counter()
    scenario = DEFAULT.with_overrides(agents=args.agents, devices=args.devices, seed=args.seed)
    month = months.parse({}).with_days(args.days)
    with tempfile.TemporaryDirectory() as work:
        fixture = seed(Path(work) / "server.db", Stocking.of(scenario))
    schedule = schedule_of(scenario, month, fixture)
    clashes, tokens, pairs = [], 0, 0
    for customer in schedule.customers:
        secret = fixture.secrets[customer.serial]
        if secret.format not in OPENPAYGO:
            continue
        days = [customer.down_days, *(p.days for p in customer.payments)]
        for i, value in enumerate(days):
            tokens += 1
            count = 2 * (i + 1)
            pairs += count  # the lower counts 0..count-1 it may clash with
            start = secret.starting_code
            base = (start % 1000 + value * secret.time_divider) % 1000
            chain = code_chain(STANDARD, secret.key, start - start % 1000 + base, count)
            lower = chain.find(chain.high(count), 0, count - 1)
            if lower >= 0:
                clashes.append(
                    {
                        "device": customer.serial,
                        "token": i,
                        "count": count,
                        "same_as_count": lower,
                        "read_as": "SET" if lower % 2 else "the same text twice",
                    }
                )
    print(
        json.dumps(
            {
                "agents": args.agents,
                "devices": args.devices,
                "days": args.days,
                "seed": args.seed,
                "openpaygo_tokens": tokens,
                "pairs_compared": pairs,
                "clashes": clashes,
                "seconds": round(time.perf_counter() - began, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
