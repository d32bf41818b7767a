"""`field-lab run` and `field-lab seed`: the lab's main job on the command line.

    field-lab run [SCENARIO.toml] [--agents N] [--devices N] [--duration S] [--seed N]
                  [--shards N] [--out DIR] [--target URL --fixture FILE [--audit-token TOKEN]]
                  [--quiet]
    field-lab seed --db PATH --fixture FILE [SCENARIO.toml] [--agents N] [--devices N]

Exit codes: 0 every SLO holds; 99 an SLO failed; 107 the lab itself failed (its figures
cannot be trusted); 2 the command line or scenario is wrong, or `--target` is unreachable or
refuses the fixture (seed again); 130 interrupted (nothing written).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from agent_client.errors import AgentError, InvalidOperation, ServerRefused, TransientError
from field_lab.errors import ConfigError, HarnessError
from field_lab.lab import output
from field_lab.lab.lab import SET_UP_PHASES, Lab, Target
from field_lab.lab.shards import ShardedLab, default_shards
from field_lab.measure.slo import EXIT_HARNESS_ERROR, evaluate, exit_code
from field_lab.scenario import DEFAULT, Scenario, load
from field_lab.world.fixture import Fixture, Stocking, seed
from field_lab.world.traces import TraceBook
from server_stub.cli import (
    AUDIT_TOKEN_ENV,
    DATABASE_ERRORS,
    REPORT_TOKEN_ENV,
    SECRET_ENV,
    seeded_agents,
)
from server_stub.errors import SetupError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
"""Ctrl-C (SIGINT), as shells report it: the run stopped before any figure was written."""


def _scenario_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?", help="scenario TOML (default: the built-in scenario)")
    p.add_argument("--agents", type=int, help="override fleet.agents")
    p.add_argument("--devices", type=int, help="override fleet.devices")
    p.add_argument("--duration", type=float, help="override duration_s")
    p.add_argument("--seed", type=int, help="override seed")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="run the end-to-end reliability lab")
    _scenario_args(run)
    run.add_argument("--out", type=Path, help="results folder (default results/<run>)")
    run.add_argument("--target", help="run the handsets against this platform URL")
    run.add_argument("--fixture", type=Path, help="with --target: agents and device secrets")
    run.add_argument(
        "--report-token",
        help=f"with --target: the report token readers send when the fixture names no"
        f" distributors (default ${REPORT_TOKEN_ENV}); a fixture's distributors send their own",
    )
    run.add_argument(
        "--audit-token",
        help=f"with --target: the platform's audit API token (default ${AUDIT_TOKEN_ENV});"
        " without one the server-side checks are unchecked and their thresholds fail",
    )
    run.add_argument(
        "--behaviour",
        metavar="MODULE:CLASS",
        help="the agents' behaviour (an AgentBehaviour, docs/library.md); overrides the scenario",
    )
    run.add_argument(
        "--customer-behaviour",
        metavar="MODULE:CLASS",
        help="the customers' behaviour (a CustomerBehaviour); overrides the scenario",
    )
    run.add_argument("--quiet", action="store_true", help="no live progress view")
    run.add_argument(
        "--shards",
        type=int,
        help="handset processes the fleet is split into (default: one per core, at most one"
        " per 50 handsets); the same seed gives the same plan whatever the number",
    )
    run.add_argument(
        "--compare",
        action="store_true",
        help="run the scenario twice, with --adapter then with the naive "
        "JSON-request-per-operation adapter, and report them side by side",
    )
    run.add_argument(
        "--adapter",
        default="compact",
        metavar="NAME|MODULE:CLASS",
        help="how handsets talk to the platform: compact (default), naive, or your own "
        "PlatformAdapter (docs/library.md)",
    )
    run.add_argument(
        "--record-traces",
        action="store_true",
        help="write every meter's keypad trace to DIR/traces/ (meter-sim replay)",
    )
    run.set_defaults(run=run_command)
    s = sub.add_parser("seed", help="seed a server-stub database and write the lab's fixture")
    _scenario_args(s)
    s.add_argument("--db", type=Path, required=True, help="server-stub SQLite file")
    s.add_argument("--fixture", type=Path, required=True, help="where to write the fixture JSON")
    s.set_defaults(run=seed_command)


def scenario_from(args: argparse.Namespace) -> Scenario:
    base = load(args.scenario) if args.scenario else DEFAULT
    return base.with_overrides(
        agents=args.agents, devices=args.devices, duration_s=args.duration, seed=args.seed
    )


def seed_command(args: argparse.Namespace) -> int:
    db: Path = args.db
    created = not db.exists()
    try:
        _check_seed_paths(db, args.fixture)
        scenario = scenario_from(args)
        fixture = seed(db, Stocking.of(scenario))
        args.fixture.write_text(fixture.to_json())
    except (ConfigError, SetupError, OSError) as exc:
        return _seed_failed(db, created, exc)
    except DATABASE_ERRORS as exc:
        return _seed_failed(db, created, exc)
    print(
        f"seeded {db}: {len(fixture.agents)} agents of {len(fixture.distributors)} distributors,"
        f" {len(fixture.secrets)} devices; fixture (with their report tokens) in {args.fixture}"
    )
    return 0


def _seed_failed(db: Path, created: bool, exc: Exception) -> int:
    if created:  # a failed seed leaves no new database behind
        for leftover in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            leftover.unlink(missing_ok=True)
    print(f"field-lab seed: {_seed_problem(db, exc)}", file=sys.stderr)
    return EXIT_USAGE


def _check_seed_paths(db: Path, fixture: Path) -> None:
    """Refuse, before the seeder writes a byte, what cannot become a fixture's platform."""
    if fixture.is_dir():
        raise ConfigError(f"--fixture {fixture} is a directory: name a file")
    if not fixture.parent.is_dir():
        raise ConfigError(
            f"--fixture {fixture}: directory {fixture.parent} does not exist; create it"
        )
    agents = seeded_agents(db)  # also: a folder, a missing folder, another program's file
    if agents:
        raise ConfigError(f"--db {db} is already seeded ({agents} agents): seed a new --db file")


