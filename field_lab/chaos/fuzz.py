"""Mutation fuzzing of every decoder, seeded from the golden traces and real frames.

Each byte-level target runs in a child process: under atheris (libFuzzer, coverage-guided over
our packages only) when it is installed, otherwise under our own mutator (`mutate`), which keeps
each input that gave a new outcome as a further seed. Either way every input is counted with
its outcome, and a crash (an exception that is not the target's own refusal) is counted and
kept, never fatal, so one run gives the whole picture. Coverage is measured by replaying the
run's corpus (its seeds and what the engine kept) under `sys.settrace`. `POST /v1/sync` over
HTTP with valid signatures is fuzzed by `syncfuzz`. The children run `jobs` at a time.

``python -m field_lab.chaos.fuzz run [--size chaos|suite] [--jobs N] [--json FILE]`` (``make
fuzz``) runs the campaign alone
and exits 1 when any input crashed a decoder or earned a 5xx (``make reliability`` includes it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import random
import re
import sys
import tempfile
import time
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .coverage import PACKAGES, LineCoverage
from .mutate import Mutator
from .syncfuzz import REPLAY, sync_campaign
from .tally import Tally
from .targets import Target, one_input, targets

SYNC = "sync_http"
UNAVAILABLE = (
    "atheris is not installed here (pip install atheris; it ships manylinux wheels for "
    "CPython 3.11): fuzzing with our own mutator instead"
)
PLANS: dict[str, dict[str, int]] = {
    "suite": dict.fromkeys(
        [
            "nexus_full",
            "nexus_small",
            "openpaygo",
            "keypad",
            "line_protocol",
            "trace",
            "nv_image",
            "sync_uplink",
            "sync_downlink",
            "callback",
            "report_query",
        ],
        300,
    )
    | {SYNC: 200},
    "chaos": {
        "nexus_full": 200_000,
        "nexus_small": 150_000,
        "openpaygo": 100_000,
        "keypad": 40_000,
        "line_protocol": 30_000,
        "trace": 60_000,
        "nv_image": 30_000,
        "sync_uplink": 200_000,
        "sync_downlink": 150_000,
        "callback": 60_000,
        "report_query": 60_000,
        SYNC: 20_000,
    },
}
"""Inputs per target. `chaos` is `make reliability`'s: over a million in all."""
MAX_REPLAY = 2000
"""Corpus inputs replayed under the tracer per target (a sample when the corpus is larger)."""
TIME_LIMIT_S = 1800.0
"""Per target: a run still going after this stops and reports the inputs it did."""


def replay(target: Target, corpus: Sequence[bytes], limit: int = MAX_REPLAY) -> dict[str, Any]:
    """Lines and arcs of our packages that `corpus` reaches (a seeded sample past `limit`)."""
    sample = list(corpus)
    if len(sample) > limit:
        sample = random.Random(0).sample(sample, limit)
    with LineCoverage() as cov:
        for data in sample:
            with contextlib.suppress(Exception):
                one_input(target, data)
    return {**cov.summary(), "replayed": len(sample), "corpus": len(corpus)}


def mutation_run(
    target: Target, runs: int, *, seed: int = 1, time_limit_s: float = TIME_LIMIT_S
) -> dict[str, Any]:
    """Our own engine: mutate the seeds and every input that gave a new outcome."""
    rng = random.Random(seed)
    seeds = list(target.seeds()) or [b""]
    mutator = Mutator(rng, max_len=max(64, 2 * max(map(len, seeds))))
    pool = list(seeds)
    tally = Tally()
    began = time.monotonic()
    for data in seeds[:runs]:
        tally.feed(target, data)
    while tally.inputs < runs and time.monotonic() - began < time_limit_s:
        data = mutator.mutate(rng.choice(pool), pool)
        if tally.feed(target, data) and len(pool) < 4 * MAX_REPLAY:
            pool.append(data)
    seconds = time.monotonic() - began
    return {
        "engine": "mutation",
        "input": target.what,
        "seeds": len(seeds),
        **tally.summary(),
        "coverage": replay(target, pool),
        "edges": None,
        "seconds": round(seconds, 1),
    }


