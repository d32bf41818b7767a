"""``server-stub``: run the platform stand-in and set up its agents, plans and devices."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from agent_client.protocol.keycodes import KeycodeFormat

from .app import Platform, create_app
from .devices import make_devices, parse_devices_csv, write_devices_csv
from .errors import SetupError
from .logs import configure
from .mno import Final, MnoConfig, MnoSimulator
from .store import DeviceRecord, Store
from .tls import self_signed

DEFAULT_DB = "server-stub.db"
SECRET_ENV = "PAYG_MM_SECRET"
AUDIT_TOKEN_ENV = "PAYG_AUDIT_TOKEN"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="server-stub", description=__doc__)
    p.add_argument("--db", type=Path, default=Path(DEFAULT_DB), help="SQLite file")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help=f"serve POST /v1/sync and friends (the audit API with ${AUDIT_TOKEN_ENV} set)",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--tls", action="store_true", help="self-signed certificate made at start")
    serve.add_argument("--cert-out", type=Path, help="write the certificate PEM here")
    serve.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        help="on SIGTERM/SIGINT, seconds to let in-flight requests finish",
    )
    pay = sub.add_parser(
        "mm-pay", help=f"pay through the operator simulator (secret from ${SECRET_ENV})"
    )
    pay.add_argument("--url", default="http://127.0.0.1:8080/v1/mm/callback")
    pay.add_argument("account", help="the device serial the customer pays for")
    pay.add_argument("amount", type=int, help="minor currency units")
    pay.add_argument("msisdn", help="the paying customer's phone number")
    pay.add_argument("--duplicate-rate", type=float, default=0.0)
    pay.add_argument("--seed", type=int, default=0)
    plan = sub.add_parser("add-plan", help="add a catalog plan")
    plan.add_argument("name")
    plan.add_argument("price_per_day", type=int, help="minor currency units per day")
    agent = sub.add_parser("add-agent", help="add an agent (prints its provisioning code)")
    agent.add_argument("name")
    agent.add_argument("--code", help="provisioning code (default: random)")
    agent.add_argument("--devices", type=int, default=0, help="generate this many devices")
    agent.add_argument(
        "--format", choices=[f.name.lower() for f in KeycodeFormat], default="nexus_full"
    )
    agent.add_argument("--first-serial", type=int, default=10_000_001)
    agent.add_argument("--seed", type=int, help="seed for generated device keys")
    imp = sub.add_parser("import-devices", help="import a device CSV")
    imp.add_argument("csv", type=Path)
    imp.add_argument("--agent", help="put the devices in this agent's stock")
    sub.add_parser("export-devices", help="print every device with its secret as CSV")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except SetupError as exc:
        print(f"server-stub: {exc}", file=sys.stderr)
        return 2


def mm_secret() -> bytes | None:
    """The operator's shared secret comes from the environment, never argv (ps shows argv)."""
    text = os.environ.get(SECRET_ENV)
    return text.encode() if text else None


def audit_token() -> str | None:
    """The audit API's bearer token, likewise from the environment only; unset: no audit API."""
    return os.environ.get(AUDIT_TOKEN_ENV) or None


def platform() -> Platform:
    try:
        return Platform(mm_secret=mm_secret(), audit_token=audit_token())
    except ValueError as exc:
        raise SetupError(f"${AUDIT_TOKEN_ENV}: {exc}") from exc


async def mm_pay(args: argparse.Namespace) -> int:
    secret = mm_secret()
    if secret is None:
        raise SetupError(f"set ${SECRET_ENV} to the secret the server was started with")
    try:
        config = MnoConfig(delay_s=(0.0, 0.0), duplicate_rate=args.duplicate_rate, seed=args.seed)
        mno = MnoSimulator(args.url, secret, config)
    except ValueError as exc:
        raise SetupError(str(exc)) from exc
    await mno.start()
    txn_id = mno.pay(args.account, args.amount, args.msisdn)
    await mno.stop(timeout_s=60.0)
    txn = mno.history[txn_id]
    answers = [a.answer or {"error": a.error} for a in txn.attempts]
    print(json.dumps({"txn": txn_id, "final": txn.final.value, "answers": answers}))
    return 0 if txn.final is Final.ACKNOWLEDGED else 1


def run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        config = platform()  # before anything starts: a bad token is a setup error
        context = None
        if args.tls:
            context, _ = self_signed(args.host, args.cert_out)
        configure()
        web.run_app(
            create_app(args.db, platform=config),
            host=args.host,
            port=args.port,
            ssl_context=context,
            shutdown_timeout=args.shutdown_timeout,
            access_log=None,  # the app writes its own structured access log
            print=lambda text: print(text, file=sys.stderr),
        )
        return 0
    if args.command == "mm-pay":
        return asyncio.run(mm_pay(args))
    store = Store.open(args.db)
    try:
        if args.command == "add-plan":
            print(json.dumps({"plan": store.add_plan(args.name, args.price_per_day)}))
        elif args.command == "add-agent":
            agent, code = store.add_agent(args.name, args.code)
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
            records = parse_devices_csv(args.csv.read_text())
            owner = store.agent_id(args.agent) if args.agent else None
            store.add_devices(owner, records)
            print(json.dumps({"imported": len(records)}))
        elif args.command == "export-devices":
            records = [DeviceRecord(d, s) for d, s in sorted(store.device_secrets().items())]
            sys.stdout.write(write_devices_csv(records))
    finally:
        store.close()
    return 0
