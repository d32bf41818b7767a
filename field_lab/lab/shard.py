"""One shard of a run, in its own process: `python -m field_lab.lab.shard` (the parent starts it).

The parent writes one JSON line (the shard's orders: scenario, platform URL, fixture file,
operator secret, shard index and count, adapter, behaviours) and then, as the run goes, the
SMS that reach this shard's customers. The shard runs its part of the fleet as a `Lab` against
that platform and writes JSON lines back: a `report` (figures as counters and histogram
blobs, the latest sample) every `REPORT_EVERY_S`, then `done` with its evidence for the judge,
or `error` with the exit code its failure means. When the parent goes away (its end of the
pipe closes) the shard stops at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent_client.errors import AgentError
from field_lab.errors import ConfigError, HarnessError
from field_lab.lab.command import target_problem
from field_lab.lab.lab import SET_UP_PHASES, Lab, Target
from field_lab.lab.launch import INBOX_LIMIT
from field_lab.lab.wire import evidence_to_wire, stats_to_wire
from field_lab.measure.slo import EXIT_HARNESS_ERROR
from field_lab.scenario import parse
from field_lab.workload.plan import Shard
from field_lab.world.fixture import Fixture
from field_lab.world.sms import Message
from field_lab.world.traces import TraceBook

REPORT_EVERY_S = 2.0
EXIT_USAGE = 2


def lab_of(orders: dict[str, Any], workdir: Path) -> Lab:
    shard = Shard(int(orders["shard"]), int(orders["shards"]))
    secret = orders.get("mm_secret")
    target = Target(
        orders["url"],
        Fixture.load(orders["fixture"]),
        None,  # the parent reads the audit API once, for every shard
        bytes.fromhex(secret) if secret else None,
    )
    traces = orders.get("traces")
    return Lab(
        parse(orders["scenario"]),
        workdir,
        target=target,
        adapter=orders.get("adapter", "compact"),
        behaviour=orders.get("behaviour"),
        customer_behaviour=orders.get("customer_behaviour"),
        traces=TraceBook(Path(traces)) if traces else None,
        shard=shard,
        readers=False,
        judging=False,
    )


def report(lab: Lab) -> dict[str, Any]:
    return {
        "t": "report",
        "phase": lab.phase,
        "stats": stats_to_wire(lab.stats),
        "row": lab.series[-1] if lab.series else {},
    }


def done(lab: Lab) -> dict[str, Any]:
    assert lab.evidence is not None
    return {
        "t": "done",
        "stats": stats_to_wire(lab.stats),
        "evidence": evidence_to_wire(lab.evidence),
        "series": lab.series,
        "handsets": lab.handsets,
        "sites": len(lab.sites),
        "planned": lab.planned,
        "plan": [list(event) for event in lab.plan_part],
        "traces": lab.traces.write() if lab.traces is not None else 0,
    }


Send = Callable[[dict[str, Any]], None]


def send_line(doc: dict[str, Any]) -> None:
    """A shard process's way to its parent: one JSON line on stdout."""
    sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def follow(lab: Lab, inbox: asyncio.StreamReader, running: asyncio.Future[Any]) -> None:
    """SMS for this shard's customers until the parent closes the pipe (then stop the run)."""
    while line := await inbox.readline():
        sms = json.loads(line)["sms"]
        if lab.field is not None:
            lab.field.sms_arrived(Message(str(sms[0]), str(sms[1]), float(sms[2])))
    running.cancel()


async def serve(inbox: asyncio.StreamReader, send: Send) -> int:
    """One shard from its orders to its last word: `done`, or `error` with its exit code.
    `inbox` carries the orders line, then SMS lines; its end means the parent went away.
    What carries the lines is the launcher's (a pipe here; a Ray actor's queues elsewhere)."""
    try:
        return await _serve(inbox, send)
    except Exception as exc:
        last = failed(exc)
        send(last)
        return int(last["code"])


def failed(exc: Exception) -> dict[str, Any]:
    """A failed shard's last word: the exit code its failure means and one line saying it."""
    if isinstance(exc, ConfigError):
        code, message = EXIT_USAGE, str(exc)
    elif isinstance(exc, HarnessError):
        code, message = EXIT_HARNESS_ERROR, str(exc)
    else:  # a lab bug: say what, in one line
        code, message = EXIT_HARNESS_ERROR, f"{type(exc).__name__}: {exc}"
    return {"t": "error", "code": code, "message": message}


async def _serve(inbox: asyncio.StreamReader, send: Send) -> int:
    orders = json.loads(await inbox.readline())
    with tempfile.TemporaryDirectory(prefix=f"field-lab-shard{orders['shard']}-") as tmp:
        lab = lab_of(orders, Path(tmp))
        last = [0.0]

        def progress(current: Lab) -> None:
            now = time.monotonic()
            if now - last[0] >= REPORT_EVERY_S:
                last[0] = now
                send(report(current))

        lab.progress = progress
        running = asyncio.ensure_future(lab.run())
        listening = asyncio.ensure_future(follow(lab, inbox, running))
        try:
            await running
        except AgentError as exc:
            if lab.phase not in SET_UP_PHASES:
                raise  # the platform refused a handset in the field: the lab's fault
            raise ConfigError(target_problem(orders["url"], orders["fixture_given"], exc)) from exc
        except asyncio.CancelledError:
            send({"t": "error", "code": EXIT_HARNESS_ERROR, "message": "the parent went away"})
            return EXIT_HARNESS_ERROR
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
        send(done(lab))
    return 0


async def shard_main() -> int:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=INBOX_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    return await serve(stdin, send_line)


def main() -> int:
    if os.getcwd() not in sys.path:  # behaviours are named as modules of the user's project
        sys.path.insert(0, os.getcwd())
    return asyncio.run(shard_main())


if __name__ == "__main__":
    sys.exit(main())
