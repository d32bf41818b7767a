"""``server-stub``: run the platform stand-in and set up its distributors, agents, plans and
devices."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import math
import os
import random
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from agent_client.protocol.keycodes import KeycodeFormat
from agent_client.protocol.version import distribution_version

from .app import MAX_WORKERS, Platform, bearer_safe, create_app
from .devices import MAX_SERIAL, make_devices, parse_devices_csv, write_devices_csv
from .errors import SetupError
from .escrow import EscrowPolicy
from .health import DEFAULT_BUDGET_MS, check_reports, healthy, over_http, table
from .logs import configure
from .store import DeviceRecord, Store
from .tls import self_signed
from .workers import serve_forked

DEFAULT_DB = "server-stub.db"
SECRET_ENV = "PAYG_MM_SECRET"
AUDIT_TOKEN_ENV = "PAYG_AUDIT_TOKEN"
REPORT_TOKEN_ENV = "PAYG_REPORT_TOKEN"
EXIT_UNAVAILABLE = 1
"""A peer is unreachable or the port is taken: nothing is wrong with the input as such.
Also `check-reports` finding a report failed or over its budget (the platform is unwell)."""
EXIT_USAGE = 2
SQLITE_MAGIC = b"SQLite format 3\x00"


class Unavailable(Exception):
    """Something outside the command line is in the way (a busy port): exit 1."""


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65_535:
        raise argparse.ArgumentTypeError(f"a port is an integer in 0..65535, got {text!r}")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def _workers(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"workers is an integer in 1..{MAX_WORKERS}, got {text!r}")
    return int(text)


def _budget_ms(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 600_000:
        raise argparse.ArgumentTypeError(f"a budget is milliseconds in (0, 600000], got {text!r}")
    return value


def _serial(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_SERIAL:
        raise argparse.ArgumentTypeError(f"a serial is an integer in 1..{MAX_SERIAL}, got {text!r}")
    return int(text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="server-stub", description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {distribution_version()}")
    p.add_argument("--db", type=Path, default=Path(DEFAULT_DB), help="SQLite file")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help=f"serve POST /v1/sync and friends (the audit API with ${AUDIT_TOKEN_ENV} set)",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8080)
    serve.add_argument("--tls", action="store_true", help="self-signed certificate made at start")
    serve.add_argument("--cert-out", type=Path, help="write the certificate PEM here")
    serve.add_argument(
        "--synchronous",
        choices=("full", "normal"),
        default="full",
        help="full: every commit synced to the disk (default); normal: at checkpoints only"
        " (a commit survives the process dying, not power loss; for load-test rigs)",
    )
    serve.add_argument(
        "--escrow-devices",
        type=int,
        default=0,
        help="offline sales: devices per agent with an escrowed code (default 0: no escrow;"
        " docs/offline-sales.md)",
    )
    serve.add_argument(
        "--escrow-days", type=int, default=1, help="days of credit one escrowed code grants"
    )
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="processes serving the port and database (default 1); more use more cores"
        " (docs/platform.md, Several processes)",
    )
    serve.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        help="on SIGTERM/SIGINT, seconds to let in-flight requests finish",
    )
    dist = sub.add_parser(
        "add-distributor", help="add a distributor (prints its report API token, only once)"
    )
    dist.add_argument("name")
    issue = sub.add_parser(
        "issue-token", help="another report API token for a distributor (printed only once)"
    )
    issue.add_argument("name", help="the distributor (an existing database's is 'default')")
    revoke = sub.add_parser("revoke-token", help="revoke a report API token")
    revoke.add_argument("token", help="the token, or - to read it from stdin (keeps it out of ps)")
    plan = sub.add_parser("add-plan", help="add a catalog plan")
    plan.add_argument("name")
    plan.add_argument("price_per_day", type=int, help="minor currency units per day")
    plan.add_argument("--distributor", help="whose catalog (default: 'default')")
    agent = sub.add_parser("add-agent", help="add an agent (prints its provisioning code)")
    agent.add_argument("name")
    agent.add_argument("--distributor", help="who the agent works for (default: 'default')")
    agent.add_argument(
        "--code", help="provisioning code (default: random; a chosen one must be strong)"
    )
    agent.add_argument("--devices", type=_count, default=0, help="generate this many devices")
    agent.add_argument(
        "--format", choices=[f.name.lower() for f in KeycodeFormat], default="nexus_full"
    )
    agent.add_argument("--first-serial", type=_serial, default=10_000_001)
    agent.add_argument("--seed", type=int, help="seed for generated device keys")
    imp = sub.add_parser("import-devices", help="import a device CSV")
    imp.add_argument("csv", type=Path)
    imp.add_argument("--agent", help="put the devices in this agent's stock")
    sub.add_parser("export-devices", help="print every device with its secret as CSV")
    check = sub.add_parser(
        "check-reports",
        help="time each critical report's first page on a running platform; exit 1 when one"
        " fails or misses its budget (a CI or cron health check)",
    )
    check.add_argument("--url", required=True, help="the platform, e.g. http://127.0.0.1:8080")
    check.add_argument(
        "--token",
        help=f"the distributor's report token, sent as Authorization: Bearer (default"
        f" ${REPORT_TOKEN_ENV}); the reports ignore it until distributors are tenants",
    )
    check.add_argument(
        "--budget-ms",
        type=_budget_ms,
        default=DEFAULT_BUDGET_MS,
        help=f"each first page's budget (default {DEFAULT_BUDGET_MS:g} ms)",
    )
    return p


def worker_main(serve: Callable[[int], int]) -> Callable[[int], int]:
    """A worker's `serve`, its failures answered as `main` answers them (one line, a code)."""

    def serve_worker(worker: int) -> int:
        try:
            return serve(worker)
        except sqlite3.Error as exc:
            message, code = f"worker {worker}: {exc}", EXIT_USAGE
        except (OSError, RuntimeError) as exc:
            message, code = f"worker {worker}: {exc}", EXIT_UNAVAILABLE
        except KeyboardInterrupt:
            return 0
        print(f"server-stub: {message}", file=sys.stderr)
        return code

    return serve_worker


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    db: Path = args.db
    created = args.command != "check-reports" and not db.exists()
    try:
        return run(args)
    except SetupError as exc:
        code, message = EXIT_USAGE, str(exc)
    except Unavailable as exc:
        code, message = EXIT_UNAVAILABLE, str(exc)
    except sqlite3.Error as exc:
        code, message = EXIT_USAGE, f"--db {db}: {exc}; pass the platform's SQLite file"
    except KeyboardInterrupt:
        code, message = EXIT_UNAVAILABLE, "interrupted"
    if created:  # a failed command leaves no new database behind
        for leftover in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            leftover.unlink(missing_ok=True)
    print(f"server-stub: {message}", file=sys.stderr)
    return code


