"""Sustained sync ingest and distributor-report latency on the embedded SQLite default.

One in-process server-stub on 127.0.0.1 (aiohttp, one store thread, report reader threads).
`--handsets` emulated handsets (one agent each, with its own stock) sync signed compact frames
back to back, `--batch` operations per request (register a customer, sell a device, take a
payment; payments only once a handset's stock is sold out). A report client asks for the first
page of the four reports on an open-loop schedule (`--report-hz`), latency measured from each
request's intended start, so a stalled server cannot hide its queue (no coordinated omission).

Phases in the same run, so every figure has its own baseline:
    reports_idle        report latency with no ingest                  (the latency baseline)
    ingest_alone        sync ingest with no report traffic             (the throughput baseline)
    ingest_with_reports both at once: ops/s and report p50/p99, each as a ratio to its baseline,
                        and each sync exchange's time (sync_p50_ms, sync_p99_ms; handsets
                        sync back to back, so this is the platform's answer time per batch)
    mm_alone            mobile-money payments (`--mm-hz`, open loop, 10 % duplicate callbacks):
                        payment to the platform's answer (keycode committed), p50/p99
                                                                       (the activation baseline)
    mm_with_ingest      the same payments during sync ingest, as ratios to mm_alone
    ingest_held         an open-model load: `--held-ops` operations/s (default 5,000) offered
                        as `--batch`-operation syncs on a fixed schedule (batch i is due at
                        start + i * batch / rate), with reports running; each sync's time
                        counts from when it was due, so a late start is latency too (no
                        coordinated omission). A handset syncs one batch at a time, as real
                        ones do, and there are enough of them (`--held-handsets`; default:
                        each due every ~100 ms) that one still busy is the exception. Prints
                        offered_ops_s, achieved_ops_s (operations acknowledged per second from
                        the first due time to the last answer), sync_p50_ms, sync_p99_ms,
                        errors (syncs refused, failed or unanswered within 10 s), held (achieved
                        >= 99 % of offered, no errors, sync p99 < 50 ms) and server CPU per op

Why ingest_held: in ingest_with_reports the handsets sync back to back (a closed loop), so
handsets x batch operations are always in flight and, by Little's law, a sync takes
in-flight / throughput whatever the platform does (8 x 60 = 480 operations: p99 < 50 ms would
need ~9,600 ops/s); a rate that the platform "holds with sync p99 < 50 ms" is an open-model
statement, measured by ingest_held.

Prints one JSON object per line. Usage: python benchmarks/platform_load.py [--seconds 8]
[--held-ops 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from hdrh.histogram import HdrHistogram

from agent_client.protocol.auth import HandsetKey
from agent_client.protocol.frames import UplinkFrame, decode_downlink, encode_uplink
from agent_client.protocol.keycodes import KeycodeFormat
from agent_client.protocol.ops import Kind, Operation
from field_lab.world.fixture import distributor_token
from field_lab.world.mno import Final, MnoConfig, MnoSimulator
from server_stub.app import SYNC_PATH, Platform
from server_stub.devices import make_devices
from server_stub.reports import Reports
from server_stub.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from apart import (
    Served,
    cpu_seconds,
    load_average,
    lock_use,
    served_by,
    serving_options,
    settled_lock_counters,
)

PRICE = 100
HELD_INTERVAL_S = 0.1  # by default each held-phase handset syncs at most this often
SYNC_TIMEOUT_S = 10.0  # an open-loop sync unanswered by then counts as an error
SECRET = b"benchmark-operator-secret"
REPORTS = ("sales", "collections", "devices", "activation")


@dataclass
class Handset:
    handset: int
    key: HandsetKey
    stock: list[int]
    seq: int = 0
    cursor: int = 0
    last_ms: int = 0
    sold: list[int] = field(default_factory=list)

    def stamp(self) -> int:
        self.last_ms = max(int(time.time() * 1000), self.last_ms + 1)
        return self.last_ms

    def batch(self, size: int, rng: random.Random) -> list[Operation]:
        ops: list[Operation] = []
        at = int(time.time())
        while len(ops) + 3 <= size:
            self.seq += 1
            customer = self.seq
            ops.append(Operation.make(customer, Kind.REGISTER_CUSTOMER, at, "Esi", "+233200000001"))
            self.seq += 1
            device = 0
            if self.stock:
                device = self.stock.pop()
                self.sold.append(device)
                ops.append(
                    Operation.make(self.seq, Kind.RECORD_SALE, at, customer, device, 1, 7 * PRICE)
                )
            else:
                ops.append(
                    Operation.make(self.seq, Kind.RECORD_PAYMENT, at, rng.choice(self.sold), PRICE)
                )
            self.seq += 1
            # the device just sold, or once stock is out any sold one: spreading payments keeps
            # per-device keycode counts realistic (OpenPAYGO issuing cost grows with the count)
            paid = device or rng.choice(self.sold)
            ops.append(Operation.make(self.seq, Kind.RECORD_PAYMENT, at, paid, 3 * PRICE))
        return ops


def seed(
    db: Path, handsets: int, devices: int, rng: random.Random, fmt: KeycodeFormat
) -> list[Handset]:
    store = Store.open(db)
    try:
        store.add_plan("solar-home", PRICE)
        made = []
        for h in range(handsets):
            agent, code = store.add_agent(f"agent{h}")
            records = make_devices(10_000_001 + h * devices, devices, fmt, rng)
            store.add_devices(agent, records)
            key = HandsetKey.from_seed(rng.randbytes(32))
            handset = store.provision(f"agent{h}", code, key.public, 0)
            made.append(Handset(handset, key, [r.device for r in records]))
        return made
    finally:
        store.close()


async def sync_once(
    http: aiohttp.ClientSession, url: str, h: Handset, ops: list[Operation]
) -> tuple[int, bool]:
    body = encode_uplink(UplinkFrame(h.handset, h.cursor, tuple(ops)))
    headers = h.key.headers("POST", SYNC_PATH, body, h.handset, h.stamp())
    async with http.post(url, data=body, headers=headers) as response:
        raw = await response.read()
        if response.status != 200:
            raise RuntimeError(f"sync refused {response.status}: {raw[:200]!r}")
    reply = decode_downlink(raw)
    if reply.entries:
        h.cursor = reply.last_entry
    if len(reply.acked) != len(ops) or reply.rejected:
        raise RuntimeError(f"not every op acknowledged: {reply.rejected[:5]}")
    return len(reply.acked), reply.more


async def ingest(
    http: aiohttp.ClientSession,
    url: str,
    handsets: list[Handset],
    batch: int,
    seconds: float,
    rng: random.Random,
    exchanges: HdrHistogram | None = None,
) -> tuple[int, float]:
    """Every handset syncs back to back until the deadline; returns (ops acked, elapsed).

    Each exchange's time (request sent to answer decoded) goes into `exchanges` when given.
    """
    began = time.perf_counter()
    deadline = began + seconds
    total = 0

    async def one(h: Handset) -> None:
        nonlocal total
        while (sent := time.perf_counter()) < deadline:
            acked, _ = await sync_once(http, url, h, h.batch(batch, rng))
            if exchanges is not None:
                exchanges.record_value(max(1, int((time.perf_counter() - sent) * 1e6)))
            total += acked

    await asyncio.gather(*(one(h) for h in handsets))
    return total, time.perf_counter() - began


@dataclass
class Held:
    """What an open-loop ingest run measured."""

    syncs: HdrHistogram  # each sync's time from when it was due, microseconds
    acked: int = 0
    errors: int = 0
    first_due: float = 0.0
    last_answer: float = 0.0

    @property
    def elapsed(self) -> float:
        return max(1e-9, self.last_answer - self.first_due)


async def ingest_open(
    http: aiohttp.ClientSession,
    url: str,
    handsets: list[Handset],
    batch: int,
    ops_per_s: float,
    seconds: float,
    rng: random.Random,
) -> Held:
    """Open loop: batch i (of `seconds * ops_per_s / batch`) is due at start + i * batch /
    ops_per_s, from handset i mod len(handsets), which syncs one batch at a time: a batch whose
    handset is still busy starts late, and its time still counts from when it was due."""
    interval = batch / ops_per_s
    due = int(seconds / interval)
    held = Held(HdrHistogram(1, 60_000_000, 3))
    held.first_due = held.last_answer = time.perf_counter() + 0.01

    async def one(first: int, h: Handset) -> None:
        for i in range(first, due, len(handsets)):
            at = held.first_due + i * interval
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            try:
                acked, _ = await asyncio.wait_for(
                    sync_once(http, url, h, h.batch(batch, rng)), SYNC_TIMEOUT_S
                )
                held.acked += acked
            except (RuntimeError, aiohttp.ClientError, TimeoutError):
                held.errors += 1
            answered = time.perf_counter()
            held.syncs.record_value(max(1, int((answered - at) * 1e6)))
            held.last_answer = max(held.last_answer, answered)

    await asyncio.gather(*(one(k, h) for k, h in enumerate(handsets)))
    return held


def held_handsets(args: argparse.Namespace) -> int:
    """Handsets in ingest_held: as asked, or enough that each is due every HELD_INTERVAL_S."""
    return args.held_handsets or math.ceil(args.held_ops / args.batch * HELD_INTERVAL_S)


async def reports(
    http: aiohttp.ClientSession, base: str, hz: float, seconds: float, token: str
) -> HdrHistogram:
    """Open loop: request i is due at start + i/hz; its latency counts from then."""
    hist = HdrHistogram(1, 60_000_000, 3)  # microseconds
    start = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []

    async def one(i: int, due: float) -> None:
        path = f"{base}/v1/reports/{REPORTS[i % 4]}?limit=100"
        async with http.get(path, headers={"Authorization": f"Bearer {token}"}) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"report answered {response.status}")
        hist.record_value(max(1, int((time.perf_counter() - due) * 1e6)))

    for i in range(int(seconds * hz)):
        due = start + i / hz
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    return hist


async def payments(
    mno: MnoSimulator, sold: list[int], hz: float, seconds: float, rng: random.Random
) -> list[str]:
    """Open loop: a payment every 1/hz s for a device already sold; waits for callbacks."""
    start = time.perf_counter()
    txns = []
    for i in range(int(seconds * hz)):
        await asyncio.sleep(max(0.0, start + i / hz - time.perf_counter()))
        txns.append(mno.pay(rng.choice(sold), 3 * PRICE, "+233200000001"))
    if not await mno.drain(120.0):
        raise RuntimeError("callbacks still running after 120 s")
    for t in txns:
        txn = mno.history[t]
        if txn.final is not Final.ACKNOWLEDGED:
            seen = [(a.status, a.error, a.answer) for a in txn.attempts]
            raise RuntimeError(f"payment {t} ended {txn.final.value}: {seen}")
    return txns


def activation(db: Path, mno: MnoSimulator, txns: list[str]) -> HdrHistogram:
    """Payment to the platform's answer, which comes after the keycode is committed (the
    operator's clock, microseconds); every payment must have its keycode step recorded."""
    hist = HdrHistogram(1, 60_000_000, 3)  # microseconds
    reports = Reports.open(db)
    try:
        for txn_id in txns:
            steps = reports.payment(txn_id, None)
            if steps is None or steps["issued_ms"] is None:
                raise RuntimeError(f"payment {txn_id} has no keycode: {steps}")
            txn = mno.history[txn_id]
            answered = min(a.answered_at for a in txn.attempts if a.answered_at is not None)
            hist.record_value(max(1, int((answered - txn.paid_at) * 1e6)))
    finally:
        reports.close()
    return hist


