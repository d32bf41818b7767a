"""The platform under the largest field load this machine holds: an open-loop fleet.

Each emulated handset syncs every `--interval` seconds (a batch of 3 operations: register,
sell or pay, pay) on an open-loop schedule, as agents do through the day; mobile-money callbacks
arrive at a rate proportional to the fleet, and distributors read reports at `--report-hz`.
The fleet grows step by step (`--steps`); a step is held when under 1 % of requests fail,
sync p99 stays under `--p99-budget` seconds and the server keeps up with the offered rate.
Latency counts from each request's intended start (no coordinated omission).

Prints one JSON line per step and a final line with the largest step held.
Usage: python benchmarks/server_load.py [--steps 200,600,1500] [--seconds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from hdrh.histogram import HdrHistogram

from agent_client.protocol import envelope
from agent_client.protocol.auth import Claim
from agent_client.protocol.frames import UplinkFrame, decode_downlink, encode_uplink
from agent_client.protocol.keycodes import KeycodeFormat
from field_lab.chaos.world import CONFIG, MM_SECRET
from field_lab.world.fixture import distributor_token
from field_lab.world.mno import Final, MnoConfig, MnoSimulator
from field_lab.world.platform import serving
from server_stub.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from platform_load import Handset, seed

REPORTS = ("sales", "collections", "devices", "activation")


class Step:
    def __init__(self) -> None:
        self.hist = {k: HdrHistogram(1, 120_000_000, 3) for k in ("sync", "report", "mm")}
        self.sent = dict.fromkeys(self.hist, 0)
        self.errors = dict.fromkeys(self.hist, 0)

    def record(self, kind: str, due: float, ok: bool) -> None:
        self.sent[kind] += 1
        if ok:
            self.hist[kind].record_value(max(1, int((time.perf_counter() - due) * 1e6)))
        else:
            self.errors[kind] += 1

    def p(self, kind: str, q: float) -> float:
        return round(self.hist[kind].get_value_at_percentile(q) / 1000, 1)


async def sync(http: aiohttp.ClientSession, url: str, h: Handset, rng: random.Random) -> bool:
    frame = encode_uplink(UplinkFrame(h.handset, h.cursor, tuple(h.batch(3, rng))))
    body = envelope.seal(envelope.sync_key(h.key.seed), h.handset, h.stamp(), frame)
    async with http.post(url + envelope.SYNC_PATH, data=body) as r:  # sync v2, as handsets do
        raw = await r.read()
    if r.status != 200:
        return False
    reply = decode_downlink(raw)
    if reply.entries:
        h.cursor = reply.last_entry
    return not reply.rejected


async def report(http: aiohttp.ClientSession, url: str, i: int, token: str) -> bool:
    path = f"{url}/v1/reports/{REPORTS[i % 4]}?limit=100"
    async with http.get(path, headers={"Authorization": f"Bearer {token}"}) as r:
        await r.read()
        return r.status == 200


async def run_step(handsets: int, args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "server.db"
        fleet = seed(db, handsets, 12, rng, KeycodeFormat.NEXUS_FULL)
        token = distributor_token(db)  # the seeded agents work for the default distributor
        store = Store.open(db)  # each handset registered its v2 sync key when provisioned
        for h in fleet:
            store.set_sync_key(Claim(h.handset, 1, b""), envelope.sync_key(h.key.seed))
        store.close()
        step = Step()
        tasks: list[asyncio.Task[None]] = []
        async with serving(db, config=CONFIG) as url:
            connector = aiohttp.TCPConnector(limit=args.connections)
            timeout = aiohttp.ClientTimeout(total=30)
            mm_config = MnoConfig(delay_s=(0.0, 0.0), duplicate_rate=0.1, seed=args.seed)
            mno = MnoSimulator(f"{url}/v1/mm/callback", MM_SECRET, mm_config)
            await mno.start()
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

                async def timed(kind: str, due: float, call: asyncio.Future[bool] | None) -> None:
                    try:
                        ok = await call if call is not None else False
                    except (aiohttp.ClientError, TimeoutError):
                        ok = False
                    step.record(kind, due, ok)

                # the schedule: every handset once per interval, spread evenly; reports too
                events: list[tuple[float, str, int]] = []
                rounds = max(1, int(args.seconds / args.interval))
                for r in range(rounds):
                    for i in range(handsets):
                        events.append((r * args.interval + i * args.interval / handsets, "sync", i))
                events += [
                    (i / args.report_hz, "report", i)
                    for i in range(int(args.seconds * args.report_hz))
                ]
                events.sort()
                start = time.perf_counter()
                for offset, kind, i in events:
                    due = start + offset
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                    if kind == "sync":
                        h = fleet[i]
                        call = asyncio.ensure_future(sync(http, url, h, rng))
                        if h.sold and rng.random() < args.mm_share:
                            mno.pay(rng.choice(h.sold), 300, "+233240000001")
                    else:
                        call = asyncio.ensure_future(report(http, url, i, token))
                    tasks.append(asyncio.create_task(timed(kind, due, call)))
                await asyncio.gather(*tasks)
                elapsed = time.perf_counter() - start
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
        "seconds": round(elapsed, 1),
    }
    doc["held"] = (
        doc["error_rate"] < 0.01  # type: ignore[operator]
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
    p.add_argument("--p99-budget", type=float, default=2.0, help="sync p99 budget, seconds")
    p.add_argument("--connections", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