# -- atheris --------------------------------------------------------------------------------


def atheris_available() -> bool:
    try:
        importlib.import_module("atheris")
    except ImportError:
        return False
    return True


UNINSTRUMENTED = ("meter_sim.siphash", "meter_sim.crc")
"""Straight-line arithmetic (a keyed hash, a CRC) run tens of times per input: instrumented
they would cost more than everything else, for coverage that never varies."""


def _instrument(atheris: Any) -> int:
    """Instrument the functions of our packages only: libFuzzer's coverage is then theirs,
    and startup takes a second instead of the minutes `instrument_all` needs."""
    import gc

    count = 0
    for obj in gc.get_objects():
        if not isinstance(obj, types.FunctionType):
            continue
        module = obj.__module__ or ""
        if module.startswith(PACKAGES) and module not in UNINSTRUMENTED:
            with contextlib.suppress(Exception):
                atheris.instrument_func(obj)
                count += 1
    return count


def atheris_child(name: str, runs: int, corpus: Path, out: Path, seed: int) -> None:
    """Fuzz one target under libFuzzer; write the tally to `out` and leave at `runs` inputs
    (libFuzzer ends a process with exit(), which skips Python's own exit handlers)."""
    atheris = importlib.import_module("atheris")
    target = targets()[name]
    seeds = list(target.seeds())
    for i, data in enumerate(seeds):
        (corpus / f"seed-{i:04d}").write_bytes(data)
    instrumented = _instrument(atheris)
    tally = Tally()
    began = time.monotonic()

    def done() -> None:
        doc = {"input": target.what, "seeds": len(seeds), **tally.summary()}
        doc["instrumented_functions"] = instrumented
        doc["cpu_seconds"] = round(time.process_time(), 1)
        out.write_text(json.dumps({**doc, "seconds": round(time.monotonic() - began, 1)}))
        sys.stderr.flush()
        os._exit(0)

    def one(data: bytes) -> None:
        tally.feed(target, data)
        if tally.inputs >= runs or time.monotonic() - began > TIME_LIMIT_S:
            done()

    max_len = min(8192, max(64, 2 * max(map(len, seeds), default=0)))
    args = [f"-runs={2 * runs + len(seeds)}", f"-max_len={max_len}", f"-seed={seed}"]
    args += ["-timeout=60", f"-artifact_prefix={corpus.parent}/", str(corpus)]
    atheris.Setup([sys.argv[0], *args], one)
    atheris.Fuzz()
    done()  # pragma: no cover - libFuzzer ran out of runs first (it never does: 2x runs)


_COV = re.compile(rb"cov: (\d+) ft: (\d+)")


def _libfuzzer_coverage(log: bytes) -> tuple[int | None, int | None]:
    found = _COV.findall(log)
    return (int(found[-1][0]), int(found[-1][1])) if found else (None, None)


# -- the campaign -----------------------------------------------------------------------------


async def _child(args: list[str], log: Path, timeout_s: float) -> int:
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "field_lab.chaos.fuzz", *args, stdout=sink, stderr=sink
        )
        try:
            return await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return -9


async def run_target(
    name: str, runs: int, engine: str, workdir: Path, seed: int = 1
) -> dict[str, Any]:
    """One target in child processes: fuzz (then, under atheris, replay its corpus)."""
    began = time.monotonic()
    here = workdir / name
    corpus = here / "corpus"
    corpus.mkdir(parents=True)
    out, log = here / "result.json", here / "log.txt"
    base: dict[str, Any] = {"target": name, "planned": runs, "engine": engine}
    args = [
        "child",
        name,
        str(runs),
        "--engine",
        engine,
        "--corpus",
        str(corpus),
        "--out",
        str(out),
        "--seed",
        str(seed),
    ]
    code = await _child(args, log, TIME_LIMIT_S + 300)
    if code != 0 or not out.exists():
        tail = log.read_bytes()[-600:].decode(errors="replace")
        return {**base, "inputs": 0, "crashes": 1, "child_failed": f"exit {code}: {tail}"}
    result: dict[str, Any] = {**base, **json.loads(out.read_text())}
    if engine == "atheris":
        result["edges"], result["features"] = _libfuzzer_coverage(log.read_bytes())
        cov = here / "coverage.json"
        await _child(["replay", name, str(corpus), "--out", str(cov)], here / "replay.txt", 600)
        result["coverage"] = json.loads(cov.read_text()) if cov.exists() else None
    result["seconds"] = round(time.monotonic() - began, 1)
    return result