def latency(hist: HdrHistogram) -> dict[str, float]:
    return {
        "n": hist.get_total_count(),
        "p50_ms": hist.get_value_at_percentile(50) / 1000,
        "p99_ms": hist.get_value_at_percentile(99) / 1000,
        "max_ms": hist.get_max_value() / 1000,
    }


def cpu_per_op(
    served: Served, before: tuple[float, float, float], ops: int, seconds: float, in_process: bool
) -> dict[str, object]:
    """CPU per operation on each side since `before` (server, client, server's event loop).
    In-process the two are one figure: the server's holds the sum and the client's is null."""
    server = served.cpu_seconds() - before[0]
    client = cpu_seconds() - before[1]
    loop = served.loop_cpu_seconds() - before[2]
    return {
        "server_cpu_us_per_op": round(1e6 * server / max(1, ops), 1),
        # of which the event loop (HTTP, frames); the rest is the store and report threads
        "server_loop_cpu_us_per_op": None if in_process else round(1e6 * loop / max(1, ops), 1),
        "client_cpu_us_per_op": None if in_process else round(1e6 * client / max(1, ops), 1),
        "server_cpu_share": round(server / seconds, 2),
        "load_average": load_average(),
        "server_process": "in-process" if in_process else "apart",
        "workers": served.workers,
    }