def check_db(db: Path, *, create: bool) -> None:
    """Refuse a --db that cannot be the platform's database before anything opens it."""
    if db.is_dir():
        raise SetupError(f"--db {db} is a directory: name the SQLite file (created if missing)")
    if not db.exists():
        if not create:
            raise SetupError(
                f"--db {db} does not exist: pass the platform's database, or make one with"
                " add-agent or add-plan"
            )
        if not db.parent.is_dir():
            raise SetupError(f"--db {db}: directory {db.parent} does not exist; create it")
        return
    try:
        with db.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise SetupError(f"--db {db}: cannot read it ({exc.strerror})") from None
    if head and head != SQLITE_MAGIC:
        raise SetupError(
            f"--db {db} is not a SQLite database; it was left untouched: pass the platform's"
            " database, or a new path"
        )


DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error,)
"""What a damaged or foreign database raises, for callers that by rule import no sqlite3."""


def seeded_agents(db: Path) -> int:
    """How many agents the platform database `db` holds (0 when new or empty), read without
    writing a byte; SetupError when it is some other program's database."""
    check_db(db, create=True)
    if not db.exists() or db.stat().st_size == 0:
        return 0
    uri = f"{db.resolve().as_uri()}?mode=ro&immutable=1"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as c:
            tables = {name for (name,) in c.execute("SELECT name FROM sqlite_master")}
            if not tables:
                return 0
            if "agents" not in tables:
                raise SetupError(
                    f"--db {db} is not a server-stub database; it was left untouched: name a"
                    " new file"
                )
            (count,) = c.execute("SELECT count(*) FROM agents").fetchone()
    except sqlite3.Error as exc:
        raise SetupError(f"--db {db}: {exc}; name a new file") from None
    return int(count)