async def campaign(
    plan: Mapping[str, int],
    *,
    jobs: int = 2,
    engine: str | None = None,
    seed: int = 1,
    in_process: Mapping[str, Target] | None = None,
    sync: Callable[[int, int], Any] | None = None,
) -> dict[str, Any]:
    """Fuzz every target of `plan` (name -> inputs), `jobs` child processes at a time.

    `in_process` runs the given targets here instead, with our own mutator (how a test
    injects a broken decoder); `sync` replaces the `POST /v1/sync` campaign (same seam).
    """
    began = time.monotonic()
    engine = engine or ("atheris" if atheris_available() else "mutation")
    results: list[dict[str, Any]] = []
    if in_process is not None:
        engine = "mutation"
        for name, target in in_process.items():
            doc = mutation_run(target, plan[name], seed=seed)
            results.append({"target": name, "planned": plan[name], **doc})
        if SYNC in plan:
            run_sync = sync or sync_campaign
            doc = await run_sync(plan[SYNC], seed)
            results.append({"target": SYNC, "planned": plan[SYNC], **doc})
    else:
        gate = asyncio.Semaphore(jobs)
        with tempfile.TemporaryDirectory(prefix="payg-fuzz-") as tmp:

            async def one(name: str) -> dict[str, Any]:
                async with gate:
                    how = "structure-aware" if name == SYNC else engine
                    return await run_target(name, plan[name], how, Path(tmp), seed)

            # the slowest first, so the pool does not end with one long job running alone
            order = sorted(plan, key=lambda n: n != SYNC)
            done = {r["target"]: r for r in await asyncio.gather(*(one(n) for n in order))}
            results = [done[name] for name in plan]
    return totals(results, engine, jobs, began)


def totals(results: list[dict[str, Any]], engine: str, jobs: int, began: float) -> dict[str, Any]:
    return {
        "engine": engine,
        "atheris": engine == "atheris",
        "jobs": jobs,
        "targets": results,
        "inputs": sum(int(r.get("inputs", 0)) for r in results),
        "planned": sum(int(r["planned"]) for r in results),
        "crashes": sum(int(r.get("crashes", 0)) for r in results),
        "server_errors": sum(int(r.get("server_errors", 0)) for r in results),
        "seconds": round(time.monotonic() - began, 1),
    }


def passed(section: Mapping[str, Any]) -> bool:
    """No crash, no 5xx, and every target ran all its planned inputs."""
    return (
        section["crashes"] == 0
        and section["server_errors"] == 0
        and all(r.get("inputs", 0) >= r["planned"] for r in section["targets"])
    )


def headline(section: Mapping[str, Any]) -> str:
    """The report's summary line, every figure from the run."""
    failing = [
        r["target"]
        for r in section["targets"]
        if r.get("crashes") or r.get("server_errors") or r.get("inputs", 0) < r["planned"]
    ]
    how = "atheris (libFuzzer)" if section["atheris"] else "our own mutator; " + UNAVAILABLE
    return (
        f"**Fuzzed inputs: {section['inputs']:,}** across {len(section['targets'])} targets"
        f" ({how}; seeds from the golden traces and real frames), {section['crashes']} crashes,"
        f" {section['server_errors']} 5xx answers in {section['seconds']} s;"
        f" targets short of plan or failing: {', '.join(failing) or 'none'}."
    )


