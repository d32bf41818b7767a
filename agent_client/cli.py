"""``agent-client``: provision a handset, queue operations offline, sync, show the queue.

Every command prints JSON lines. Exit codes: 0 done, 1 a sync left operations queued or never
got through (the link failed; nothing is lost), 2 a usage error or a refusal by the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .agent import Agent
from .errors import AgentError
from .protocol.sync import SyncConfig


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agent-client", description=__doc__)
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
    try:
        return asyncio.run(run(args))
    except AgentError as exc:
        emit({"error": type(exc).__name__, "detail": str(exc)})
        return 2


def trust(args: argparse.Namespace) -> ssl.SSLContext | bool:
    return True if args.cafile is None else ssl.create_default_context(cafile=str(args.cafile))


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
                }
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
