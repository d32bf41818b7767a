"""`meter-sim`: a simulated meter at the terminal, on a line protocol, or as a demo.

meter-sim [session] [device options]      type keys at an interactive keypad
meter-sim serve --stdio|--tcp H:P|--pty   serve the line protocol (docs/line-protocol.md)
meter-sim demo                            enter issued keycodes into meters
meter-sim replay TRACE --target T         replay a recorded trace (docs/trace-format.md)
                                          (--junit FILE: also a JUnit XML report for CI)
meter-sim tap --jig URL --device URL      record a jig talking to a device

`session` and `serve` take `--record FILE` to write a trace, and `--state FILE` to keep the
meter's non-volatile image (a file that is not this meter's image is refused, never
overwritten; `--fresh` starts a factory meter whatever it holds). `serve` is one meter on one
device clock for every connection. Exit codes: 0 done, 1 the port is taken,
2 bad input (one line names it; nothing is written), 3 the replay or tap target is unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from meter_sim.errors import MeterError
from meter_sim.line_protocol import Device, LineSession, check_word, describe, format_seconds
from meter_sim.meter import MAX_OPENPAYGO_COUNT, Meter
from meter_sim.nv import Image, Kind, classify
from meter_sim.openpaygo.policy import PRESETS
from meter_sim.serve import open_pty, serve_pty, serve_stdio, serve_tcp
from meter_sim.storage import FileStorage
from meter_sim.trace.device import QUIRKS, DeviceConfig, load_device, simulator_version
from meter_sim.trace.errors import RecordError, TargetError, TraceError
from meter_sim.trace.format import Header, TraceWriter, load
from meter_sim.trace.recorder import MeterLike, RecordingSession, TraceRecorder
from meter_sim.trace.replay import EXIT_UNREACHABLE, Result
from meter_sim.trace.runner import Timing, replay
from meter_sim.trace.tap import header_from_hello, identify, run_tap
from meter_sim.trace.targets import PARITIES, SerialLink, SerialSettings, open_target

SAMPLE_KEY = "deadbeef1020304004030201feebdaed"
"""The Nexus desktop sample program's key: public, for demos only."""

EXIT_BUSY = 1
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141  # as a shell reports a reader that closed early (128 + SIGPIPE)
LONG_REPLAY = 60.0
"""Seconds of pacing past which `replay` says how long it will take."""


