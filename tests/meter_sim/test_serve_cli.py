"""`meter-sim serve` as a bench: one device for every connection, recordings of several
connections that replay identically, a fresh start on demand, and the serial options."""

from __future__ import annotations

import io
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from meter_sim.cli import main
from meter_sim.trace import load

from .helpers import KEY, full_add
from .trace.devices import cli_process


class Jig:
    """One TCP connection to `serve`, spoken to a line at a time (bounded waits)."""

    def __init__(self, port: int, ending: bytes = b"\n") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.ending = ending
        self.held = b""

    def ask(self, line: str) -> str:
        self.sock.sendall(line.encode() + self.ending)
        deadline = time.monotonic() + 5
        while b"\n" not in self.held and time.monotonic() < deadline:
            self.held += self.sock.recv(4096)
        answer, _, self.held = self.held.partition(b"\n")
        return answer.decode()

    def close(self) -> None:
        self.sock.close()


def _port(announced: str) -> int:
    return int(announced.strip().rpartition(":")[2])


def test_a_two_connection_recording_replays_identically(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = tmp_path / "two.jsonl"
    code = full_add(1, 24)
    args = ["serve", "--tcp", "127.0.0.1:0", "--record", str(record), "--include-secret"]
    with cli_process(*args) as (_proc, line):
        a = Jig(_port(line))
        assert a.ask(f"CODE {code}") == "OK CODE applied credit=86400 state=enabled"
        assert a.ask("WAIT 100") == "OK TIME 100"
        b = Jig(_port(line), ending=b"\r")  # a terminal whose Enter sends CR
        assert b.ask("STATUS").startswith("OK STATUS time=100 credit=86300 ")
        assert b.ask("KEY *") == "OK KEY accepted"
        assert a.ask("WAIT 20") == "OK TIME 120"
        assert b.ask(f"CODE {code}") == "OK CODE duplicate credit=86280 state=enabled"
        assert a.ask("POWER off").startswith("ERR bad-argument")
        a.close()
        b.close()
    trace = load(record)
    kinds = [e.kind for e in trace.events]
    assert kinds.count("connect") == 2
    assert kinds.index("connect", 1) == 3  # B's start, after A's first two requests
    assert main(["replay", str(record), "--fast"]) == 0, capsys.readouterr()
    # and against a served device: a new connection at each mark, then RESET for a rerun
    with cli_process("serve", "--tcp", "127.0.0.1:0", "--key", KEY.hex()) as (_proc, line):
        target = f"tcp://127.0.0.1:{_port(line)}"
        for _ in range(2):
            assert main(["replay", str(record), "--fast", "--target", target]) == 0, (
                capsys.readouterr()
            )
            reset = Jig(_port(line))
            assert reset.ask("RESET") == "OK RESET time=0"
            reset.close()


@dataclass
class Served:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def serve(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Served]:
    """`meter-sim serve --stdio ARGS` in this process, with `stdin` as its input."""

    def run(*args: str, stdin: str) -> Served:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
        code = main(["serve", "--stdio", *args])
        out, err = capsys.readouterr()
        return Served(code, out, err)

    return run


def test_fresh_starts_a_factory_meter_whatever_the_state_file_holds(
    tmp_path: Path, serve: Callable[..., Served]
) -> None:
    state = str(tmp_path / "meter.img")
    code = f"CODE {full_add(1, 24)}\n"
    assert "applied" in serve("--state", state, stdin=code).stdout
    assert "duplicate" in serve("--state", state, stdin=code).stdout
    assert "applied" in serve("--state", state, "--fresh", stdin=code).stdout
    Path(state).write_bytes(b"\x01" * 200)  # corrupt: refused in one line, left untouched
    refused = serve("--state", state, stdin=code)
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "--fresh" in refused.stderr
    assert Path(state).read_bytes() == b"\x01" * 200
    assert "applied" in serve("--state", state, "--fresh", stdin=code).stdout


def test_a_payg_id_that_would_break_an_answer_is_refused(
    capsys: pytest.CaptureFixture[str], serve: Callable[..., Served]
) -> None:
    for bad in ("12 34", "id=5", "x" * 33, "-", "caf\u00e9"):
        with pytest.raises(SystemExit) as exc:
            main(["serve", "--stdio", "--payg-id", bad])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "--payg-id" in err
        assert "Traceback" not in err
    shown = serve("--payg-id", "KE-0042.a", stdin="CODE *6347765#\n")
    assert shown.stdout.strip().endswith("id=KE-0042.a")


def test_replay_and_tap_help_show_the_serial_options(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("replay", "tap"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        for option in ("--baud", "--parity", "--bytesize", "--stopbits", "--rtscts", "--xonxoff"):
            assert option in out, (command, option)
    with pytest.raises(SystemExit):
        main(["replay", "--help"])
    assert "--key-gap" in capsys.readouterr().out