def emit(**doc: object) -> None:
    print(json.dumps({"bench": "platform_load", **doc}), flush=True)


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "platform.db"
        fmt = KeycodeFormat[args.format.upper()]
        everyone = seed(db, max(args.handsets, held_handsets(args)), args.devices, rng, fmt)
        handsets = everyone[: args.handsets]  # the closed-loop phases' handsets
        token = distributor_token(db)  # the seeded agents work for the default distributor
        async with served_by(args, db, Platform(mm_secret=SECRET)) as served:
            base = served.url
            url = base + SYNC_PATH
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
                for h in everyone:  # warm: download the stock, then a first batch of sales
                    more = True
                    while more:
                        _, more = await sync_once(http, url, h, [])
                    await sync_once(http, url, h, h.batch(args.batch, rng))
                idle = latency(await reports(http, base, args.report_hz, args.seconds / 2, token))
                emit(phase="reports_idle", **idle)
                cpu = served.cpu_seconds(), cpu_seconds(), served.loop_cpu_seconds()
                alone_ops, alone_s = await ingest(
                    http, url, handsets, args.batch, args.seconds, rng
                )
                alone = alone_ops / alone_s
                alone_cpu = cpu_per_op(served, cpu, alone_ops, alone_s, args.in_process)
                emit(
                    phase="ingest_alone",
                    ops=alone_ops,
                    seconds=round(alone_s, 3),
                    ops_per_s=round(alone, 1),
                    keycode_format=args.format,
                    handsets=args.handsets,
                    batch=args.batch,
                    **alone_cpu,
                )
                syncs = HdrHistogram(1, 60_000_000, 3)  # microseconds
                cpu = served.cpu_seconds(), cpu_seconds(), served.loop_cpu_seconds()
                ingest_task = asyncio.create_task(
                    ingest(http, url, handsets, args.batch, args.seconds, rng, syncs)
                )
                busy = latency(await reports(http, base, args.report_hz, args.seconds, token))
                ops, elapsed = await ingest_task
                busy_cpu = cpu_per_op(served, cpu, ops, elapsed, args.in_process)
                rate = ops / elapsed
                sync = latency(syncs)
                emit(
                    phase="ingest_with_reports",
                    ops=ops,
                    seconds=round(elapsed, 3),
                    ops_per_s=round(rate, 1),
                    ops_per_s_ratio=round(rate / alone, 3),
                    keycode_format=args.format,
                    **busy,
                    p50_ratio=round(busy["p50_ms"] / idle["p50_ms"], 2),
                    p99_ratio=round(busy["p99_ms"] / idle["p99_ms"], 2),
                    report_hz=args.report_hz,
                    sync_exchanges=sync["n"],
                    sync_p50_ms=sync["p50_ms"],
                    sync_p99_ms=sync["p99_ms"],
                    **busy_cpu,  # reports' CPU included
                )
                mno = MnoSimulator(
                    base + "/v1/mm/callback",
                    SECRET,
                    MnoConfig(delay_s=(0.0, 0.0), duplicate_rate=0.1, seed=args.seed),
                )
                await mno.start()
                try:
                    # only devices whose sale is acknowledged (no batch is in flight here)
                    sold = [d for h in handsets for d in h.sold]
                    txns = await payments(mno, sold, args.mm_hz, args.seconds / 2, rng)
                    mm_idle = latency(activation(db, mno, txns))
                    emit(phase="mm_alone", mm_hz=args.mm_hz, **mm_idle)
                    ingest_task = asyncio.create_task(
                        ingest(http, url, handsets, args.batch, args.seconds, rng)
                    )
                    txns = await payments(mno, sold, args.mm_hz, args.seconds, rng)
                    ops, elapsed = await ingest_task
                    mm_busy = latency(activation(db, mno, txns))
                    emit(
                        phase="mm_with_ingest",
                        mm_hz=args.mm_hz,
                        ops_per_s=round(ops / elapsed, 1),
                        **mm_busy,
                        p50_ratio=round(mm_busy["p50_ms"] / mm_idle["p50_ms"], 2),
                        p99_ratio=round(mm_busy["p99_ms"] / mm_idle["p99_ms"], 2),
                    )
                finally:
                    await mno.stop(timeout_s=10.0)
                emit(phase="ingest_held", **await held_phase(args, served, http, everyone, token))


