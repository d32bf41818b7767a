"""The platform under the largest field load this machine holds: an open-loop fleet.

Each emulated handset syncs every `--interval` seconds (a batch of 3 operations: register,
sell or pay, pay) on an open-loop schedule, as agents do through the day; mobile-money callbacks
arrive at a rate proportional to the fleet, and distributors read reports at `--report-hz`.
The fleet grows step by step (`--steps`); a step is held when no request fails, sync p99
stays under `--p99-budget` (issue 18: 100 ms) and the server keeps up with the offered rate.
Latency counts from each request's intended start (no coordinated omission).

The load generator shares the machine with the server, so it is lean: each handset's batches
are recorded before the step (they wait in its outbox), and syncs and reports go through
`lean_http` (kept-alive HTTP/1.1 on 127.0.0.1) instead of aiohttp's client; each sync fires
from its own timer on the event loop and its answer reaches a callback (no task, no sleep per
sync). Every sync is still a real exchange (frame encoded with the handset's cursor, envelope
sealed, answer decoded and its cursor kept).

Prints one JSON line per step and a final line with the largest step held.
Usage: python benchmarks/server_load.py [--steps 200,600,1500] [--seconds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from collections.abc import Coroutine
from functools import partial
from pathlib import Path

from hdrh.histogram import HdrHistogram

from agent_client.protocol import envelope
from agent_client.protocol.auth import Claim
from agent_client.protocol.errors import ProtocolError
from agent_client.protocol.frames import UplinkFrame, decode_downlink, encode_uplink
from agent_client.protocol.keycodes import KeycodeFormat
from agent_client.protocol.ops import Kind, Operation
from field_lab.chaos.world import CONFIG, MM_SECRET
from field_lab.world.fixture import distributor_token
from field_lab.world.mno import Final, MnoConfig, MnoSimulator
from server_stub.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from apart import (
    cpu_seconds,
    load_average,
    lock_use,
    served_by,
    serving_options,
    settled_lock_counters,
)
from lean_http import Answer, Client, HttpError, LeanCallbacks
from platform_load import Handset, seed

REPORTS = ("sales", "collections", "devices", "activation")
STRAGGLER_TIMEOUT_S = 30.0
"""How long after the last send an unanswered request still counts (then: failed)."""


class Step:
    def __init__(self) -> None:
        self.hist = {k: HdrHistogram(1, 120_000_000, 3) for k in ("sync", "report", "mm")}
        self.sent = dict.fromkeys(self.hist, 0)
        self.errors = dict.fromkeys(self.hist, 0)

    def record(self, kind: str, due: float, *, ok: bool) -> None:
        self.sent[kind] += 1
        if ok:
            self.hist[kind].record_value(max(1, int((time.perf_counter() - due) * 1e6)))
        else:
            self.errors[kind] += 1

    def p(self, kind: str, q: float) -> float:
        return round(self.hist[kind].get_value_at_percentile(q) / 1000, 1)


def seal(h: Handset, key: bytes, ops: tuple[Operation, ...]) -> bytes:
    """The body of one exchange as a handset makes it (sync v2): the frame with its cursor,
    in a sealed envelope."""
    frame = encode_uplink(UplinkFrame(h.handset, h.cursor, ops))
    return envelope.seal(key, h.handset, h.stamp(), frame)


def taken(h: Handset, ops: tuple[Operation, ...], sold: list[int], answer: Answer) -> bool:
    """The answer read as the handset reads it: downlink decoded and its cursor kept; ok when
    every operation was taken (then the devices it sold join `sold`, the accounts customers
    can pay by mobile money)."""
    if isinstance(answer, HttpError) or answer[0] != 200:
        return False
    try:
        reply = decode_downlink(answer[1])
    except ProtocolError:
        return False
    if reply.entries:
        h.cursor = reply.last_entry
    if reply.rejected:
        return False
    sold += (int(op.field("device")) for op in ops if op.kind is Kind.RECORD_SALE)
    return True


async def report(http: Client, i: int, auth: dict[str, str]) -> bool:
    path = f"/v1/reports/{REPORTS[i % 4]}?limit=100"
    status, _ = await http.request("GET", path, headers=auth)
    return status == 200


async def run_step(handsets: int, args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "server.db"
        fleet = seed(db, handsets, 12, rng, KeycodeFormat.NEXUS_FULL)
        token = distributor_token(db)  # the seeded agents work for the default distributor
        keys = [envelope.sync_key(h.key.seed) for h in fleet]  # each handset keeps its own
        store = Store.open(db)  # each handset registered its v2 sync key when provisioned
        for h, key in zip(fleet, keys, strict=True):
            store.set_sync_key(Claim(h.handset, 1, b""), key)
        store.close()
        step = Step()
        # the handsets' outboxes: each round's batch recorded before the step starts (what a
        # sync sends is already on the handset; the exchange is what is measured)
        rounds = max(1, int(args.seconds / args.interval))
        batches = [[tuple(h.batch(3, rng)) for h in fleet] for _ in range(rounds)]
        async with served_by(args, db, CONFIG) as served:
            url = served.url
            http = Client(url, args.connections)
            auth = {"Authorization": f"Bearer {token}"}
            mm_config = MnoConfig(delay_s=(0.0, 0.0), duplicate_rate=0.1, seed=args.seed)
            mno = MnoSimulator(LeanCallbacks(f"{url}/v1/mm/callback"), MM_SECRET, mm_config)
            await mno.start()
            pending: dict[asyncio.Task[None], tuple[str, float]] = {}
            syncing: dict[int, float] = {}  # exchanges unanswered: number -> intended start
            settled = asyncio.Event()

            async def timed(kind: str, due: float, call: Coroutine[None, None, bool]) -> None:
                try:
                    ok = await call
                except (HttpError, OSError):
                    ok = False
                step.record(kind, due, ok=ok)

            def answered(
                number: int, h: Handset, ops: tuple[Operation, ...], sold: list[int], a: Answer
            ) -> None:
                due = syncing.pop(number, None)
                if due is not None:  # else given up on, and counted failed, already
                    step.record("sync", due, ok=taken(h, ops, sold, a))
                    if not syncing:
                        settled.set()

            # the schedule: every handset once per interval, spread evenly; reports too
            events: list[tuple[float, str, int]] = []
            for r in range(rounds):
                for i in range(handsets):
                    events.append((r * args.interval + i * args.interval / handsets, "sync", i))
            events += [
                (i / args.report_hz, "report", i) for i in range(int(args.seconds * args.report_hz))
            ]
            events.sort()
            sent = [0] * handsets
            sold: list[list[int]] = [[] for _ in fleet]  # devices the platform knows sold

            async def metrics() -> str:
                return (await http.request("GET", "/metrics"))[1].decode()

            lock_before = await settled_lock_counters(metrics)
            cpu_server, cpu_client = served.cpu_seconds(), cpu_seconds()
            cpu_loop = served.loop_cpu_seconds()
            fired = asyncio.Event()

            def fire(number: int, kind: str, i: int, due: float) -> None:
                """One event at its time, straight from the loop's timer: no task, no sleep."""
                if kind == "sync":
                    h, ops = fleet[i], batches[sent[i]][i]
                    sent[i] += 1
                    syncing[number] = due
                    done = partial(answered, number, h, ops, sold[i])
                    http.submit("POST", envelope.SYNC_PATH, seal(h, keys[i], ops), done)
                    if sold[i] and rng.random() < args.mm_share:
                        mno.pay(rng.choice(sold[i]), 300, "+233240000001")
                else:
                    call = report(http, i, auth)
                    pending[asyncio.create_task(timed(kind, due, call))] = (kind, due)
                if number == len(events) - 1:
                    fired.set()

            # every event on the loop's timers before the step starts (latency counts from
            # each one's intended time, `due`; a timer that fires late is counted late)
            loop = asyncio.get_running_loop()
            lead = 0.2 + len(events) * 5e-6
            start, at = time.perf_counter() + lead, loop.time() + lead
            for number, (offset, kind, i) in enumerate(events):
                loop.call_at(at + offset, fire, number, kind, i, start + offset)
            await fired.wait()
            settled.clear()  # set whenever none was in flight; now: when the last one lands
            if syncing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(settled.wait(), STRAGGLER_TIMEOUT_S)
            for due in syncing.values():  # never answered: counted as failed
                step.record("sync", due, ok=False)
            syncing.clear()
            _, late = (
                await asyncio.wait(pending, timeout=STRAGGLER_TIMEOUT_S) if pending else ((), ())
            )
            for task in late:  # never answered: counted as failed
                task.cancel()
                step.record(*pending[task], ok=False)
            await asyncio.gather(*late, return_exceptions=True)
            elapsed = time.perf_counter() - start
            cpu_server = served.cpu_seconds() - cpu_server
            cpu_client = cpu_seconds() - cpu_client
            cpu_loop = served.loop_cpu_seconds() - cpu_loop
            lock = lock_use(lock_before, await settled_lock_counters(metrics), elapsed)
            await http.close()
            await mno.drain(60.0)
            txns = list(mno.history.values())
            await mno.stop()
    acked = sum(1 for t in txns if t.final is Final.ACKNOWLEDGED)
    requests = sum(step.sent.values())
    errors = sum(step.errors.values()) + (len(txns) - acked)
    offered = handsets / args.interval
    achieved = step.sent["sync"] / elapsed
    doc: dict[str, object] = {
        "bench": "server_load",
        "handsets": handsets,
        "sync_per_s_offered": round(offered, 1),
        "sync_per_s_achieved": round(achieved, 1),
        "ops_per_s": round(3 * achieved, 1),
        "requests": requests + len(txns),
        "error_rate": round(errors / max(1, requests + len(txns)), 4),
        "sync_p50_ms": step.p("sync", 50),
        "sync_p99_ms": step.p("sync", 99),
        "report_p99_ms": step.p("report", 99),
        "mm_callbacks": len(txns),
        "errors": {**step.errors, "mm": len(txns) - acked},
        "seconds": round(elapsed, 1),
        # CPU per sync exchange (reports and callbacks included) on each side; in-process the
        # two are one figure (server_cpu_ms_per_exchange holds the sum, client's is null)
        "server_cpu_ms_per_exchange": round(1000 * cpu_server / max(1, step.sent["sync"]), 3),
        # of which the server's event loop (HTTP, frames); the rest: store and report threads
        "server_loop_cpu_ms_per_exchange": None
        if args.in_process
        else round(1000 * cpu_loop / max(1, step.sent["sync"]), 3),
        "client_cpu_ms_per_exchange": None
        if args.in_process
        else round(1000 * cpu_client / max(1, step.sent["sync"]), 3),
        "server_cpu_share": round(cpu_server / elapsed, 2),
        "load_average": load_average(),
        "server_process": "in-process" if args.in_process else "apart",
        "workers": args.workers,
        **lock,
    }
    doc["held"] = (
        errors == 0
        and step.p("sync", 99) < args.p99_budget * 1000
        and achieved >= 0.9 * offered * min(1.0, elapsed / args.seconds)
    )
    return doc


async def main(args: argparse.Namespace) -> None:
    best: dict[str, object] | None = None
    for handsets in args.steps:
        doc = await run_step(handsets, args)
        print(json.dumps(doc), flush=True)
        if not doc["held"]:
            break
        best = doc
    print(json.dumps({"bench": "server_load", "largest_held": best}), flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--steps",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[100, 200, 300, 450, 600, 900],
    )
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--interval", type=float, default=2.0, help="seconds between a handset's syncs")
    p.add_argument("--report-hz", type=float, default=10.0)
    p.add_argument("--mm-share", type=float, default=0.1, help="chance a sync brings a payment")
    p.add_argument(
        "--p99-budget", type=float, default=0.1, help="sync p99 budget, seconds (issue 18: 100 ms)"
    )
    p.add_argument("--connections", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    serving_options(p)
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
