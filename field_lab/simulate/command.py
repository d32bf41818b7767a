"""`field-lab simulate`: a month of field life on the virtual clock, and what it cost households.

    field-lab simulate [SCENARIO.toml] --days N [--agents N] [--devices N] [--seed N] [--out DIR]
                       [--shards N]

Writes DIR/summary.json (deterministic for a seed, apart from its `wall` block), the per-day
CSV, the SVG of dark households, and report.html (the databases live in a scratch folder,
deleted after the run). Exit codes (as `run`): 0 every check verified,
99 a check failed or went unchecked, 2 bad arguments or scenario, 107 a harness error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from html import escape
from pathlib import Path
from typing import Any

from field_lab.errors import ConfigError, HarnessError
from field_lab.measure.slo import EXIT_HARNESS_ERROR, EXIT_SLO_FAILED
from field_lab.report import page
from field_lab.scenario import DEFAULT
from field_lab.simulate import month as months
from field_lab.simulate import postmortem, shards
from field_lab.simulate.darkness import DarkHours
from field_lab.simulate.run import Outcome, simulate

EXIT_OK = 0
EXIT_CHECKS = EXIT_SLO_FAILED
EXIT_USAGE = 2
EXIT_HARNESS = EXIT_HARNESS_ERROR
SUMMARY = "summary.json"
REPORT = "report.html"


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "simulate",
        help="a month of field life on a virtual clock: dark household-hours by cause",
        description="Run handsets, links, platform, operator, SMS, customers and meters on one"
        " virtual clock and attribute every dark hour of every meter to its cause.",
    )
    p.add_argument("scenario", nargs="?", help="scenario TOML with [simulate] and [[incident]]")
    p.add_argument("--days", type=_count, help="override simulate.days")
    p.add_argument("--agents", type=_count, help="override fleet.agents")
    p.add_argument("--devices", type=_count, help="override fleet.devices")
    p.add_argument("--seed", type=int, help="override seed")
    p.add_argument("--out", type=Path, help="results folder (default: a new temporary one)")
    p.add_argument(
        "--shards",
        type=_count,
        help="split the agents over this many processes (default: one per usable core, one"
        " per 50 agents at most); the figures depend on the seed and this count",
    )
    p.set_defaults(run=simulate_command)


def simulate_command(args: argparse.Namespace) -> int:
    try:
        return _simulate(args)
    except ConfigError as exc:
        print(f"field-lab simulate: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _simulate(args: argparse.Namespace) -> int:
    if args.scenario:
        scenario, month = months.load(args.scenario)
    else:
        scenario, month = DEFAULT, months.parse({})
    scenario = scenario.with_overrides(agents=args.agents, devices=args.devices, seed=args.seed)
    if args.days is not None:
        month = month.with_days(args.days)
    shard_count = shards.count(scenario, args.shards)
    out: Path = args.out or Path(tempfile.mkdtemp(prefix="simulate-"))
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out} is not empty: name a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="simulate-", dir=scratch()) as work:
            if shard_count == 1:
                doc = write(out, simulate(scenario, month, Path(work), progress=_progress))
            else:
                merged = shards.ShardedMonth(
                    scenario, month, shard_count, Path(work), progress=_say
                )
                doc = shards.write(out, merged.run(), write_doc)
    except HarnessError as exc:
        print(f"field-lab simulate: harness error: {exc}", file=sys.stderr)
        return EXIT_HARNESS
    verified = doc["all_checks_verified"]
    dark = doc["household_dark_hours"]
    print(
        f"field-lab simulate: {month.days} day(s), {scenario.fleet.agents} agents,"
        f" {doc['devices']} meters in {doc['wall']['seconds']:.1f} s ({shard_count} shard(s));"
        f" dark {dark['unpaid']:.1f} h unpaid, {dark['paid_waiting']:.1f} h after payment;"
        f" checks {'all verified' if verified else 'FAILED'}; {out / SUMMARY}"
    )
    for line in doc["postmortem"]:
        print(f"  {line}")
    return EXIT_OK if verified else EXIT_CHECKS


def _progress(line: str) -> None:
    """A progress line with the process's CPU seconds so far: the figure to compare on a
    shared machine, where wall time says more about the neighbours than about the run."""
    _say(f"{line} (cpu {time.process_time():.1f} s)")


def _say(line: str) -> None:
    print(f"field-lab simulate: {line}", file=sys.stderr, flush=True)


def scratch() -> str | None:
    """Where the run's databases go: memory-backed /dev/shm when the machine has it (the
    platform's and 2,000 handsets' SQLite files are thrown away after the run), else the
    system's temporary folder."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def summary(outcome: Outcome) -> dict[str, Any]:
    """summary.json: everything but `wall` is a function of the scenario and the seed."""
    s, month = outcome.scenario, outcome.month
    figures = outcome.verdict.figures()
    verified = all(v == 0 for v in figures.values())
    sim_s = month.end
    return {
        "scenario": s.name,
        "seed": s.seed,
        "days": month.days,
        "agents": s.fleet.agents,
        "devices": len(outcome.evidence.meters),
        "incidents": [{"name": i.name, **i.to_dict()} for i in month.incidents],
        "household_dark_hours": postmortem.summary(outcome.dark),
        "postmortem": postmortem.lines(outcome.dark),
        "checks": figures,
        "all_checks_verified": verified,
        "check_details": outcome.verdict.details(),
        "findings": outcome.findings,
        "counters": dict(sorted(outcome.evidence.counters.items())),
        "wall": {
            "seconds": round(outcome.wall_s, 3),
            "month_seconds": round(outcome.month_wall_s, 3),
            "sim_seconds_per_wall_second": round(sim_s / max(outcome.wall_s, 1e-9), 1),
        },
    }


def write(out: Path, outcome: Outcome) -> dict[str, Any]:
    """A single-process run's files (`shards.write`: a sharded run's)."""
    return write_doc(out, {**summary(outcome), "shards": 1}, outcome.dark)


def write_doc(out: Path, doc: dict[str, Any], dark: DarkHours) -> dict[str, Any]:
    """summary.json `doc`, and the CSV, plot and report of `dark`, into `out`."""
    (out / SUMMARY).write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    files = postmortem.files(dark)
    for name, text in files.items():
        (out / name).write_text(text)
    (out / REPORT).write_text(report_html(doc, files[postmortem.SVG_NAME]))
    return doc


def report_html(doc: dict[str, Any], svg: str) -> str:
    """One self-contained page: the post-mortem lines, the plot, the checks with the devices
    they name, and the evidence on those devices."""
    checks = page.invariant_table({**doc["checks"], "check_details": doc["check_details"]})
    found = doc["findings"]
    evidence = (
        f"<h2>Evidence on the devices named</h2><pre>{escape(json.dumps(found, indent=1))}</pre>"
        if found
        else ""
    )
    lines = "".join(f"<li>{escape(line)}</li>" for line in doc["postmortem"])
    title = (
        f"{doc['days']} days, {doc['agents']} agents, {doc['devices']} meters, seed {doc['seed']}"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>field-lab simulate: {escape(title)}</title></head><body>"
        f"<h1>A month in minutes: {escape(title)}</h1><h2>Dark households</h2>{svg}"
        f"<h2>Post-mortem</h2><ul>{lines}</ul>"
        f"<h2>Checks ({'all verified' if doc['all_checks_verified'] else 'FAILED'})</h2>"
        f"{checks}{evidence}</body></html>\n"
    )