def _hex_key(text: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError("the key is 32 hex digits") from None
    if len(key) != 16:
        raise argparse.ArgumentTypeError(f"the key is 16 bytes (32 hex digits), got {len(key)}")
    return key


def _payg_id(text: str) -> str:
    if text == "":
        return text  # no PAYG id: the device shows `-`
    try:
        return check_word("--payg-id", text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isdigit() or len(text) > 12 or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number {low}..{high}, got {text!r}")
        return int(text)

    return parse


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
    group.add_argument(
        "--payg-id",
        type=_payg_id,
        default="",
        help="user-facing PAYG id (Nexus): one word of letters, digits, . _ - (at most 32)",
    )
    group.add_argument(
        "--starting-code",
        type=_int_in(0, 999_999_999),
        default=123456789,
        help="OpenPAYGO starting code, 0..999999999 (default 123456789)",
    )
    group.add_argument(
        "--count",
        type=_int_in(1, MAX_OPENPAYGO_COUNT),
        default=1,
        help="OpenPAYGO initial count (default 1)",
    )
    group.add_argument("--restricted-digits", action="store_true", help="OpenPAYGO keys 1-4")
    group.add_argument(
        "--time-divider",
        type=_int_in(1, 255),
        default=1,
        help="OpenPAYGO: token value units per day (default 1)",
    )
    group.add_argument("--no-rate-limit", action="store_true", help="bench use only")
    firmware = parser.add_argument_group("firmware (docs/meter.md)")
    firmware.add_argument(
        "--strict",
        action="store_true",
        help="Nexus: refuse what the backend never emits (default: as nexus-embedded v2.0.1)",
    )
    firmware.add_argument(
        "--allow-demo",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Nexus: accept demo codes (default: the firmware's, on unless --strict)",
    )
    firmware.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="default",
        help="OpenPAYGO: answer as the default device or as OpenPAYGO-HW's C example",
    )
    firmware.add_argument(
        "--quirk",
        action="append",
        default=[],
        choices=sorted(QUIRKS),
        help="reproduce a named firmware bug (repeatable)",
    )
    group.add_argument(
        "--state",
        metavar="FILE",
        help="file holding the meter's non-volatile state (created when missing; a file that"
        " is not this meter's image is refused)",
    )
    group.add_argument(
        "--fresh",
        action="store_true",
        help="start from a factory meter: a --state file is started again, whatever it holds",
    )
    group.add_argument(
        "--reset-state",
        action="store_true",
        help="the same as --fresh, with --state FILE",
    )


def device_config(args: argparse.Namespace) -> DeviceConfig:
    """The device the options describe, as a trace header records it."""
    protocol = args.protocol
    if protocol == "openpaygo" and args.restricted_digits:
        protocol = "openpaygo-restricted"
    return DeviceConfig(
        protocol=protocol,
        key=args.key,
        payg_id=args.payg_id,
        starting_code=args.starting_code,
        count=args.count,
        time_divider=args.time_divider,
        rate_limit=not args.no_rate_limit,
        strict=args.strict,
        allow_demo=args.allow_demo,
        preset=args.preset,
        quirks=tuple(args.quirk),
    )


class UsageError(Exception):
    """The user's input cannot be used as it is; the message says what to do (exit 2)."""


class PortBusy(Exception):
    """Another program holds the port `serve --tcp` asked for (exit 1)."""


def _port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortBusy(
                    f"--tcp {host}:{port} is already in use: stop what holds it or pick another"
                    " port"
                ) from None
            raise UsageError(f"--tcp {host}:{port}: cannot listen there ({exc.strerror})") from None


_KINDS = {"nexus-full": Kind.NEXUS_FULL, "nexus-small": Kind.NEXUS_SMALL}


def state_storage(path: str, kind: Kind, fingerprint: int, *, reset: bool) -> FileStorage:
    """A storage on `path` only if it is empty or this device's image (kind and key, as
    `nv.key_fingerprint`): a meter boots over a corrupt image with factory defaults, so the
    file is judged before the meter may write."""
    file = Path(path)
    if file.is_dir():
        raise UsageError(f"--state {path} is a directory: name a file (it is created)")
    if not file.parent.is_dir():
        raise UsageError(f"--state {path}: directory {file.parent} does not exist; create it")
    try:
        medium = file.read_bytes()
    except FileNotFoundError:
        medium = b""
    except OSError as exc:
        raise UsageError(f"--state {path}: cannot read it ({exc.strerror})") from None
    target = file if file.exists() else file.parent
    if not os.access(target, os.W_OK):
        raise UsageError(f"--state {path}: not writable; name a file you may write")
    if reset:
        file.write_bytes(b"")
        return FileStorage(file)
    verdict, why = classify(medium, kind, fingerprint)
    if verdict in (Image.EMPTY, Image.VALID):
        return FileStorage(file)
    untouched = "it was left untouched"
    if verdict is Image.FOREIGN:
        raise UsageError(
            f"--state {path} is not a meter image ({why}); {untouched}: name a new file to"
            " start a fresh meter, or pass --fresh to overwrite it"
        )
    if verdict is Image.OTHER_KIND:
        raise UsageError(
            f"--state {path} holds a meter image of another kind ({why}); {untouched}: pass the"
            " --protocol it was made with, or name another file"
        )
    if verdict is Image.OTHER_KEY:
        raise UsageError(
            f"--state {path} holds a {kind.label} image written for another device key (or"
            f" starting code); {untouched}: pass the --key it was made with, name another file,"
            " or pass --fresh to start it again from factory defaults"
        )
    if verdict is Image.OLD_FORMAT:
        raise UsageError(
            f"--state {path} holds {why}, which this version does not read; {untouched}: pass"
            " --fresh to start it again from factory defaults (its replay history is lost)"
        )
    raise UsageError(
        f"--state {path} is a corrupt meter image of kind {kind.label} ({why}); {untouched}: pass"
        " --fresh to start it again from factory defaults (its replay history is lost)"
    )


def _check_record(path: str) -> None:
    """A trace may replace an earlier trace, never a file that is something else."""
    file = Path(path)
    if file.is_dir():
        raise UsageError(f"--record {path} is a directory: name a file for the trace")
    if not file.parent.is_dir():
        raise UsageError(f"--record {path}: its directory does not exist; create it")
    if not file.exists() or file.stat().st_size == 0:
        return
    try:
        with file.open("rb") as f:
            first = json.loads(f.readline())
        ours = isinstance(first, dict) and first.get("type") == "header"
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise UsageError(
            f"--record {path} exists and is not a trace; it was left untouched: name a new file"
        )


def build_meter(args: argparse.Namespace, now: float = 0.0) -> Meter:
    config = device_config(args)
    storage = None
    if args.state:
        kind = _KINDS.get(args.protocol, Kind.OPENPAYGO)
        reset = args.reset_state or args.fresh
        storage = state_storage(args.state, kind, config.nv_fingerprint, reset=reset)
    elif args.reset_state:
        raise UsageError("--reset-state goes with --state FILE (--fresh alone is the default)")
    return config.build(storage=storage, now=now)


def _record_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("recording")
    group.add_argument("--record", metavar="FILE", help="write a trace (docs/trace-format.md)")
    group.add_argument(
        "--include-secret", action="store_true", help="write the device key into the trace"
    )


def _origin() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextlib.contextmanager
def _trace_file(path: str, header: Header, include_secret: bool) -> Iterator[TraceWriter]:
    with open(path, "w", encoding="utf-8") as stream:
        yield TraceWriter(stream, header, include_secret=include_secret)


def _wall_stamp() -> Callable[[], float]:
    start = time.monotonic()
    return lambda: time.monotonic() - start


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meter-sim", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=simulator_version())
    sub = parser.add_subparsers(dest="command")
    session = sub.add_parser("session", help="interactive keypad session (the default)")
    _device_options(session)
    _record_options(session)
    serve = sub.add_parser("serve", help="serve the line protocol")
    _device_options(serve)
    _record_options(serve)
    where = serve.add_mutually_exclusive_group(required=True)
    where.add_argument("--stdio", action="store_true", help="on stdin/stdout")
    where.add_argument("--tcp", type=_host_port, metavar="HOST:PORT", help="on TCP")
    where.add_argument("--pty", action="store_true", help="on a new pseudo-terminal")
    serve.add_argument(
        "--wall-clock", action="store_true", help="device time = seconds since start"
    )
    sub.add_parser("demo", help="enter reference-encoder keycodes into simulated meters")
    _replay_parser(
        sub.add_parser(
            "replay",
            help="replay a trace against a device",
            description="Replay a trace and compare every answer (docs/trace-format.md). Exit"
            " 0 identical, 1 mismatch or timeout, 2 usage or trace error, 3 target unreachable;"
            " --junit FILE writes the outcome as JUnit XML too.",
        )
    )
    tap = sub.add_parser("tap", help="record a jig talking to a device over serial")
    tap.add_argument("--jig", required=True, metavar="URL", help="port the jig talks to")
    tap.add_argument("--device", required=True, metavar="URL", help="port of the device")
    tap.add_argument("--record", required=True, metavar="FILE", help="trace to write")
    tap.add_argument("--duration", type=_positive, help="stop after this many seconds")
    tap.add_argument("--timeout", type=_positive, default=2.0, help="HELLO wait (default 2 s)")
    _serial_options(tap, "both ports")
    return parser


def _serial_options(parser: argparse.ArgumentParser, which: str) -> None:
    group = parser.add_argument_group(
        "serial port",
        f"framing of {which} when a device path or pyserial URL (pseudo-terminals, socket://"
        " and loop:// accept and ignore it); default 115200 8N1, no flow control",
    )
    group.add_argument(
        "--baud", type=_int_in(50, 4_000_000), default=115200, help="bits per second"
    )
    group.add_argument("--parity", choices=list(PARITIES), default="none", help="parity bit")
    group.add_argument("--bytesize", type=int, choices=[5, 6, 7, 8], default=8, help="data bits")
    group.add_argument(
        "--stopbits", type=float, choices=[1, 1.5, 2], default=1, help="stop bits (1, 1.5, 2)"
    )
    group.add_argument("--rtscts", action="store_true", help="RTS/CTS hardware flow control")
    group.add_argument("--xonxoff", action="store_true", help="XON/XOFF software flow control")


def serial_settings(args: argparse.Namespace) -> SerialSettings:
    """The serial framing the options ask for."""
    return SerialSettings(
        baudrate=args.baud,
        parity=args.parity,
        bytesize=args.bytesize,
        stopbits=args.stopbits,
        rtscts=args.rtscts,
        xonxoff=args.xonxoff,
    )


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _replay_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace", help="trace file (JSON Lines)")
    parser.add_argument(
        "--target",
        default="sim",
        help="sim | tcp://HOST:PORT | /dev/ttyX | any pyserial URL (default sim)",
    )
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed", type=_positive, default=1.0, help="N times the recorded pace (default 1)"
    )
    pace.add_argument("--fast", action="store_true", help="as fast as the device answers")
    parser.add_argument(
        "--timeout", type=_positive, default=2.0, help="seconds to wait for each answer"
    )
    parser.add_argument(
        "--max-timeouts", type=int, default=3, help="consecutive timeouts before giving up"
    )
    parser.add_argument("--device", metavar="FILE", help="device file (key etc.) for --target sim")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--junit", metavar="FILE", help="also write the outcome as a JUnit XML report (for CI)"
    )
    parser.add_argument(
        "--key-gap",
        type=_non_negative,
        default=0.0,
        metavar="S",
        help="pace keys: at least S seconds between one KEY request and the next, at any speed"
        " (a real keypad's scan time; default 0)",
    )
    _serial_options(parser, "--target")


