"""`meter-sim`: a simulated meter at the terminal, on a line protocol, or as a demo.

meter-sim [session] [device options]      type keys at an interactive keypad
meter-sim serve --stdio|--tcp H:P|--pty   serve the line protocol (docs/line-protocol.md)
meter-sim demo                            enter reference-encoder keycodes into meters
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

from meter_sim.errors import MeterError
from meter_sim.line_protocol import LineSession, describe, format_seconds
from meter_sim.meter import Meter
from meter_sim.ratelimit import NexusRateLimit, OpenPaygoBlocking
from meter_sim.serve import open_pty, serve_pty, serve_stdio, serve_tcp
from meter_sim.storage import FileStorage

SAMPLE_KEY = "deadbeef1020304004030201feebdaed"
"""The Nexus desktop sample program's key: public, for demos only."""

EXIT_USAGE = 2


def _hex_key(text: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError("the key is 32 hex digits") from None
    if len(key) != 16:
        raise argparse.ArgumentTypeError(f"the key is 16 bytes (32 hex digits), got {len(key)}")
    return key


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def _device_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("device")
    group.add_argument(
        "--protocol",
        choices=["nexus-full", "nexus-small", "openpaygo"],
        default="nexus-full",
        help="keycode protocol (default nexus-full)",
    )
    group.add_argument(
        "--key",
        type=_hex_key,
        default=bytes.fromhex(SAMPLE_KEY),
        help="device secret, 32 hex digits (default: the public Nexus sample key)",
    )
    group.add_argument("--payg-id", default="", help="user-facing PAYG id (Nexus)")
    group.add_argument("--starting-code", type=int, default=123456789, help="OpenPAYGO")
    group.add_argument("--count", type=int, default=1, help="OpenPAYGO initial count")
    group.add_argument("--restricted-digits", action="store_true", help="OpenPAYGO keys 1-4")
    group.add_argument("--time-divider", type=int, default=1, help="OpenPAYGO")
    group.add_argument("--no-rate-limit", action="store_true", help="bench use only")
    group.add_argument("--state", help="file holding the meter's non-volatile state")


def build_meter(args: argparse.Namespace, now: float = 0.0) -> Meter:
    storage = FileStorage(args.state) if args.state else None
    if args.protocol == "openpaygo":
        return Meter.openpaygo(
            args.key,
            args.starting_code,
            count=args.count,
            restricted_digits=args.restricted_digits,
            time_divider=args.time_divider,
            blocking=None if args.no_rate_limit else OpenPaygoBlocking(),
            storage=storage,
            now=now,
        )
    return Meter.nexus(
        args.key,
        args.protocol.removeprefix("nexus-"),
        payg_id=args.payg_id,
        rate_limit=None if args.no_rate_limit else NexusRateLimit(),
        storage=storage,
        now=now,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meter-sim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    session = sub.add_parser("session", help="interactive keypad session (the default)")
    _device_options(session)
    serve = sub.add_parser("serve", help="serve the line protocol")
    _device_options(serve)
    where = serve.add_mutually_exclusive_group(required=True)
    where.add_argument("--stdio", action="store_true", help="on stdin/stdout")
    where.add_argument("--tcp", type=_host_port, metavar="HOST:PORT", help="on TCP")
    where.add_argument("--pty", action="store_true", help="on a new pseudo-terminal")
    serve.add_argument(
        "--wall-clock", action="store_true", help="device time = seconds since start"
    )
    sub.add_parser("demo", help="enter reference-encoder keycodes into simulated meters")
    return parser


def interactive(meter: Meter) -> int:
    """Type keys or whole codes; `:wait SECONDS`, `:status`, `:power`, `:quit`."""
    now = 0.0
    print(f"meter-sim {meter.protocol}: keys {meter.keypad.keys}. Type keys, or :help.")
    for line in sys.stdin:
        text = line.strip()
        if not text:
            continue
        if text.startswith(":"):
            verb, _, arg = text[1:].partition(" ")
            if verb in ("quit", "q"):
                break
            if verb == "wait":
                try:
                    now += max(0.0, float(arg))
                except ValueError:
                    print("usage: :wait SECONDS")
                    continue
                meter.advance(now)
            elif verb == "power":
                meter.power_cycle(now)
                print(f"power cycled (nv {meter.nv_status.value})")
                continue
            elif verb != "status":
                print(":wait SECONDS | :status | :power | :quit")
                continue
            credit = format_seconds(meter.credit_remaining(now))
            print(f"t={format_seconds(now)} s  credit={credit} s  state={meter.state(now)}")
            continue
        for key in text:
            if key.isspace():
                continue
            reply = meter.press_key(key, now)
            if reply.result is not None:
                print(describe(reply.result))
            elif reply.feedback.value == "rejected":
                print(f"key {key!r} rejected")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if not words or words[0] not in {"session", "serve", "demo", "-h", "--help"}:
        words = ["session", *words]
    args = _parser().parse_args(words)
    command = args.command
    if command == "demo":
        from meter_sim.demo import run_demo

        return run_demo()
    try:
        meter = build_meter(args)
        if command == "session":
            return interactive(meter)
        start = time.monotonic()
        clock = (lambda: time.monotonic() - start) if args.wall_clock else None
        if args.stdio:
            serve_stdio(LineSession(meter, clock), sys.stdin.buffer, sys.stdout.buffer)
        elif args.tcp:
            host, port = args.tcp
            asyncio.run(
                serve_tcp(
                    meter,
                    host,
                    port,
                    make_session=lambda m: LineSession(m, clock),
                    ready=lambda h, p: print(f"serving on {h}:{p}", flush=True),
                )
            )
        else:
            controller, path = open_pty()
            print(f"serving on {path}", flush=True)
            asyncio.run(serve_pty(LineSession(meter, clock), controller))
    except MeterError as exc:
        print(f"meter-sim: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
