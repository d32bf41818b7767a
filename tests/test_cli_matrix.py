"""Bad input never hurts: every CLI answers every bad input in one line, with no traceback,
the right exit status, and nothing written or left behind (issue 17).

Each case runs in a fresh copy of one workspace (a text file, meter images, a trace, a device
CSV, a platform database, a lab fixture); afterwards the workspace must hold exactly the bytes
it held before. Exit statuses: 2 usage or input (the message names the flag, file, port or URL
and what to do), 1 an unreachable peer or a busy port, 3 `meter-sim replay`/`tap`'s documented
"target unreachable", 130 an interrupted `field-lab run`. Most cases call `main([...])` in
process; the few that need a real process (a signal, the entry point's own output) are
subprocesses.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from agent_client.cli import main as agent_client_main
from agent_client.protocol.keycodes import KeycodeFormat
from field_lab.cli import main as field_lab_main
from field_lab.scenario import DEFAULT
from field_lab.world.fixture import Stocking, seed
from meter_sim import Meter
from meter_sim.cli import main as meter_sim_main
from meter_sim.nv import crc16
from meter_sim.storage import MemoryStorage
from server_stub.app import create_app
from server_stub.cli import main as server_stub_main
from server_stub.devices import make_devices, write_devices_csv
from tests.server_stub.fixtures import seed_platform

BIN = Path(sys.executable).parent
GOLDEN = Path(__file__).parent / "meter_sim" / "golden" / "nexus_full_credit.jsonl"
KEY = bytes.fromhex("deadbeef1020304004030201feebdaed")

MAINS: dict[str, Callable[[list[str]], int]] = {
    "meter-sim": meter_sim_main,
    "server-stub": server_stub_main,
    "agent-client": agent_client_main,
    "field-lab": field_lab_main,
}


@dataclass(frozen=True)
class Case:
    cli: str
    argv: str
    code: int
    needle: str
    """Words the answer must contain: the thing named, or what to do."""
    env: dict[str, str] = field(default_factory=dict)
    may_change: tuple[str, ...] = ()
    """Files the command may legitimately write (a failed sync records its attempt)."""


def _cases() -> dict[str, Case]:
    secret = {"PAYG_MM_SECRET": "s3cret"}
    m, s, a, f = "meter-sim", "server-stub", "agent-client", "field-lab"
    return {
        # meter-sim: device options, state files, recordings, serve, replay, tap
        "meter bad key": Case(m, "session --key zz", 2, "--key"),
        "meter short key": Case(m, "session --key 00", 2, "16 bytes"),
        "meter unknown protocol": Case(m, "session --protocol foo", 2, "--protocol"),
        "meter divider not a number": Case(m, "session --time-divider x", 2, "--time-divider"),
        "meter divider out of range": Case(
            m, "session --protocol openpaygo --time-divider 0", 2, "--time-divider"
        ),
        "meter payg id not one word": Case(m, "serve --stdio --payg-id 12=34", 2, "--payg-id"),
        "meter payg id too long": Case(m, "serve --stdio --payg-id " + "9" * 33, 2, "--payg-id"),
        "meter negative count": Case(m, "serve --stdio --count -1", 2, "--count"),
        "meter starting code too big": Case(
            m, "serve --stdio --starting-code 1000000000", 2, "--starting-code"
        ),
        "meter replay bad baud": Case(m, "replay trace.jsonl --baud 0", 2, "--baud"),
        "meter replay bad parity": Case(m, "replay trace.jsonl --parity sometimes", 2, "--parity"),
        "meter replay negative key gap": Case(m, "replay trace.jsonl --key-gap -1", 2, "--key-gap"),
        "meter tap bad stop bits": Case(
            m, "tap --jig j --device d --record t.jsonl --stopbits 3", 2, "--stopbits"
        ),
        "meter state not an image": Case(m, "session --state notes.txt", 2, "not a meter image"),
        "meter state corrupt": Case(m, "session --state corrupt.img", 2, "--fresh"),
        "meter state other kind": Case(
            m, "session --protocol openpaygo --state nexus.img", 2, "kind nexus-full"
        ),
        "meter state other key": Case(
            m, "session --key " + "00" * 16 + " --state nexus.img", 2, "another device key"
        ),
        "meter state old format": Case(m, "session --state format1.img", 2, "format-1"),
        "meter state in missing folder": Case(m, "session --state nodir/x.img", 2, "create it"),
        "meter state is a folder": Case(m, "session --state sub", 2, "is a directory"),
        "meter reset without state": Case(m, "session --reset-state", 2, "--state FILE"),
        "meter record in missing folder": Case(
            m, "session --record nodir/t.jsonl", 2, "--record nodir/t.jsonl"
        ),
        "meter record over a text file": Case(m, "session --record notes.txt", 2, "not a trace"),
        "meter record into a folder": Case(m, "session --record sub", 2, "is a directory"),
        "meter tap record over a text file": Case(
            m, "tap --jig nodir/jig --device nodir/dev --record notes.txt", 2, "not a trace"
        ),
        "meter unknown flag": Case(m, "--bogus", 2, "--bogus"),
        "meter serve without where": Case(m, "serve", 2, "--tcp"),
        "meter serve port out of range": Case(m, "serve --tcp 127.0.0.1:99999", 2, "HOST:PORT"),
        "meter serve no port": Case(m, "serve --tcp localhost", 2, "HOST:PORT"),
        "meter serve busy port": Case(
            m, "serve --tcp 127.0.0.1:{busy} --state new.img", 1, "already in use"
        ),
        "meter replay missing trace": Case(m, "replay nope.jsonl", 2, "nope.jsonl"),
        "meter replay not a trace": Case(m, "replay notes.txt", 2, "notes.txt"),
        "meter replay no header": Case(m, "replay headless.jsonl", 2, "header"),
        "meter replay negative speed": Case(m, "replay trace.jsonl --speed -1", 2, "--speed"),
        "meter replay zero timeouts": Case(
            m, "replay trace.jsonl --max-timeouts 0", 2, "--max-timeouts"
        ),
        "meter replay junit in missing folder": Case(
            m, "replay trace.jsonl --junit nodir/j.xml", 2, "--junit"
        ),
        "meter replay unreachable target": Case(
            m, "replay trace.jsonl --target tcp://127.0.0.1:{closed}", 3, "127.0.0.1:{closed}"
        ),
        "meter replay missing device file": Case(
            m, "replay trace.jsonl --device nope.json", 2, "nope.json"
        ),
        "meter tap missing ports": Case(
            m, "tap --jig nodir/jig --device nodir/dev --record t.jsonl", 3, "nodir/dev"
        ),
        # server-stub: ports, databases, CSVs, numbers, the operator simulator
        "stub port out of range": Case(s, "--db p.db serve --port 99999", 2, "--port"),
        "stub no workers": Case(s, "--db p.db serve --workers 0", 2, "--workers"),
        "stub workers not a number": Case(s, "--db p.db serve --workers two", 2, "--workers"),
        "stub negative port": Case(s, "--db p.db serve --port -1", 2, "--port"),
        "stub port not a number": Case(s, "--db p.db serve --port abc", 2, "--port"),
        "stub busy port": Case(s, "--db p.db serve --port {busy}", 1, "already in use"),
        "stub db in missing folder": Case(s, "--db nodir/x.db serve", 2, "create it"),
        "stub db is a folder": Case(s, "--db sub serve", 2, "is a directory"),
        "stub db not a database": Case(s, "--db notes.txt serve", 2, "not a SQLite database"),
        "stub cert in missing folder": Case(
            s, "--db p.db serve --tls --cert-out nodir/c.pem", 2, "--cert-out"
        ),
        "stub missing csv": Case(s, "import-devices nope.csv", 2, "nope.csv"),
        "stub csv not a csv": Case(s, "--db p.db import-devices notes.txt", 2, "notes.txt"),
        "stub csv is a folder": Case(s, "--db p.db import-devices sub", 2, "sub"),
        "stub csv binary": Case(s, "--db p.db import-devices binary.bin", 2, "not a text file"),
        "stub csv for unknown agent": Case(
            s, "--db p.db import-devices devices.csv --agent nobody", 2, "nobody"
        ),
        "stub negative price": Case(s, "--db p.db add-plan daily -3", 2, "price"),
        "stub price not a number": Case(s, "--db p.db add-plan daily x", 2, "price_per_day"),
        "stub negative devices": Case(s, "--db p.db add-agent bob --devices -2", 2, "--devices"),
        "stub unknown format": Case(s, "--db p.db add-agent bob --format foo", 2, "--format"),
        "stub serial zero": Case(
            s, "--db p.db add-agent bob --first-serial 0", 2, "--first-serial"
        ),
        "stub serials past the last": Case(
            s, "--db p.db add-agent bob --first-serial 4294967295 --devices 2", 2, "--first-serial"
        ),
        "stub agent twice": Case(s, "--db server.db add-agent ama", 2, "already exists"),
        "stub weak code": Case(s, "--db p.db add-agent bob --code secret", 2, "too weak"),
        "stub agent of nobody": Case(
            s, "--db p.db add-agent bob --distributor nobody", 2, "add-distributor"
        ),
        "stub plan of nobody": Case(
            s, "--db p.db add-plan daily 5 --distributor nobody", 2, "add-distributor"
        ),
        "stub distributor twice": Case(
            s, "--db server.db add-distributor default", 2, "issue-token"
        ),
        "stub token for nobody": Case(s, "--db server.db issue-token nobody", 2, "nobody"),
        "stub revoke unknown token": Case(
            s, "--db server.db revoke-token payg_nope", 2, "no live token"
        ),
        "stub revoke without db": Case(s, "--db new.db revoke-token x", 2, "does not exist"),
        "stub export from nothing": Case(s, "--db new.db export-devices", 2, "does not exist"),
        "stub check-reports unreachable": Case(
            s, "check-reports --url http://127.0.0.1:{closed} --token t", 1, "unreachable"
        ),
        "stub check-reports not a url": Case(
            s, "check-reports --url notaurl --token t", 2, "--url"
        ),
        "stub check-reports port out of range": Case(
            s, "check-reports --url http://127.0.0.1:99999 --token t", 2, "--url"
        ),
        "stub check-reports without url": Case(s, "check-reports --token t", 2, "--url"),
        "stub check-reports without token": Case(s, "check-reports --url {url}", 2, "--token"),
        "stub check-reports negative budget": Case(
            s, "check-reports --url {url} --token t --budget-ms -5", 2, "--budget-ms"
        ),
        "stub check-reports budget not a number": Case(
            s, "check-reports --url {url} --token t --budget-ms soon", 2, "--budget-ms"
        ),
        "stub no command": Case(s, "", 2, "command"),
        # agent-client: handset files, URLs, certificates, refusals, numbers
        "handset missing db": Case(a, "status", 2, "provision a handset first"),
        "handset db in missing folder": Case(a, "--db nodir/h.db status", 2, "nodir/h.db"),
        "handset db is a folder": Case(a, "--db sub status", 2, "is a directory"),
        "handset db not a database": Case(a, "--db notes.txt status", 2, "not a handset database"),
        "handset db is the platform's": Case(
            a, "--db server.db queue", 2, "not a handset database"
        ),
        "handset provision unreachable": Case(
            a, "provision http://127.0.0.1:{closed} --agent 1 --code x", 1, "unreachable"
        ),
        "handset provision not a url": Case(
            a, "provision notaurl --agent 1 --code x", 2, "notaurl"
        ),
        "handset provision port out of range": Case(
            a, "provision http://127.0.0.1:99999 --agent 1 --code x", 2, "99999"
        ),
        "handset provision wrong code": Case(
            a, "provision {url} --agent ama --code wrong", 2, "name or the id"
        ),
        "handset provision unknown id": Case(
            a, "provision {url} --agent 99 --code code-ama-7f3a9c", 2, "name or the id"
        ),
        "handset provision into the platform db": Case(
            a, "--db server.db provision {url} --agent 1 --code code-ama-7f3a9c", 2, "server.db"
        ),
        "handset missing cafile": Case(a, "--cafile nope.pem status", 2, "--cafile"),
        "handset cafile not a certificate": Case(
            a,
            "--cafile notes.txt provision https://127.0.0.1:{closed} --agent 1 --code x",
            2,
            "--cafile",
        ),
        "handset customer id not a number": Case(
            a, "sale --customer x --device 1 --plan 1 --down 1", 2, "--customer"
        ),
        "handset device not a number": Case(a, "keycodes abc", 2, "device"),
        "handset payment without amount": Case(a, "payment --account 1", 2, "--amount"),
        "handset wait not a number": Case(a, "sync --max-wait x", 2, "--max-wait"),
        "handset negative amount": Case(
            a, "--db ama.db payment --account 1 --amount -5", 2, "amount"
        ),
        "handset unknown customer": Case(
            a, "--db ama.db sale --customer 999 --device 1 --plan 1 --down 5", 2, "999"
        ),
        "handset provision twice": Case(
            a, "--db ama.db provision {url} --agent ama --code code-ama-7f3a9c", 2, "already"
        ),
        "handset sync unreachable": Case(
            a, "--db gone.db sync", 1, "127.0.0.1", may_change=("gone.db",)
        ),
        "handset no command": Case(a, "", 2, "command"),
        # field-lab: scenarios, overrides, targets and fixtures, outputs, seeds, links
        "lab pay without secret": Case(f, "mm-pay 10000001 100 +2330", 2, "PAYG_MM_SECRET"),
        "lab pay unreachable": Case(
            f,
            "mm-pay 10000001 100 +2330 --url http://127.0.0.1:{closed}/cb",
            1,
            "unreachable",
            secret,
        ),
        "lab pay bad url": Case(f, "mm-pay 10000001 100 +2330 --url notaurl", 2, "--url", secret),
        "lab pay url port out of range": Case(
            f, "mm-pay 1 100 +2330 --url http://127.0.0.1:99999/cb", 2, "--url", secret
        ),
        "lab pay negative amount": Case(f, "mm-pay 10000001 -2 +2330", 2, "amount", secret),
        "lab pay duplicate rate": Case(
            f, "mm-pay 10000001 1 +2330 --duplicate-rate 7", 2, "duplicate_rate", secret
        ),
        "lab missing scenario": Case(f, "run nope.toml", 2, "nope.toml"),
        "lab scenario not toml": Case(f, "run notes.txt", 2, "TOML"),
        "lab negative agents": Case(f, "run --agents -1", 2, "fleet.agents"),
        "lab zero duration": Case(f, "run --duration 0", 2, "duration_s"),
        "lab agents not a number": Case(f, "run --agents many", 2, "--agents"),
        "lab target without fixture": Case(f, "run --target {url}", 2, "--fixture"),
        "lab fixture without target": Case(f, "run --fixture fixture.json", 2, "--target"),
        "lab missing fixture": Case(f, "run --target {url} --fixture nope.json", 2, "nope.json"),
        "lab fixture not json": Case(f, "run --target {url} --fixture notes.txt", 2, "fixture"),
        "lab out is a file": Case(f, "run --out notes.txt", 2, "--out notes.txt"),
        "lab unknown behaviour": Case(f, "run --behaviour nope:Agent", 2, "nope"),
        "lab unknown adapter": Case(f, "run --adapter nope", 2, "nope"),
        "lab seed into a text file": Case(
            f, "seed --db notes.txt --fixture f.json", 2, "not a SQLite database"
        ),
        "lab seed into a folder": Case(f, "seed --db sub --fixture f.json", 2, "is a directory"),
        "lab seed fixture in missing folder": Case(
            f, "seed --db new.db --fixture nodir/f.json", 2, "create it"
        ),
        "lab seed twice": Case(
            f, "seed --db lab.db --fixture again.json --agents 2 --devices 4", 2, "seed a new"
        ),
        "lab seed zero agents": Case(
            f, "seed --db new.db --fixture f.json --agents 0", 2, "agents"
        ),
        "lab link unknown profile": Case(
            f, "link --profile nope --listen 127.0.0.1:0 --upstream 127.0.0.1:1", 2, "nope"
        ),
        "lab link port out of range": Case(
            f, "link --profile 3g --listen 127.0.0.1:99999 --upstream 127.0.0.1:1", 2, "--listen"
        ),
        "lab link missing profiles": Case(
            f,
            "link --profile 3g --profiles nope.toml --listen 127.0.0.1:0 --upstream 127.0.0.1:1",
            2,
            "nope.toml",
        ),
        "lab link busy port": Case(
            f, "link --profile 3g --listen 127.0.0.1:{busy} --upstream 127.0.0.1:1", 1, "{busy}"
        ),
        "lab link negative duration": Case(
            f,
            "link --profile 3g --listen 127.0.0.1:0 --upstream 127.0.0.1:1 --duration -1",
            2,
            "--duration",
        ),
        "lab no command": Case(f, "", 2, "COMMAND"),
        "conformance not a url": Case(f, "conformance ftp://example", 2, "http(s)://HOST"),
        "conformance bad port": Case(f, "conformance http://127.0.0.1:99999", 2, "URL"),
        "conformance zero timeout": Case(f, "conformance {url} --timeout 0", 2, "--timeout"),
        "conformance unreachable": Case(
            f, "conformance http://127.0.0.1:{closed}", 1, "{closed} is unreachable"
        ),
        "conformance wrong code": Case(
            f, "conformance {url} --agent ama --code nope", 2, "--agent 'ama' --code"
        ),
        "simulate zero days": Case(f, "simulate --days 0", 2, "--days"),
        "simulate missing scenario": Case(f, "simulate nope.toml --days 1", 2, "nope.toml"),
        "simulate fewer devices than agents": Case(
            f, "simulate --days 1 --agents 5 --devices 2", 2, "fleet.devices (2)"
        ),
        "simulate zero shards": Case(f, "simulate --days 1 --shards 0", 2, "--shards"),
        "simulate more shards than agents": Case(
            f, "simulate --days 1 --agents 2 --devices 4 --shards 3", 2, "--shards 3"
        ),
    }


CASES = _cases()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class World:
    template: Path
    url: str
    busy: int
    closed: int

    def fill(self, text: str) -> str:
        return text.format(url=self.url, busy=self.busy, closed=self.closed)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("matrix")
    template = root / "workspace"
    template.mkdir()
    (template / "sub").mkdir()
    (template / "notes.txt").write_text("someone's notes, not a meter image\n" * 3)
    (template / "binary.bin").write_bytes(bytes(range(256)))
    (template / "headless.jsonl").write_text('{"type": "key", "t": 0}\n')
    shutil.copy(GOLDEN, template / "trace.jsonl")
    storage = MemoryStorage()
    Meter.nexus(KEY, storage=storage)
    (template / "nexus.img").write_bytes(storage.read())
    corrupt = bytearray(storage.read())
    corrupt[20] ^= 0xFF
    (template / "corrupt.img").write_bytes(bytes(corrupt))
    head = b"PGNV\x01\x01" + (48).to_bytes(2, "little") + (7).to_bytes(4, "little")
    legacy = head + bytes(48)
    (template / "format1.img").write_bytes(legacy + crc16(legacy).to_bytes(2, "little"))
    devices = make_devices(30_000_001, 2, KeycodeFormat.NEXUS_FULL, random.Random(1))
    (template / "devices.csv").write_text(write_devices_csv(devices))
    seed_platform(template / "server.db")
    fixture = seed(template / "lab.db", Stocking.of(DEFAULT.with_overrides(agents=2, devices=4)))
    (template / "fixture.json").write_text(fixture.to_json())

    served = root / "served.db"
    seed_platform(served)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_app(served), access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}"
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    agent_client_main(
        [
            "--db",
            str(template / "ama.db"),
            "provision",
            url,
            "--agent",
            "ama",
            "--code",
            "code-ama-7f3a9c",
        ]
    )
    gone = web.AppRunner(create_app(served), access_log=None)  # a platform that goes away

    def on_loop(coro: Coroutine[object, object, object]) -> None:
        asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=10)

    on_loop(gone.setup())
    on_loop(web.TCPSite(gone, "127.0.0.1", 0).start())
    gone_url = f"http://127.0.0.1:{gone.addresses[0][1]}"
    agent_client_main(
        [
            "--db",
            str(template / "gone.db"),
            "provision",
            gone_url,
            "--agent",
            "kofi",
            "--code",
            "code-kofi-7f3a9c",
        ]
    )
    on_loop(gone.cleanup())
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        yield World(template, url, busy.getsockname()[1], _free_port())
    finally:
        busy.close()
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file and folder under `root` with its bytes: what a case must leave as it was."""
    return {
        str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def workspace(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    here = tmp_path / "ws"
    shutil.copytree(world.template, here)
    monkeypatch.chdir(here)
    for name in ("PAYG_MM_SECRET", "PAYG_AUDIT_TOKEN", "PAYG_REPORT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return here


def answer_line(out: str, err: str) -> str:
    """The one line a user reads: the last line written (argparse prints usage above it)."""
    lines = [line for line in (err or out).splitlines() if line.strip()]
    assert lines, "the command said nothing"
    if not any(line.startswith("usage:") for line in lines):
        assert len(lines) == 1, f"more than one line: {lines}"
    return lines[-1]


def test_the_matrix_covers_every_cli_with_at_least_sixty_cases() -> None:
    assert len(CASES) + len(SUBPROCESS_CASES) >= 60
    assert {c.cli for c in CASES.values()} == set(MAINS)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_one_clear_line_and_changes_nothing(
    name: str,
    world: World,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    case = CASES[name]
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    before = snapshot(workspace)
    argv = world.fill(case.argv).split()
    try:
        code = MAINS[case.cli](argv)
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    line = answer_line(out, err)
    assert world.fill(case.needle) in line
    assert code == case.code, line
    after = snapshot(workspace)
    for name in case.may_change:
        after[name] = before[name]
    assert after == before


@dataclass(frozen=True)
class Run:
    argv: str
    code: int
    needle: str
    interrupt_when: str | None = None
    """Send SIGINT once stderr shows this (the run has started), then read the answer."""


SUBPROCESS_CASES = {
    # the entry points themselves, for the traceback the issue quoted
    "stub db in missing folder": Run("server-stub --db nodir/x.db serve", 2, "create it"),
    "handset db in missing folder": Run("agent-client --db nodir/h.db status", 2, "nodir/h.db"),
    "meter state not an image": Run("meter-sim session --state notes.txt", 2, "not a meter image"),
    "stub missing csv": Run("server-stub import-devices /nope.csv", 2, "/nope.csv"),
    # field-lab run --target: platform down, fixture not the platform's; then Ctrl-C
    "lab target unreachable": Run(
        "field-lab run --target http://127.0.0.1:{closed} --fixture fixture.json --agents 2"
        " --devices 4 --duration 5 --quiet --out out",
        2,
        "unreachable",
    ),
    "lab fixture of another platform": Run(
        "field-lab run --target {url} --fixture fixture.json --agents 2 --devices 4"
        " --duration 5 --quiet --out out",
        2,
        "field-lab seed",
    ),
    "lab interrupted": Run(
        "field-lab run --agents 2 --devices 4 --duration 30 --out out", 130, "interrupted", "t="
    ),
}


@pytest.mark.parametrize("name", list(SUBPROCESS_CASES))
def test_the_entry_points_answer_without_a_traceback(
    name: str, world: World, workspace: Path
) -> None:
    case = SUBPROCESS_CASES[name]
    before = snapshot(workspace)
    words = world.fill(case.argv).split()
    secrets = ("PAYG_MM_SECRET", "PAYG_AUDIT_TOKEN", "PAYG_REPORT_TOKEN")
    env = {k: v for k, v in os.environ.items() if k not in secrets}
    proc = subprocess.Popen(
        [str(BIN / words[0]), *words[1:]],
        cwd=workspace,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = ""
    if case.interrupt_when is not None:
        assert proc.stderr is not None
        while case.interrupt_when not in seen:
            line = proc.stderr.readline()
            assert line, "the run ended before it could be interrupted"
            seen += line
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    err = seen + err
    assert "Traceback" not in out + err
    answers = [line for line in (err or out).splitlines() if case.needle in line]
    if case.interrupt_when is not None:
        answers = answers[-1:]  # the progress lines come before the answer
    assert len(answers) == 1, err or out
    assert proc.returncode == case.code, err or out
    assert snapshot(workspace) == before


@pytest.mark.parametrize("phase", ["setup", "field", "settle", "end of day"])
def test_the_progress_view_shows_the_phase(phase: str) -> None:
    from types import SimpleNamespace

    from rich.console import Console

    from field_lab.lab.command import Progress
    from field_lab.lab.stats import RunStats

    console = Console(record=True, force_terminal=True, width=200)
    lab = SimpleNamespace(phase=phase, series=[], stats=RunStats())
    Progress(console, quiet=False)(lab)  # type: ignore[arg-type]
    assert console.export_text().startswith(f"[{phase}] t=")
