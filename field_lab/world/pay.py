"""`field-lab mm-pay ACCOUNT AMOUNT MSISDN`: one customer payment through the operator
simulator, called back to a running platform (the secret from $PAYG_MM_SECRET, never argv).

Prints the transaction's final state and every answer as one JSON line; exit 0 when the
platform acknowledged it, 1 when it refused it or cannot be reached, 2 for bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from server_stub.cli import SECRET_ENV, Unavailable, mm_secret, reachable
from server_stub.errors import SetupError

from .mno import Final, MnoConfig, MnoSimulator

EXIT_REFUSED = 1
EXIT_USAGE = 2


def _amount(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole amount, got {text!r}")
    return int(text)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pay = sub.add_parser(
        "mm-pay", help=f"pay through the operator simulator (secret from ${SECRET_ENV})"
    )
    pay.add_argument("--url", default="http://127.0.0.1:8080/v1/mm/callback")
    pay.add_argument("account", help="the device serial the customer pays for")
    pay.add_argument("amount", type=_amount, help="minor currency units")
    pay.add_argument("msisdn", help="the paying customer's phone number")
    pay.add_argument("--duplicate-rate", type=float, default=0.0)
    pay.add_argument("--seed", type=int, default=0)
    pay.set_defaults(run=run_pay)


def run_pay(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_pay(args))
    except SetupError as exc:
        code, message = EXIT_USAGE, str(exc)
    except Unavailable as exc:
        code, message = EXIT_REFUSED, str(exc)
    print(f"field-lab mm-pay: error: {message}", file=sys.stderr)
    return code


async def _pay(args: argparse.Namespace) -> int:
    secret = mm_secret()
    if secret is None:
        raise SetupError(f"set ${SECRET_ENV} to the secret the server was started with")
    try:
        config = MnoConfig(delay_s=(0.0, 0.0), duplicate_rate=args.duplicate_rate, seed=args.seed)
        mno = MnoSimulator(args.url, secret, config)
    except ValueError as exc:
        raise SetupError(
            f"--url {args.url}: {exc}" if "127.0.0.1" in str(exc) else str(exc)
        ) from exc
    await reachable(args.url)
    await mno.start()
    txn_id = mno.pay(args.account, args.amount, args.msisdn)
    await mno.stop(timeout_s=60.0)
    txn = mno.history[txn_id]
    answers = [a.answer or {"error": a.error} for a in txn.attempts]
    print(json.dumps({"txn": txn_id, "final": txn.final.value, "answers": answers}))
    return 0 if txn.final is Final.ACKNOWLEDGED else EXIT_REFUSED
