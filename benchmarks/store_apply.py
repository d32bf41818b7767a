"""The store thread's cost per Nexus operation, without HTTP: `platform_load`'s workload
applied straight through `Store.exchange`, one exchange per group commit.

`platform_load` measures the whole server (event loop, store thread, report readers) and its
throughput moves with the machine's load; this isolates the per-operation apply path (ledger,
SQL, keycode issuing, downlink) so a change to it can be compared back to back with another
checkout. Prints one JSON object: CPU and wall time per operation and SQL statements per
operation (counted with sqlite3's trace callback in a separate pass, as tracing costs time).
`--statements` adds the count of each statement shape; `--profile N` prints cProfile's top N
functions (by own time) to stderr. `--writers N` applies the exchanges in turn through N
stores on the file (as N workers of `serve --workers N` do, each with the cross-process write
lock): each store's memo is then forgotten at nearly every transaction, because another wrote.

`per_kind` then times each kind of operation alone, `--per-kind` of each per handset in
exchanges of `--batch` (CPU µs per operation): `register` (customers), `sale` (of those
customers, a Nexus keycode for each down payment), `payment` (cash for those devices, a keycode
each) and `mobile_money` (operator callbacks for them, one transaction each, `--batch` to a
group commit as the store thread groups them under load). `--profile-kind KIND` profiles that
phase instead of the mixed one.

Usage: python benchmarks/store_apply.py [--exchanges 40] [--batch 60] [--handsets 8]
[--per-kind 600]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from agent_client.protocol.auth import Claim
from agent_client.protocol.keycodes import KeycodeFormat
from agent_client.protocol.ops import Kind, Operation
from server_stub.callbacks import MoneyCallback
from server_stub.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from platform_load import PRICE, Handset, seed, workload

LITERALS = re.compile(r"\b\d+\b|x'[0-9a-fA-F]*'|'[^']*'")


def run(
    stores: list[Store], batches: list[tuple[Handset, list[Operation]]], stamp: list[int]
) -> tuple[float, float]:
    """Apply every batch as one exchange in its own group commit, the stores taking turns;
    (CPU s, wall s)."""
    cpu, wall = time.process_time(), time.perf_counter()
    for i, (h, ops) in enumerate(batches):
        store = stores[i % len(stores)]
        stamp[0] += 1
        with store.group():
            page = store.exchange(Claim(h.handset, stamp[0], b""), ops, h.cursor, stamp[0])
        if page.entries:
            h.cursor = page.last_entry
    return time.process_time() - cpu, time.perf_counter() - wall


KINDS = ("register", "sale", "payment", "mobile_money")


def per_kind(
    store: Store, handsets: list[Handset], args: argparse.Namespace, stamp: list[int]
) -> dict[str, float]:
    """CPU µs per operation of each kind applied alone (see the module's docstring)."""
    at = int(time.time())
    customers: dict[int, list[int]] = {h.handset: [] for h in handsets}
    devices: list[int] = []

    def register(h: Handset) -> Operation:
        h.seq += 1
        customers[h.handset].append(h.seq)
        return Operation.make(h.seq, Kind.REGISTER_CUSTOMER, at, "Esi", "+233200000001")

    def sale(h: Handset) -> Operation:
        h.seq += 1
        device = h.stock.pop()
        h.sold.append(device)
        devices.append(device)
        customer = customers[h.handset].pop()
        return Operation.make(h.seq, Kind.RECORD_SALE, at, customer, device, 1, 7 * PRICE)

    def payment(h: Handset) -> Operation:
        h.seq += 1
        return Operation.make(h.seq, Kind.RECORD_PAYMENT, at, h.sold[-1 - h.seq % 50], PRICE)

    figures: dict[str, float] = {}
    for kind, make in (("register", register), ("sale", sale), ("payment", payment)):
        n = args.per_kind // args.batch
        timed = [(h, [make(h) for _ in range(args.batch)]) for _ in range(n) for h in handsets]
        cpu, _ = profiled(args, kind, lambda timed=timed: run([store], timed, stamp))
        figures[kind] = round(1e6 * cpu / (n * args.batch * len(handsets)), 1)
    calls = [
        MoneyCallback(f"mm-{stamp[0]}-{i}", str(d), PRICE, "+233200000002", "success", stamp[0])
        for i, d in enumerate(devices)
    ]

    def money() -> tuple[float, float]:
        cpu = time.process_time()
        for i in range(0, len(calls), args.batch):
            stamp[0] += 1
            with store.group():
                for cb in calls[i : i + args.batch]:
                    store.mobile_money(cb, stamp[0])
        return time.process_time() - cpu, 0.0

    cpu, _ = profiled(args, "mobile_money", money)
    figures["mobile_money"] = round(1e6 * cpu / len(calls), 1)
    return figures


def profiled(
    args: argparse.Namespace, phase: str, work: Callable[[], tuple[float, float]]
) -> tuple[float, float]:
    """`work()`, under cProfile when `phase` is the one asked for (top N to stderr)."""
    if not args.profile or args.profile_kind != phase:
        return work()
    profile = cProfile.Profile()
    profile.enable()
    try:
        return work()
    finally:
        profile.disable()
        stats = pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime")
        stats.print_stats(args.profile)


def main(args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "store.db"
        handsets = seed(db, args.handsets, args.devices, rng, KeycodeFormat[args.format.upper()])
        stores = [Store.open(db, write_lock=args.writers > 1) for _ in range(args.writers)]
        try:
            stamp = [int(time.time() * 1000)]
            warm = [(h, []) for h in handsets] * 20  # download the stock (256 entries a page)
            run(stores, warm + [(h, h.batch(args.batch, rng)) for h in handsets], stamp)

            def batches() -> list[tuple[Handset, list[Operation]]]:
                return [
                    (h, h.batch(args.batch, rng)) for _ in range(args.exchanges) for h in handsets
                ]

            timed = batches()
            ops = sum(len(b) for _, b in timed)
            cpu, wall = profiled(args, "mixed", lambda: run(stores, timed, stamp))
            shapes: Counter[str] = Counter()
            for each in stores:
                each.db.set_trace_callback(lambda sql: shapes.update([LITERALS.sub("?", sql)]))
            traced = batches()
            run(stores, traced, stamp)
            for each in stores:
                each.db.set_trace_callback(None)
            traced_ops = sum(len(b) for _, b in traced)
            kinds = per_kind(stores[0], handsets, args, stamp) if args.per_kind else {}
        finally:
            for each in stores:
                each.close()
    doc: dict[str, object] = {
        "bench": "store_apply",
        "writers": args.writers,
        "ops": ops,
        "batch": args.batch,
        "handsets": args.handsets,
        "keycode_format": args.format,
        "cpu_us_per_op": round(1e6 * cpu / ops, 1),
        "wall_us_per_op": round(1e6 * wall / ops, 1),  # includes each group's commit (fsync)
        "statements_per_op": round(sum(shapes.values()) / traced_ops, 2),
        "per_kind_cpu_us": kinds,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    if args.statements:
        doc["statements"] = {
            sql[:100]: round(n / traced_ops, 2) for sql, n in shapes.most_common(args.statements)
        }
    return doc


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exchanges", type=int, default=40, help="timed exchanges per handset")
    workload(p)
    p.add_argument("--statements", type=int, default=0, help="list the N most frequent")
    p.add_argument("--per-kind", type=int, default=600, help="operations of each kind per handset")
    p.add_argument("--profile", type=int, default=0, help="cProfile's top N to stderr")
    p.add_argument(
        "--writers", type=int, choices=range(1, 9), default=1, help="stores taking turns"
    )
    p.add_argument(
        "--profile-kind", choices=("mixed", *KINDS), default="mixed", help="the phase profiled"
    )
    args = p.parse_args(argv)
    if args.per_kind and args.per_kind < args.batch:
        p.error(f"--per-kind must be 0 (none) or at least --batch ({args.batch})")
    return args


if __name__ == "__main__":
    print(json.dumps(main(parse(sys.argv[1:]))), flush=True)
