"""``agent-client``: provision a handset, queue operations offline, sync, show the queue.

Every command prints JSON lines, an error as `{"error": KIND, "detail": MESSAGE}`. Exit codes:
0 done, 1 a sync left operations queued or the server was unreachable (nothing is lost), 2 a
usage error or a refusal by the server. A failed `provision` leaves no new handset file behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .agent import Agent
from .errors import AgentError, NotProvisioned, ServerRefused, TransientError
from .protocol.sync import SyncConfig
from .protocol.version import distribution_version

EXIT_UNREACHABLE = 1
EXIT_USAGE = 2
SQLITE_MAGIC = b"SQLite format 3\x00"


class UsageError(Exception):
    """The command line names something unusable; the message says what to do (exit 2)."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agent-client", description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {distribution_version()}")
    p.add_argument("--db", type=Path, default=Path("handset.db"), help="the handset's SQLite file")
    p.add_argument("--cafile", type=Path, help="trust this certificate (a TLS server-stub)")
    sub = p.add_subparsers(dest="command", required=True)
    prov = sub.add_parser("provision", help="create a key pair and register with the server")
    prov.add_argument("url")
    prov.add_argument("--agent", required=True)
    prov.add_argument("--code", required=True)
    cust = sub.add_parser("customer", help="queue: register a customer (prints its reference)")
    cust.add_argument("name")
    cust.add_argument("phone")
    sale = sub.add_parser("sale", help="queue: sell a device from stock")
    sale.add_argument("--customer", type=int, required=True)
    sale.add_argument("--device", type=int, required=True)
    sale.add_argument("--plan", type=int, required=True)
    sale.add_argument("--down", type=int, required=True, help="down payment, minor units")
    pay = sub.add_parser("payment", help="queue: cash collected for an account")
    pay.add_argument("--account", type=int, required=True, help="the device serial")
    pay.add_argument("--amount", type=int, required=True)
    sync = sub.add_parser("sync", help="exchange with the server until the queue is empty")
    sync.add_argument("--max-wait", type=float, default=0.0, help="seconds of backoff to wait out")
    sync.add_argument("--batch", type=int, help="fixed batch size (default: adaptive)")
    sub.add_parser("queue", help="show every queued operation and its state")
    codes = sub.add_parser("keycodes", help="keycodes received for a device")
    codes.add_argument("device", type=int)
    sub.add_parser("status", help="identity, cursor, clock offset, queue counts, stock")
    return p