def _seed_problem(db: Path, exc: Exception) -> str:
    if isinstance(exc, SetupError) and "already exists" in str(exc):
        return f"--db {db} is already seeded ({exc}): seed a new --db file"
    if isinstance(exc, DATABASE_ERRORS):
        return f"--db {db}: {exc}; name a new file or a server-stub database"
    if isinstance(exc, OSError):
        return f"{exc.filename or db}: {exc.strerror or exc}"
    return str(exc)


class Progress:
    """A live view on a terminal; a line every 15 s elsewhere (CI logs)."""

    def __init__(self, console: Console, quiet: bool) -> None:
        self.console = console
        self.quiet = quiet
        self.last = 0.0

    def __call__(self, lab: Lab | ShardedLab) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if not self.console.is_terminal and now - self.last < 15:
            return
        self.last = now
        row = lab.series[-1] if lab.series else {}
        t = lab.stats.total
        p95 = t.activation.percentile(95) if t.activation.count else 0.0
        self.console.print(
            f"{escape(f'[{lab.phase}]')} t={row.get('t_s', 0):6.1f}s"
            f"  sales {t.sale_failed.total - t.sale_failed.hits}/{t.sale_failed.total}"
            f"  activations {t.activation.count}"
            f" (p95 {p95:.1f}s)  queue {row.get('queue_depth', 0)}"
            f"  links down {row.get('links_down', 0)}/{row.get('handsets', 0)}",
            highlight=False,
        )


def run_command(args: argparse.Namespace) -> int:
    if os.getcwd() not in sys.path:  # behaviours are named as modules of the user's project
        sys.path.insert(0, os.getcwd())
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 150)
    try:
        scenario = scenario_from(args)
        target = target_from(args)
        if args.shards is not None and not 1 <= args.shards <= 1024:
            raise ConfigError(f"--shards must be 1..1024, got {args.shards}")
    except ConfigError as exc:
        console.print(f"field-lab run: {exc}", markup=False, soft_wrap=True)
        return EXIT_USAGE
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{scenario.name}-seed{scenario.seed}"
    out = args.out or Path("results") / name
    if out.exists() and not out.is_dir():
        console.print(f"field-lab run: --out {out} is a file: name a folder for the results")
        return EXIT_USAGE
    clients = (args.adapter, "naive") if args.compare else (args.adapter,)
    docs: dict[str, dict[str, Any]] = {}
    codes = []
    for client in clients:
        where = out / client.replace(":", "-") if args.compare else out
        try:
            progress = Progress(console, args.quiet)
            doc, lab = asyncio.run(_run(scenario, name, args, target, progress, where, client))
        except ConfigError as exc:
            console.print(f"field-lab run: {exc}", markup=False, soft_wrap=True)
            return EXIT_USAGE
        except KeyboardInterrupt:
            console.print("field-lab run: interrupted; no results were written", markup=False)
            return EXIT_INTERRUPTED
        except HarnessError as exc:
            console.print(f"field-lab run: harness error: {exc}", markup=False, soft_wrap=True)
            return EXIT_HARNESS_ERROR
        except Exception:  # the lab failed, not the system under test
            console.print("field-lab run: harness error:", markup=False)
            console.print(traceback.format_exc(), markup=False)
            return EXIT_HARNESS_ERROR
        note = output.write(where, doc, lab.stats, lab.series)
        if note is not None:
            console.print(note, markup=False)
        if args.record_traces:
            console.print(f"traces: {lab.traces_written} meters in {where / 'traces'}")
        output.table(doc, Console(width=None if sys.stdout.isatty() else 150))
        docs[client] = doc
        codes.append(exit_code(lab.slo))
    if args.compare:
        output.comparison(out, docs, Console(width=None if sys.stdout.isatty() else 150))
    print(f"results: {out}")
    return max(codes)