def interactive(meter: MeterLike) -> int:
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
            if isinstance(meter, TraceRecorder):
                meter.status(now)
            credit = format_seconds(meter.credit_remaining(now))
            print(f"t={format_seconds(now)} s  credit={credit} s  state={meter.state(now)}")
            continue
        for key in text:
            if key.isspace():
                continue
            try:
                reply = meter.press_key(key, now)
            except RecordError as exc:
                print(f"key {key!r} not pressed: {exc}")
                continue
            if reply.result is not None:
                print(describe(reply.result))
            elif reply.feedback.value == "rejected":
                print(f"key {key!r} rejected")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI; a reader that stops early (`meter-sim demo | head`) ends it quietly."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # Python would report the broken pipe again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _main(argv: Sequence[str] | None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    commands = {"session", "serve", "demo", "replay", "tap", "-h", "--help", "--version"}
    if not words or words[0] not in commands:
        words = ["session", *words]
    args = _parser().parse_args(words)
    command = args.command
    if command == "demo":
        from meter_sim.demo import run_demo

        return run_demo()
    try:
        if command == "replay":
            return run_replay(args, sys.stdout)
        if command == "tap":
            return run_tap_command(args)
        if args.record:
            _check_record(args.record)
        if command == "serve" and args.tcp:
            _port_free(*args.tcp)  # before the state or trace file is touched
        meter = build_meter(args)
        if args.record:
            header = Header(
                device_config(args),
                firmware=simulator_version(),
                recorder=f"meter-sim {command}",
                origin=_origin(),
            )
            with _trace_file(args.record, header, args.include_secret) as writer:
                return _run_device(args, meter, writer)
        return _run_device(args, meter, None)
    except TargetError as exc:
        print(f"meter-sim: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except PortBusy as exc:
        print(f"meter-sim: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except (UsageError, MeterError) as exc:
        print(f"meter-sim: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"meter-sim: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 0


def _run_device(args: argparse.Namespace, meter: Meter, writer: TraceWriter | None) -> int:
    """Run `session` or `serve`; with a writer, record what the device is asked and answers."""
    stamp = _wall_stamp()
    if args.command == "session":
        if writer is None:
            return interactive(meter)
        return interactive(TraceRecorder(meter, writer.write, stamp=stamp))
    start = time.monotonic()
    clock = (lambda: time.monotonic() - start) if args.wall_clock else None
    device = Device(meter, clock)  # one meter, one clock, whichever connection speaks

    def make_session(d: Device) -> LineSession:
        if writer is None:
            return LineSession(d)
        return RecordingSession(d, None, writer.write, stamp)

    if args.stdio:
        serve_stdio(make_session(device), sys.stdin.buffer, sys.stdout.buffer)
    elif args.tcp:
        host, port = args.tcp
        asyncio.run(
            serve_tcp(
                device,
                host,
                port,
                make_session=make_session,
                ready=lambda h, p: print(f"serving on {h}:{p}", flush=True),
            )
        )
    else:
        controller, path = open_pty()
        print(f"serving on {path}", flush=True)
        asyncio.run(serve_pty(make_session(device), controller))
    return 0


def run_replay(args: argparse.Namespace, out: TextIO) -> int:
    """`meter-sim replay`: exit 0 identical, 1 mismatch, 2 usage/trace, 3 target unreachable.

    With `--junit FILE` the outcome, whatever it is, is also written as a JUnit XML report.
    """
    junit = args.junit
    if junit is not None and not Path(junit).parent.is_dir():
        print(f"meter-sim: --junit {junit}: no such directory", file=sys.stderr)
        return EXIT_USAGE
    started = time.monotonic()
    done = _replay(args, out)
    if junit is None:
        return done.code
    from meter_sim.trace.junit import error_case, replay_case, write_junit

    seconds = time.monotonic() - started
    if done.result is not None:
        assert done.protocol is not None
        case = replay_case(done.result, source=args.trace, protocol=done.protocol, seconds=seconds)
    else:
        assert done.error is not None
        case = error_case(done.error, source=args.trace, protocol=done.protocol, seconds=seconds)
    properties = {"target": done.target or args.target}
    try:
        write_junit(junit, [case], properties=properties)
    except OSError as exc:
        print(f"meter-sim: cannot write the JUnit report: {exc}", file=sys.stderr)
        return done.code or EXIT_USAGE
    return done.code


@dataclass
class _Replayed:
    """What `_replay` did: the exit code, and the replay's result or the error that stopped it."""

    code: int
    protocol: str | None = None
    target: str | None = None
    result: Result | None = None
    error: Exception | None = None


def _replay(args: argparse.Namespace, out: TextIO) -> _Replayed:
    if args.max_timeouts < 1:
        message = "--max-timeouts must be at least 1"
        print(f"meter-sim: {message}", file=sys.stderr)
        return _Replayed(EXIT_USAGE, error=ValueError(message))
    protocol: str | None = None
    try:
        trace = load(args.trace)
        device = trace.header.device
        protocol = device.protocol
        if args.device:
            device = device.with_key_from(load_device(args.device))
        speed = None if args.fast else args.speed
        span = trace.events[-1].t - trace.events[0].t if trace.events else 0.0
        if speed is not None and span / speed > LONG_REPLAY:
            print(
                f"meter-sim: replaying at {speed}x the recorded pace takes {span / speed:,.0f} s;"
                " --fast replays without waiting",
                file=sys.stderr,
            )
        link = open_target(args.target, device, serial=serial_settings(args))
    except TargetError as exc:
        print(f"meter-sim: {exc}", file=sys.stderr)
        return _Replayed(EXIT_UNREACHABLE, protocol, error=exc)
    except (TraceError, ValueError) as exc:
        print(f"meter-sim: {exc}", file=sys.stderr)
        return _Replayed(EXIT_USAGE, protocol, error=exc)
    timing = Timing()
    with link:
        result = replay(
            trace,
            link,
            speed=speed,
            timeout=args.timeout,
            max_timeouts=args.max_timeouts,
            timing=timing,
            key_gap=args.key_gap,
        )
    from meter_sim.trace.report import print_report, to_json  # rich loads only when replaying

    if args.json:
        print(json.dumps(to_json(result, timing, source=trace.source, target=link.name)), file=out)
    else:
        print_report(
            result,
            timing,
            source=trace.source,
            target=link.name,
            events=len(trace.events),
            out=out,
        )
    return _Replayed(result.exit_code, protocol, link.name, result)


def run_tap_command(args: argparse.Namespace) -> int:
    _check_record(args.record)
    settings = serial_settings(args)
    with (
        SerialLink(args.device, settings=settings) as device,
        SerialLink(args.jig, settings=settings) as jig,
    ):
        header = header_from_hello(identify(device, timeout=args.timeout), origin=_origin())
        with _trace_file(args.record, header, False) as writer:
            print(f"tapping {args.jig} <-> {args.device} into {args.record}", flush=True)
            try:
                stats = run_tap(jig, device, writer.write, duration=args.duration)
            except KeyboardInterrupt:
                return 0
            print(
                f"recorded {writer.count} events ({stats.to_device} bytes to the device,"
                f" {stats.to_jig} to the jig)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