def table(section: Mapping[str, Any]) -> list[str]:
    """The report's per-target table."""
    lines = [
        "| target | input | engine | inputs | crashes | 5xx | distinct outcomes | lines | arcs |"
        " libFuzzer edges | seconds (CPU) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in section["targets"]:
        cov = r.get("coverage") or {}
        lines.append(
            f"| {r['target']} | {r.get('input', '-')} | {r.get('engine', '-')} |"
            f" {r.get('inputs', 0):,} | {r.get('crashes', 0)} | {r.get('server_errors', 0)} |"
            f" {r.get('outcomes', '-')} | {cov.get('lines', '-')} | {cov.get('arcs', '-')} |"
            f" {r.get('edges') or '-'} | {r.get('seconds', '-')} ({r.get('cpu_seconds', '-')}) |"
        )
    lines += [
        "",
        "Lines and arcs (line-to-line transitions: branches taken) are distinct ones in"
        f" {', '.join(PACKAGES)}, traced while replaying each target's corpus (its seeds and the"
        f" inputs the engine kept; a seeded sample of {MAX_REPLAY} when larger; for {SYNC} its"
        f" first {REPLAY} inputs again on a fresh platform). libFuzzer edges: the `cov` atheris"
        " reports over the same packages. Outcomes are distinct answers (outcome and reason,"
        f" numbers and quoted input elided; for {SYNC} the status and error code, and for a 200"
        f" the operations' verdicts). Wall seconds include start-up and the coverage replay; CPU"
        f" seconds are the fuzzing process's own. {SYNC}: every frame is signed by a provisioned"
        " handset's key, so each one is judged beyond the signature.",
    ]
    crashed = [(r["target"], e) for r in section["targets"] for e in r.get("crash_examples", [])]
    if crashed:
        lines += ["", "Crashes (input hex, error, where):", ""]
        lines += [f"- {t}: `{e['input'][:80]}` {e['error']} at {e['at']}" for t, e in crashed]
    failed = [(r["target"], r["child_failed"]) for r in section["targets"] if "child_failed" in r]
    lines += [f"- {t}: the fuzzing process failed: {why}" for t, why in failed]
    return lines


# -- command line -------------------------------------------------------------------------------


def _child_main(args: argparse.Namespace) -> int:
    if args.engine == "atheris":
        atheris_child(args.target, args.runs, args.corpus, args.out, args.seed)
    if args.target == SYNC:
        doc = asyncio.run(sync_campaign(args.runs, args.seed))
    else:
        doc = mutation_run(targets()[args.target], args.runs, seed=args.seed)
    doc["cpu_seconds"] = round(time.process_time(), 1)
    args.out.write_text(json.dumps(doc))
    return 0


def _replay_main(args: argparse.Namespace) -> int:
    corpus = [p.read_bytes() for p in sorted(args.corpus.iterdir()) if p.is_file()]
    args.out.write_text(json.dumps(replay(targets()[args.target], corpus)))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m field_lab.chaos.fuzz", description=__doc__)
    sub = p.add_subparsers(dest="command")
    run = sub.add_parser("run", help="the whole campaign (the default)")
    run.add_argument("--size", choices=sorted(PLANS), default="chaos")
    run.add_argument("--jobs", type=int, default=2)
    run.add_argument("--json", type=Path, help="also write the figures here")
    child = sub.add_parser("child", help="one target (used by the campaign)")
    child.add_argument("target")
    child.add_argument("runs", type=int)
    child.add_argument(
        "--engine", choices=["atheris", "mutation", "structure-aware"], default="mutation"
    )
    child.add_argument("--corpus", type=Path, required=True)
    child.add_argument("--out", type=Path, required=True)
    child.add_argument("--seed", type=int, default=1)
    rep = sub.add_parser("replay", help="coverage of a corpus directory (used by the campaign)")
    rep.add_argument("target")
    rep.add_argument("corpus", type=Path)
    rep.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv if argv is not None else sys.argv[1:] or ["run"])
    if args.command == "child":
        return _child_main(args)
    if args.command == "replay":
        return _replay_main(args)
    section = asyncio.run(campaign(PLANS[args.size], jobs=args.jobs))
    if args.json:
        args.json.write_text(json.dumps(section, indent=1))
    print("\n".join([headline(section), "", *table(section)]))
    return 0 if passed(section) else 1


if __name__ == "__main__":
    sys.exit(main())
