"""`field-lab conformance URL [--agent NAME --code CODE]`: run the kit against a platform.

One line per clause (PASS/FAIL, its name, the doc section it checks, what was seen), then a
summary. Exit codes: 0 every clause held; 99 a clause failed; 2 the URL or the agent and code
are unusable (the message says which); 1 the platform is unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from urllib.parse import urlsplit

from .clauses import SetupProblem
from .runner import DOC, Unreachable, Verdict, run_clauses
from .wire import HttpWire

EXIT_OK = 0
EXIT_UNREACHABLE = 1
EXIT_USAGE = 2
EXIT_FAILED = 99
DEFAULT_AGENT = "conformance"
DEFAULT_CODE = "conformance-kit-1"
"""The test-provisioning convention (docs/sync-protocol.md, Testing a platform): without
--agent/--code the kit provisions as agent ``conformance`` with code ``conformance-kit-1``."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "conformance",
        help="check a platform against the sync protocol, clause by clause",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("url", help="the platform's base URL, http(s)://HOST[:PORT]")
    p.add_argument("--agent", default=DEFAULT_AGENT, help="agent to provision handsets for")
    p.add_argument("--code", default=DEFAULT_CODE, help="that agent's provisioning code")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per clause")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    url = urlsplit(args.url)
    try:
        url.port  # noqa: B018 - raises on an out-of-range port
        usable = url.scheme in ("http", "https") and bool(url.hostname)
    except ValueError:
        usable = False
    if not usable:
        return _error(
            f"URL {args.url!r} is not http(s)://HOST[:PORT]: pass the platform's base URL"
        )
    if not args.timeout > 0:
        return _error(f"--timeout must be > 0 seconds, got {args.timeout:g}")
    try:
        verdicts = asyncio.run(_run(args))
    except SetupProblem as exc:
        return _error(f"--agent {args.agent!r} --code: {exc}")
    except Unreachable as exc:
        return _error(f"{args.url} is unreachable ({exc}): start the platform or fix the URL", 1)
    passed = sum(v.passed for v in verdicts)
    print(f"{passed} of {len(verdicts)} clauses of {DOC} held at {args.url}", flush=True)
    return EXIT_OK if passed == len(verdicts) else EXIT_FAILED


async def _run(args: argparse.Namespace) -> list[Verdict]:
    wire = HttpWire(args.url, timeout_s=args.timeout)
    try:
        return await run_clauses(
            wire,
            args.agent,
            args.code,
            timeout_s=args.timeout,
            report=lambda verdict: print(verdict.line(), flush=True),
        )
    finally:
        await wire.close()


def _error(message: str, code: int = EXIT_USAGE) -> int:
    print(f"field-lab conformance: error: {message}", file=sys.stderr)
    return code