def listen(host: str, port: int) -> socket.socket:
    """Bind before the app opens anything, so a taken port fails at once and cleanly."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise SetupError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise Unavailable(
                f"port {port} on {host} is already in use: stop what holds it or pick another"
                " --port"
            ) from None
        raise SetupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def mm_secret() -> bytes | None:
    """The operator's shared secret comes from the environment, never argv (ps shows argv)."""
    text = os.environ.get(SECRET_ENV)
    return text.encode() if text else None


def audit_token() -> str | None:
    """The audit API's bearer token, likewise from the environment only; unset: no audit API."""
    return os.environ.get(AUDIT_TOKEN_ENV) or None


def report_token() -> str | None:
    """A distributor's report token for `check-reports`, from the environment when not given
    as --token (a cron job's command line is visible to every user of the machine)."""
    return os.environ.get(REPORT_TOKEN_ENV) or None


def platform(
    synchronous: str = "full", escrow: EscrowPolicy | None = None, workers: int = 1
) -> Platform:
    """`escrow`: EscrowPolicy checks its own bounds (a SetupError naming the flag's value)."""
    try:
        return Platform(
            mm_secret=mm_secret(),
            audit_token=audit_token(),
            synchronous=synchronous,
            escrow=escrow or EscrowPolicy(devices=0),
            workers=workers,
        )
    except ValueError as exc:
        raise SetupError(f"${AUDIT_TOKEN_ENV}: {exc}") from exc