def emit(obj: Any) -> None:
    print(json.dumps(obj, default=str), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    db: Path = args.db
    created = args.command == "provision" and not db.exists()
    try:
        check_db(args)
        return asyncio.run(run(args))
    except TransientError as exc:
        code, kind = EXIT_UNREACHABLE, "Unreachable"
        where = getattr(args, "url", None) or "the server"
        detail = f"{where} is unreachable ({exc}): start the platform or check the URL, retry"
    except ServerRefused as exc:
        code, kind, detail = EXIT_USAGE, type(exc).__name__, refused(args, exc)
    except AgentError as exc:
        code, kind, detail = EXIT_USAGE, type(exc).__name__, str(exc)
    except UsageError as exc:
        code, kind, detail = EXIT_USAGE, "UsageError", str(exc)
    except sqlite3.Error as exc:
        code, kind = EXIT_USAGE, "UsageError"
        detail = f"--db {db}: {exc}; pass this handset's own SQLite file"
    except KeyboardInterrupt:
        code, kind, detail = EXIT_UNREACHABLE, "Interrupted", "interrupted; nothing is lost"
    if created:  # nothing of a failed provisioning stays behind
        for leftover in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            leftover.unlink(missing_ok=True)
    emit({"error": kind, "detail": detail})
    return code


def refused(args: argparse.Namespace, exc: ServerRefused) -> str:
    """The server's refusal, with what the provisioning command expected."""
    if args.command == "provision" and exc.code == "bad_provisioning_code":
        return (
            f"{args.url} refused --agent {args.agent!r} with that --code: --agent takes the"
            " agent's name or the id that server-stub add-agent printed, --code the code it"
            " printed"
        )
    return str(exc)


def check_db(args: argparse.Namespace) -> None:
    """Refuse a --db or --cafile that cannot work before anything is created."""
    db: Path = args.db
    if args.cafile is not None and not args.cafile.is_file():
        raise UsageError(f"--cafile {args.cafile}: no such file; pass the server's certificate")
    if db.is_dir():
        raise UsageError(f"--db {db} is a directory: name the handset's SQLite file")
    if not db.exists():
        if args.command != "provision":
            raise NotProvisioned(
                f"--db {db} does not exist: provision a handset first"
                f" (agent-client --db {db} provision URL --agent NAME --code CODE)"
            )
        if not db.parent.is_dir():
            raise UsageError(f"--db {db}: directory {db.parent} does not exist; create it")
    else:
        try:
            with db.open("rb") as f:
                head = f.read(len(SQLITE_MAGIC))
        except OSError as exc:
            raise UsageError(f"--db {db}: cannot read it ({exc.strerror})") from None
        if head and (head != SQLITE_MAGIC or not _has_outbox(db)):
            raise UsageError(
                f"--db {db} is not a handset database; it was left untouched: pass the"
                " handset's file, or a new path to provision"
            )
    if args.command == "provision":
        url = urlsplit(args.url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise UsageError(f"URL {args.url!r} is not http(s)://HOST[:PORT]: pass the server's")
        try:
            url.port  # noqa: B018 - raises on an out-of-range port
        except ValueError as exc:
            raise UsageError(f"URL {args.url}: {exc}") from None


def _has_outbox(db: Path) -> bool:
    """Whether an SQLite file is a handset's (read-only look: another program's stays as is)."""
    try:
        uri = f"{db.resolve().as_uri()}?mode=ro&immutable=1"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as c:
            row = c.execute("SELECT 1 FROM sqlite_master WHERE name = 'outbox'").fetchone()
    except sqlite3.Error:
        return False
    return row is not None


def trust(args: argparse.Namespace) -> ssl.SSLContext | bool:
    if args.cafile is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(args.cafile))
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--cafile {args.cafile}: not a PEM certificate ({exc})") from None


async def run(args: argparse.Namespace) -> int:
    if args.command == "provision":
        agent = await Agent.provision(
            args.db, args.url, args.agent, args.code, ssl_context=trust(args)
        )
        emit({"handset": agent.handset, "server": args.url})
        await agent.close()
        return 0
    config = None
    if getattr(args, "batch", None):
        config = SyncConfig(initial_batch=args.batch, min_batch=1, max_batch=args.batch)
    agent = await Agent.open(args.db, config=config, ssl_context=trust(args))
    try:
        return await command(agent, args)
    finally:
        await agent.close()


async def command(agent: Agent, args: argparse.Namespace) -> int:
    match args.command:
        case "customer":
            emit({"customer": await agent.register_customer(args.name, args.phone)})
        case "sale":
            emit({"seq": await agent.record_sale(args.customer, args.device, args.plan, args.down)})
        case "payment":
            emit({"seq": await agent.record_payment(args.account, args.amount)})
        case "sync":
            report = await agent.sync(max_wait_s=args.max_wait)
            emit(
                {
                    "exchanges": report.exchanges,
                    "failures": report.failures,
                    "acked": len(report.acked),
                    "rejected": len(report.rejected),
                    "keycodes": len(report.keycodes),
                    "pending": report.pending,
                    "error": report.last_error,
                }
            )
            unreachable = report.exchanges > 0 and report.failures == report.exchanges
            return 1 if report.pending or unreachable else 0
        case "queue":
            for row in await agent.store.queue():
                emit(
                    {
                        "seq": row.op.seq,
                        "kind": row.op.kind.name.lower(),
                        "state": row.state,
                        "reason": row.reason,
                        "attempts": row.attempts,
                        "at": row.op.at,
                        "fields": list(row.op.fields),
                    }
                )
        case "keycodes":
            for code in await agent.keycodes_for(args.device):
                emit(
                    {
                        "device": code.device,
                        "keycode": code.text,
                        "credit_s": code.credit_s,
                        "op_seq": code.op_seq,
                    }
                )
        case "status":
            s = await agent.status()
            emit(
                {
                    "handset": s.handset,
                    "server": s.server_url,
                    "cursor": s.cursor,
                    "clock_offset_ms": s.clock_offset_ms,
                    "queue": s.queue,
                    "stock": s.stock,
                    "parked": [{"seq": seq, "reason": reason} for seq, reason in s.parked],
                }
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
