"""Meter validation throughput per protocol, and the size of the persisted state.

Prints one JSON object per line. Throughput is reported next to the floor measured in the
same run: a validation needs at least one SipHash-2-4 call, so `cost_in_siphash_calls` says
how many MAC computations' worth of time one validation takes (machine-independent-ish).
`validations_per_s` is by the wall clock; `validations_per_cpu_s` by this process's CPU time,
the per-core figure that holds on a machine other processes share (the first line gives the
load average and which SipHash the meter uses).
The Meter runs with rate limiting off and an in-memory medium; every applied code also
writes its NV slot, as on the device. What is timed is `Meter.enter_keycode(text, now)`, the
whole path a user's code takes: separators dropped, framing checked, the code validated,
credit applied, the 32-byte NV slot written (CRC, alternate slot) and the `Result` built.

On a shared machine one run's CPU time is inflated by the other processes (caches, SMT
siblings), so each case runs `REPEATS` times, on a fresh meter for the applied codes, and the
best run is reported (as `timeit` does); `runs_per_cpu_s` lists every run.

    python benchmarks/meter_validate.py
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable

from meter_sim import Meter, Outcome
from meter_sim.nexus.encode import full_add_credit, small_add_credit
from meter_sim.nv import Kind, slot_size
from meter_sim.openpaygo.encode import Kind as TokenKind
from meter_sim.openpaygo.encode import issue_token
from meter_sim.siphash import IMPLEMENTATION, siphash24

KEY = bytes.fromhex("deadbeef1020304004030201feebdaed")
OPAYGO_KEY = "a29ab82edc5fbbc41ec9530f6dac86b1"
SC = 123456789
N = 3000
REPEATS = 5
_clock = itertools.count()


def _nothing() -> None:
    pass


def rate(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def timed(codes: list[str], meter: Meter, expect: Outcome) -> tuple[float, float]:
    """(validations per wall second, per CPU second)."""
    start, cpu = time.perf_counter(), time.process_time()
    for code in codes:
        result = meter.enter_keycode(code, float(next(_clock)))
        if result.outcome is not expect:
            raise SystemExit(f"benchmark broke: {code} gave {result.outcome} ({result.reason})")
    cpu = max(time.process_time() - cpu, 1e-9)
    return len(codes) / (time.perf_counter() - start), len(codes) / cpu


def main() -> None:
    load = [round(x, 1) for x in os.getloadavg()]
    print(json.dumps({"machine": {"load_average": load, "cpus": os.cpu_count()}}))
    # A calibration: CPU time of one empty Python call (~40 ns on an idle core with 3.11),
    # to scale the per-CPU-second figures below when the machine is shared.
    cpu = time.process_time()
    for _ in range(1_000_000):
        _nothing()
    call_ns = (time.process_time() - cpu) * 1000
    print(json.dumps({"baseline": "python_call", "cpu_ns": round(call_ns, 1)}))
    floor = rate(lambda: siphash24(KEY, b"\x01\x00\x00\x00\x00\xa8\x00\x00\x00"), 20000)
    print(
        json.dumps({"baseline": "siphash24", "calls_per_s": round(floor), "impl": IMPLEMENTATION})
    )

    # Codes from the platform's encoders (identical to nexus-keycode's and openpaygo's:
    # `make equivalence`), which issue thousands a second where the references take minutes.
    full = [full_add_credit(KEY, i, 1) for i in range(1, N + 1)]
    small = [small_add_credit(KEY, i, 1) for i in range(1, N + 1)]
    tokens, count = [], 1
    for _ in range(N):
        count, token = issue_token(bytes.fromhex(OPAYGO_KEY), SC, count, TokenKind.ADD, 1)
        tokens.append(token)

    cases = [
        ("nexus-full", "applied", lambda: Meter.nexus(KEY, rate_limit=None), full, Outcome.APPLIED),
        ("nexus-full", "duplicate", None, full, Outcome.DUPLICATE),
        (
            "nexus-small",
            "applied",
            lambda: Meter.nexus(KEY, "small", rate_limit=None),
            small,
            Outcome.APPLIED,
        ),
        ("nexus-small", "duplicate", None, small, Outcome.DUPLICATE),
        (
            "openpaygo",
            "applied",
            lambda: Meter.openpaygo(bytes.fromhex(OPAYGO_KEY), SC, blocking=None),
            tokens,
            Outcome.APPLIED,
        ),
        ("openpaygo", "duplicate", None, tokens, Outcome.DUPLICATE),
    ]
    meter: Meter | None = None
    for protocol, what, build, codes, expect in cases:
        # Applied: every code once, on a fresh meter each run. Duplicates: the last few codes
        # (still in the window) again and again, on the meter that applied them all.
        batch = codes if what == "applied" else codes[-8:] * (N // 8)
        runs: list[tuple[float, float]] = []
        for _ in range(REPEATS):
            if build is not None:
                meter = build()
            assert meter is not None
            runs.append(timed(batch, meter, expect))
        per_s = max(wall for wall, _ in runs)
        print(
            json.dumps(
                {
                    "protocol": protocol,
                    "outcome": what,
                    "validations_per_s": round(per_s),
                    "cost_in_siphash_calls": round(floor / per_s, 1),
                    "validations_per_cpu_s": round(max(cpu for _, cpu in runs)),
                    "runs_per_cpu_s": [round(cpu) for _, cpu in runs],
                }
            )
        )

    garbage = Meter.openpaygo(bytes.fromhex(OPAYGO_KEY), SC, count=1, blocking=None)
    per_s, per_cpu_s = timed([f"{i * 7919:09d}" for i in range(1, 51)], garbage, Outcome.INVALID)
    print(
        json.dumps(
            {
                "protocol": "openpaygo",
                "outcome": "invalid (count 1: walks the 65-step window)",
                "validations_per_s": round(per_s),
                "cost_in_siphash_calls": round(floor / per_s, 1),
                "validations_per_cpu_s": round(per_cpu_s),
            }
        )
    )
    for kind in Kind:
        print(
            json.dumps(
                {
                    "nv_kind": kind.name.lower(),
                    "slot_bytes": slot_size(kind),
                    "medium_bytes": 2 * slot_size(kind),
                }
            )
        )


if __name__ == "__main__":
    main()