async def reachable(url: str) -> None:
    """One connection attempt first: a one-off request to nobody should not retry for long."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise SetupError(f"--url {url}: {exc}") from None
    try:
        async with asyncio.timeout(5.0):
            _, writer = await asyncio.open_connection(parts.hostname, port)
    except (OSError, TimeoutError):
        raise Unavailable(
            f"--url {url} is unreachable: start server-stub serve there, or pass its --url"
        ) from None
    writer.close()
    await writer.wait_closed()


async def check_reports_command(args: argparse.Namespace) -> int:
    """Each critical report's first page against the budget, as a table; 1 when unwell."""
    token = args.token or report_token()
    if not token:
        raise SetupError(f"pass --token TOKEN (or set ${REPORT_TOKEN_ENV}): the report token")
    if not bearer_safe(token):
        raise SetupError("--token must be visible ASCII without spaces (an Authorization header)")
    parts = urlsplit(args.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SetupError(f"--url {args.url}: give the platform's http://HOST:PORT")
    await reachable(args.url)
    timeout_s = max(CHECK_TIMEOUT_S, 4 * args.budget_ms / 1000)
    try:
        async with aiohttp.ClientSession() as session:
            first_page = over_http(session, args.url, token)
            checks = await check_reports(first_page, args.budget_ms, timeout_s=timeout_s)
    except aiohttp.ClientConnectorError as exc:
        raise Unavailable(
            f"--url {args.url} stopped answering ({exc}): is it still running?"
        ) from None
    print(table(checks))
    return 0 if healthy(checks) else EXIT_UNAVAILABLE


CHECK_TIMEOUT_S = 5.0
"""A first page that has not come after max(this, 4 x budget) counts as timed out."""


def run(args: argparse.Namespace) -> int:
    if args.command == "check-reports":
        return asyncio.run(check_reports_command(args))
    escrow = None
    if args.command == "serve":  # flags first: a bad one leaves no database behind
        try:
            escrow = EscrowPolicy(devices=args.escrow_devices, days=args.escrow_days)
        except SetupError as exc:
            raise SetupError(f"--escrow-devices/--escrow-days: {exc}") from None
    check_db(args.db, create=args.command not in ("export-devices", "revoke-token", "issue-token"))
    if args.command == "serve":
        # before anything starts: a bad token is a setup error
        config = platform(args.synchronous, escrow, args.workers)
        if args.cert_out is not None and not args.cert_out.parent.is_dir():
            raise SetupError(f"--cert-out {args.cert_out}: its directory does not exist")
        sock = listen(args.host, args.port)
        context = None
        if args.tls:
            context, _ = self_signed(args.host, args.cert_out)
        configure()
        if args.workers > 1:  # the schema made once, before the workers open the file
            Store.open(args.db).close()

        def serve_one(worker: int) -> int:
            web.run_app(
                create_app(args.db, platform=replace(config, worker=worker, owns_interpreter=True)),
                sock=sock,
                ssl_context=context,
                shutdown_timeout=args.shutdown_timeout,
                access_log=None,  # the app writes its own structured access log
                print=lambda text: print(text, file=sys.stderr),
            )
            return 0

        if args.workers == 1:
            return serve_one(0)
        return serve_forked(args.workers, worker_main(serve_one), args.shutdown_timeout)
    records: list[DeviceRecord] = []
    if args.command == "import-devices":
        try:
            records = parse_devices_csv(args.csv.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not a text file"
            raise SetupError(f"device CSV {args.csv}: {why}") from None
        except SetupError as exc:
            raise SetupError(
                f"{args.csv}: {exc}; fix the file (export-devices shows the format)"
            ) from None
    elif args.command == "add-agent" and args.first_serial + args.devices - 1 > MAX_SERIAL:
        raise SetupError(f"--first-serial + --devices passes the last serial, {MAX_SERIAL}")
    store = Store.open(args.db)
    now_ms = int(time.time() * 1000)
    try:
        if args.command == "add-distributor":
            distributor, token = store.add_distributor(args.name, now_ms)
            print(json.dumps({"distributor": distributor, "name": args.name, "token": token}))
        elif args.command == "issue-token":
            print(json.dumps({"name": args.name, "token": store.issue_token(args.name, now_ms)}))
        elif args.command == "revoke-token":
            token = sys.stdin.readline().strip() if args.token == "-" else args.token
            if not store.revoke_token(token, now_ms):
                raise SetupError("no live token matches; it was revoked already or never issued")
            print(json.dumps({"revoked": True}))
        elif args.command == "add-plan":
            owner = store.distributor_id(args.distributor or "default")
            plan = store.add_plan(args.name, args.price_per_day, owner)
            print(json.dumps({"plan": plan}))
        elif args.command == "add-agent":
            owner = store.distributor_id(args.distributor or "default")
            agent, code = store.add_agent(args.name, args.code, owner)
            fmt = KeycodeFormat[args.format.upper()]
            records = make_devices(args.first_serial, args.devices, fmt, random.Random(args.seed))
            store.add_devices(agent, records)
            print(
                json.dumps(
                    {
                        "agent": agent,
                        "name": args.name,
                        "code": code,
                        "devices": [r.device for r in records],
                    }
                )
            )
        elif args.command == "import-devices":
            holder = store.agent_id(args.agent) if args.agent else None
            store.add_devices(holder, records)
            print(json.dumps({"imported": len(records)}))
        elif args.command == "export-devices":
            records = [DeviceRecord(d, s) for d, s in sorted(store.device_secrets().items())]
            sys.stdout.write(write_devices_csv(records))
    finally:
        store.close()
    return 0
