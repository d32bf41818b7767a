"""`field-lab`: the lab's command line. `main()` only dispatches to one function per subcommand.

    field-lab link --profile gprs-typ --listen 127.0.0.1:9000 --upstream 127.0.0.1:8080
                   [--profiles FILE] [--seed N] [--outages FILE] [--stats-json FILE] [--duration S]
    field-lab conformance URL [--agent NAME --code CODE]    (field_lab/conformance/command.py)
    field-lab mm-pay ACCOUNT AMOUNT MSISDN [--url URL]       (field_lab/world/pay.py)
    field-lab simulate [SCENARIO] --days N [--agents N] [--devices N] [--seed N] [--out DIR]

Exit codes: 0 done, 2 bad arguments or configuration (the message says which file/key), 1 a
runtime failure such as an address already in use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence

from agent_client.protocol.version import distribution_version
from field_lab.conformance.command import add_parser as add_conformance_parser
from field_lab.lab.command import add_parsers as add_lab_parsers
from field_lab.link.errors import ConfigError
from field_lab.link.outages import Outage, load_outages
from field_lab.link.profiles import BUILTIN_PROFILES, Profile, get_profile, load_profiles
from field_lab.link.proxy import LinkProxy
from field_lab.simulate.command import add_parser as add_simulate_parser
from field_lab.world.pay import add_parser as add_pay_parser

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2


def address(text: str) -> tuple[str, int]:
    """Parse HOST:PORT (argparse type); IPv6 hosts go in brackets: [::1]:9000."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65_535:
        raise argparse.ArgumentTypeError(f"port must be an integer in 0..65535, got {port_text!r}")
    return host, int(port_text)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _add_link_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "link",
        help="run a TCP proxy that puts clients behind an emulated 2G link",
        description="Relay every client connection through one emulated handset link.",
    )
    p.add_argument(
        "--profile",
        required=True,
        help=f"built-in ({', '.join(BUILTIN_PROFILES)}) or a name from --profiles",
    )
    p.add_argument("--profiles", metavar="FILE", help="TOML file with [profile.NAME] tables")
    p.add_argument("--listen", type=address, required=True, metavar="HOST:PORT")
    p.add_argument("--upstream", type=address, required=True, metavar="HOST:PORT")
    p.add_argument("--seed", type=int, default=0, help="seed of the link's random choices")
    p.add_argument("--outages", metavar="FILE", help="TOML [[outage]] script (replaces random)")
    p.add_argument("--stats-json", metavar="FILE", help="write byte and timing stats on exit")
    p.add_argument("--duration", type=_positive, metavar="S", help="stop after S seconds")
    p.set_defaults(run=run_link)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="field-lab", description="The PAYG field lab.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {distribution_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_link_parser(sub)
    add_lab_parsers(sub)
    add_conformance_parser(sub)
    add_pay_parser(sub)
    add_simulate_parser(sub)
    return parser


def run_link(args: argparse.Namespace) -> int:
    custom = load_profiles(args.profiles) if args.profiles else None
    profile = get_profile(args.profile, custom)
    outages: list[Outage] | None = load_outages(args.outages) if args.outages else None
    return asyncio.run(_serve_link(args, profile, outages))


async def _serve_link(
    args: argparse.Namespace, profile: Profile, outages: list[Outage] | None
) -> int:
    proxy = LinkProxy(profile, args.upstream, seed=args.seed, outages=outages)
    try:
        host, port = await proxy.start(*args.listen)
    except OSError as exc:
        print(f"field-lab link: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    print(
        f"field-lab link: {profile.name} on {host}:{port} -> {args.upstream[0]}:{args.upstream[1]}",
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with asyncio.timeout(args.duration):
            await stop.wait()
    except TimeoutError:
        pass
    finally:
        if args.stats_json:
            proxy.write_stats(args.stats_json)
        await proxy.aclose()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except ConfigError as exc:
        print(f"field-lab {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
