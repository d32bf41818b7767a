"""One shard of a sharded month, in its own process: `python -m field_lab.simulate.shard` (the
parent, `field_lab.simulate.shards`, starts it).

It reads one JSON line of orders (scenario, month, shard index and count, its work folder),
runs its part of the month (`simulate(..., shard=...)`) and writes JSON lines back, in the
same words as `field_lab.lab.shard`: a `report` per progress line (with its CPU seconds), then
`done` with its own summary.json, its dark hours and its month (agents resolved), or `error`
with the exit code its failure means. The simulation runs its own event loops, so this shell
is plain blocking code; if the parent goes away, the next line it writes fails and the shard
ends.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from field_lab.lab.shard import failed, send_line
from field_lab.scenario import parse
from field_lab.simulate import month as months
from field_lab.simulate.command import summary
from field_lab.simulate.run import simulate
from field_lab.simulate.shards import dark_to_wire
from field_lab.workload.plan import Shard


def run(orders: dict[str, Any]) -> dict[str, Any]:
    """The shard's month from its orders; its last word."""
    workdir = Path(orders["workdir"])
    workdir.mkdir(parents=True, exist_ok=False)

    def progress(line: str) -> None:
        send_line({"t": "report", "line": line, "cpu": time.process_time()})

    outcome = simulate(
        parse(orders["scenario"]),
        months.parse(orders["month"]),
        workdir,
        shard=Shard(int(orders["shard"]), int(orders["shards"])),
        progress=progress,
    )
    return {
        "t": "done",
        "summary": summary(outcome),
        "dark": dark_to_wire(outcome.dark),
        "month": months.to_dict(outcome.month),
        "cpu": time.process_time(),
    }


def main() -> int:
    try:
        last = run(json.loads(sys.stdin.readline()))
    except Exception as exc:
        last = failed(exc)
    send_line(last)
    return int(last.get("code", 0))


if __name__ == "__main__":
    sys.exit(main())