async def _run(
    scenario: Scenario,
    name: str,
    args: argparse.Namespace,
    target: Target | None,
    progress: Progress,
    out: Path,
    client: str,
) -> tuple[dict[str, Any], Lab | ShardedLab]:
    shards = args.shards or default_shards(scenario.fleet.agents)
    traces = out / "traces" if args.record_traces else None
    with tempfile.TemporaryDirectory(prefix="field-lab-") as tmp:
        lab: Lab | ShardedLab
        if shards == 1:  # in this process: no process to start, no evidence to ship
            lab = Lab(
                scenario,
                Path(tmp),
                target=target,
                progress=progress,
                traces=TraceBook(traces) if traces is not None else None,
                adapter=client,
                behaviour=args.behaviour,
                customer_behaviour=args.customer_behaviour,
            )
        else:
            lab = ShardedLab(
                scenario,
                Path(tmp),
                shards,
                target=target,
                progress=progress,
                traces=traces,
                adapter=client,
                behaviour=args.behaviour,
                customer_behaviour=args.customer_behaviour,
                fixture_name=str(args.fixture or ""),
            )
        started = time.monotonic()
        running = asyncio.ensure_future(lab.run())
        try:
            await asyncio.shield(running)
        except asyncio.CancelledError:  # Ctrl-C
            await _stop(running)
            raise
        except AgentError as exc:
            if target is None or lab.phase not in SET_UP_PHASES:
                raise  # the lab's own platform refused its own handsets: a lab fault
            raise ConfigError(target_problem(target.url, args.fixture, exc)) from exc
        wall = time.monotonic() - started
    if isinstance(lab, Lab) and lab.traces is not None:
        lab.traces_written = lab.traces.write()
    checks = scenario.checks
    lab.slo = evaluate(
        scenario.thresholds, lab.stats.metrics(), checks.waive, checks.pass_without_samples
    )
    assert lab.verdict is not None
    extra = {
        "wall_s": round(wall, 1),
        "handsets": lab.handsets,
        "devices": lab.devices,
        "shards": lab.shards,
        "plan": {"events": lab.planned, "digest": lab.plan_digest},
        "history": lab.history.counts(),
        "checks": lab.verdict.checks(),
        "check_details": lab.verdict.details(),
        "adapter": client,
    }
    doc = output.summary(name, scenario, lab.stats, lab.slo, extra)
    return doc, lab


async def _stop(running: asyncio.Future[Any]) -> None:
    """Stop an interrupted run in order: the lab's own tasks (handsets syncing, readers)
    first, then the lab, which closes the handsets once nothing uses them any more."""
    me = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not me and t is not running]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


def target_problem(url: str, fixture: Path | str, exc: AgentError) -> str:
    """What a handset error while setting up against `--target` means to the user."""
    if isinstance(exc, TransientError):
        return f"--target {url} is unreachable ({exc}): start the platform there, or check the URL"
    if isinstance(exc, ServerRefused | InvalidOperation):
        return (
            f"--target {url} refused the fixture {fixture} ({exc}): it was"
            " already used, or belongs to another platform; seed again (field-lab seed"
            f" --db PLATFORM.db --fixture {fixture}) and restart the platform on it"
        )
    return f"--target {url}: {exc}"


def target_from(args: argparse.Namespace) -> Target | None:
    """`--target URL --fixture FILE`, the audit token and the operator's secret (from the
    environment, never argv, where it can be read)."""
    if args.target is None:
        if args.fixture is not None or args.audit_token is not None or args.report_token:
            raise ConfigError("--fixture, --audit-token and --report-token go with --target URL")
        return None
    if args.fixture is None:
        raise ConfigError("--target needs --fixture (write one with field-lab seed)")
    token = args.audit_token or os.environ.get(AUDIT_TOKEN_ENV) or None
    secret = os.environ.get(SECRET_ENV, "").encode() or None
    fixture = Fixture.load(args.fixture)
    # a fixture's distributors read with their own tokens; without any, this one (or none)
    report = args.report_token or os.environ.get(REPORT_TOKEN_ENV) or None
    return Target(args.target, fixture, token, secret, report)