async def held_phase(
    args: argparse.Namespace,
    served: Served,
    http: aiohttp.ClientSession,
    everyone: list[Handset],
    token: str,
) -> dict[str, object]:
    """ingest_held: `--held-ops` offered on an open-loop schedule, reports running."""
    rng = random.Random(args.seed + 1)
    handsets = everyone[: held_handsets(args)]

    async def metrics() -> str:
        async with http.get(served.url + "/metrics") as response:
            return await response.text()

    lock_before = await settled_lock_counters(metrics)
    cpu = served.cpu_seconds(), cpu_seconds(), served.loop_cpu_seconds()
    ingest_task = asyncio.create_task(
        ingest_open(
            http, served.url + SYNC_PATH, handsets, args.batch, args.held_ops, args.seconds, rng
        )
    )
    busy = latency(await reports(http, served.url, args.report_hz, args.seconds, token))
    held = await ingest_task
    achieved = held.acked / held.elapsed
    sync = latency(held.syncs)
    spent = cpu_per_op(served, cpu, held.acked, held.elapsed, args.in_process)
    lock = lock_use(lock_before, await settled_lock_counters(metrics), held.elapsed)
    return {
        "offered_ops_s": args.held_ops,
        "achieved_ops_s": round(achieved, 1),
        "sync_p50_ms": sync["p50_ms"],
        "sync_p99_ms": sync["p99_ms"],
        "sync_max_ms": sync["max_ms"],
        "errors": held.errors,
        "held": achieved >= 0.99 * args.held_ops and held.errors == 0 and sync["p99_ms"] < 50,
        "sync_exchanges": sync["n"],
        "handsets": len(handsets),
        "batch": args.batch,
        "seconds": round(held.elapsed, 3),
        "keycode_format": args.format,
        "report_hz": args.report_hz,
        "report_p50_ms": busy["p50_ms"],
        "report_p99_ms": busy["p99_ms"],
        **spent,
        **lock,
    }


def workload(p: argparse.ArgumentParser) -> None:
    """The workload's arguments (also `store_apply`'s, which applies it without HTTP)."""
    p.add_argument("--handsets", type=int, default=8)
    p.add_argument("--batch", type=int, default=60, help="operations per sync request")
    p.add_argument("--devices", type=int, default=4000, help="stock per handset")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--format",
        choices=[f.name.lower() for f in KeycodeFormat],
        default="nexus_full",
        help="keycode format of the devices (issuing cost differs by library)",
    )


def positive(text: str) -> float:
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=8.0)
    workload(p)
    p.add_argument("--report-hz", type=float, default=40.0)
    p.add_argument("--mm-hz", type=float, default=20.0, help="mobile-money payments per second")
    p.add_argument(
        "--held-ops",
        type=positive,
        default=5000.0,
        help="operations per second offered in ingest_held (open loop)",
    )
    p.add_argument(
        "--held-handsets",
        type=lambda text: int(positive(text) if text != "0" else 0),
        default=0,
        help="handsets in ingest_held (0: enough that each syncs every ~100 ms)",
    )
    serving_options(p)
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
