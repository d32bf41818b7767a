"""Ten thousand crash trials: one big plan run as bounded pieces over worker processes.

A crash run's cost per trial grows with its history (each trial reads the handset's whole
outbox as evidence), so a big plan is split into pieces of at most `piece` trials, each a
complete run of its own (platform, handset, history, judge) with a seed derived from (run seed,
piece index): the same pieces and verdicts for any number of workers. Pieces run in `workers`
processes; their summaries merge into one, valid only when every piece is.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from field_lab.check.keys import FIGURES
from field_lab.errors import ConfigError

from .crash import CrashPlan, injected, run_crash

PIECE = 500
"""Trials per piece: long enough that setup and judging stay a few percent of the time."""
SCRATCH = Path("/dev/shm")
"""Where pieces keep their databases when this machine has a RAM disk. The trials kill
processes, not the machine: what a killed process wrote is in the page cache either way, so
fsync costs time here and proves nothing (power loss is the meter tearing's subject)."""
COUNTED = (
    "trials",
    "failures",
    "ops_attempted",
    "ops_acknowledged",
    "payments_attempted",
    "payments_acknowledged",
    "recovered_unknown",
    "meters",
    *FIGURES,
)
"""Summary figures that add up over pieces (None anywhere: unchecked in the whole)."""


def piece_seed(seed: int, index: int) -> int:
    digest = hashlib.sha256(f"crash:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:6], "big")


def split(plan: CrashPlan, piece: int = PIECE) -> list[CrashPlan]:
    """Pieces of at most about `piece` trials, each kind spread evenly, seeds derived."""
    if piece < 1:
        raise ConfigError(f"a piece holds at least 1 trial, got {piece}")
    count = max(1, -(-plan.trials // piece))

    def share(total: int, index: int) -> int:
        return total * (index + 1) // count - total * index // count

    return [
        replace(
            plan,
            cut=share(plan.cut, i),
            server_kills=share(plan.server_kills, i),
            handset_kills=share(plan.handset_kills, i),
            seed=piece_seed(plan.seed, i),
        )
        for i in range(count)
    ]


def _scratch() -> str | None:
    return str(SCRATCH) if SCRATCH.is_dir() and os.access(SCRATCH, os.W_OK) else None


def run_piece(plan: CrashPlan) -> dict[str, Any]:
    """One piece, start to judge, in a scratch directory of its own (a worker's entry)."""
    with tempfile.TemporaryDirectory(prefix="payg-crash-", dir=_scratch()) as tmp:
        summary = asyncio.run(run_crash(plan, Path(tmp))).summary()
    return {**summary, "seed": plan.seed}


def merge(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One summary for the whole plan; details only of the pieces that failed, with the
    seed that replays each."""
    out: dict[str, Any] = {}
    for name in COUNTED:
        values = [s[name] for s in summaries]
        out[name] = None if any(v is None for v in values) else sum(values)
    kinds: Counter[str] = Counter()
    landed: Counter[str] = Counter()
    for s in summaries:
        kinds.update(s["by_kind"])
        landed.update(s["faults_landed"])
    digests = ":".join(str(s["digest"]) for s in summaries)
    return {
        **out,
        "by_kind": dict(kinds),
        "faults_landed": dict(landed),
        "valid": all(s["valid"] for s in summaries),
        "unchecked": sorted({u for s in summaries for u in s["unchecked"]}),
        "pieces": len(summaries),
        "piece_seconds": round(sum(float(s["seconds"]) for s in summaries), 1),
        "digest": hashlib.sha256(digests.encode()).hexdigest()[:16],
        "details": {
            "failed_pieces": [
                {"seed": s["seed"], **s["details"]} for s in summaries if not s["valid"]
            ]
        },
    }


def run_pieces(
    plan: CrashPlan,
    *,
    workers: int = 2,
    piece: int = PIECE,
    progress: Callable[[int, int, Mapping[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The whole plan, judged piece by piece; `seconds` is the wall time of all of it.
    `progress(done, pieces, summary)` hears of each piece as it finishes."""
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    began = time.monotonic()
    plans = split(plan, piece)
    summaries: list[dict[str, Any]] = []

    def finished(summary: dict[str, Any]) -> None:
        summaries.append(summary)
        if progress is not None:
            progress(len(summaries), len(plans), summary)

    if workers == 1 or len(plans) == 1:
        for p in plans:
            finished(run_piece(p))
    else:
        context = get_context("spawn")  # workers start clean: no event loop or threads forked
        with ProcessPoolExecutor(
            min(workers, len(plans)), mp_context=context, initializer=quiet
        ) as pool:
            for future in as_completed([pool.submit(run_piece, p) for p in plans]):
                finished(future.result())
    order = {p.seed: i for i, p in enumerate(plans)}
    summaries.sort(key=lambda s: order[s["seed"]])
    merged = merge(summaries)
    merged["seconds"] = round(time.monotonic() - began, 1)
    merged["workers"] = workers
    merged["ms_per_trial"] = round(1000 * merged["seconds"] / max(1, plan.trials), 1)
    return merged


def quiet() -> None:
    """Every connection a cut trial resets is logged by aiohttp's server as an error with a
    traceback: thousands of expected lines that would bury the figures."""
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)


def _progress(done: int, pieces: int, summary: Mapping[str, Any]) -> None:
    line = {"piece": f"{done}/{pieces}", "seed": summary["seed"], "trials": summary["trials"]}
    line |= {"valid": summary["valid"], "seconds": summary["seconds"]}
    print(json.dumps(line), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m field_lab.chaos.trials``: one crash plan on a correct platform, run as pieces
    over worker processes, then one small run on each deliberately broken one; prints their
    counts as JSON. Exit 0 when the correct platform passes and every injected bug is found,
    1 otherwise."""
    p = argparse.ArgumentParser(prog="python -m field_lab.chaos.trials", description=main.__doc__)
    p.add_argument("--cut", type=int, default=8000)
    p.add_argument("--server-kills", type=int, default=1000)
    p.add_argument("--handset-kills", type=int, default=1000)
    p.add_argument("--seed", type=int, default=CrashPlan.seed)
    p.add_argument("--workers", type=int, default=2, help="processes running pieces (default 2)")
    p.add_argument("--piece", type=int, default=PIECE, help=f"trials per piece ({PIECE})")
    a = p.parse_args(argv)
    try:
        plan = CrashPlan(a.cut, a.server_kills, a.handset_kills, a.seed)
        if a.workers < 1 or a.piece < 1:
            raise ConfigError("--workers and --piece must be >= 1")
    except ConfigError as exc:
        p.error(str(exc))
    quiet()
    clean = run_pieces(plan, workers=a.workers, piece=a.piece, progress=_progress)
    print(json.dumps({"clean": clean}), flush=True)
    found = asyncio.run(injected(seed=a.seed))
    for name, summary in found.items():
        print(json.dumps({"injected": name, "found": not summary["valid"], **summary}))
    return 0 if clean["valid"] and all(not s["valid"] for s in found.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
