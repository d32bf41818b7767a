"""The serial tap between a jig and a device, on two real pseudo-terminal pairs."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from meter_sim import Meter
from meter_sim.line_protocol import LineSession
from meter_sim.serve import open_pty
from meter_sim.trace import (
    Event,
    SerialLink,
    TargetTimeout,
    Trace,
    load,
    load_device,
    open_target,
    replay,
)
from meter_sim.trace.tap import header_from_hello, identify, run_tap

from ..helpers import KEY, full_add
from .devices import Misbehaving, cli_process, pty_device


def exchange(fd: int, line: str, timeout: float = 5.0) -> str:
    """Be the jig: write a request, read one answer line (bounded)."""
    os.write(fd, line.encode() + b"\n")
    answer = b""
    deadline = time.monotonic() + timeout
    while not answer.endswith(b"\n") and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            answer += os.read(fd, 4096)
    return answer.decode().rstrip("\n")


JIG_SCRIPT = [
    f"CODE {full_add(1, 24)}",
    "WAIT 3600",
    f"CODE {full_add(1, 24)}",
    "KEY *",
    "STATUS",
    "POWER",
    "FLY",
]


def test_tap_records_both_directions_and_the_trace_replays(tmp_path: Path) -> None:
    jig_fd, jig_path = open_pty()
    events: list[Event] = []
    stop = threading.Event()
    with pty_device(LineSession(Meter.nexus(KEY))) as device_path:
        device, jig = SerialLink(device_path), SerialLink(jig_path)
        header = header_from_hello(identify(device), origin=None)
        assert header.device.protocol == "nexus-full"
        assert header.firmware == "meter-sim line-protocol=1"
        thread = threading.Thread(
            target=run_tap, args=(jig, device, events.append), kwargs={"stop": stop.is_set}
        )
        thread.start()
        try:
            answers = [exchange(jig_fd, line) for line in JIG_SCRIPT]
        finally:
            stop.set()
            thread.join(5)
            device.close()
            jig.close()
            os.close(jig_fd)
    assert answers[0] == "OK CODE applied credit=86400 state=enabled"
    assert answers[2] == "OK CODE duplicate credit=82800 state=enabled"
    assert answers[-1].startswith("ERR unknown-command")
    assert [e.kind for e in events] == ["code", "advance", "code", "key", "status", "power", "line"]
    assert all(e.reply is not None for e in events)
    assert [e.t for e in events] == sorted(e.t for e in events)
    trace = Trace(header, tuple(events))
    device_file = tmp_path / "device.json"
    device_file.write_text(f'{{"protocol": "nexus-full", "key": "{KEY.hex()}"}}')
    config = trace.header.device.with_key_from(load_device(device_file))
    result = replay(trace, open_target("sim", config))
    assert result.exit_code == 0


def test_identify_gives_up_on_a_silent_device() -> None:
    with pty_device(Misbehaving(Meter.nexus(KEY), {0: "silent"})) as path:
        link = SerialLink(path)
        try:
            with pytest.raises(TargetTimeout, match="no answer to HELLO"):
                identify(link, timeout=0.2)
        finally:
            link.close()


def test_tap_command_line(tmp_path: Path) -> None:
    jig_fd, jig_path = open_pty()
    record = tmp_path / "tap.jsonl"
    with pty_device(LineSession(Meter.nexus(KEY))) as device_path:
        args = ["tap", "--jig", jig_path, "--device", device_path, "--record", str(record)]
        try:
            with cli_process(*args, "--duration", "4") as (proc, line):
                assert line.startswith("tapping")
                assert exchange(jig_fd, f"CODE {full_add(1, 2)}") == (
                    "OK CODE applied credit=7200 state=enabled"
                )
                assert exchange(jig_fd, "STATUS").startswith("OK STATUS time=0 credit=7200")
                out, err = proc.communicate(timeout=30)
        finally:
            os.close(jig_fd)
    assert proc.returncode == 0, err
    assert "recorded 2 events" in out
    trace = load(record)
    assert trace.header.recorder == "meter-sim tap"
    assert [e.kind for e in trace.events] == ["code", "status"]
    assert KEY.hex() not in record.read_text()


def test_tap_to_a_missing_port_is_unreachable(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "meter_sim.cli",
            "tap",
            "--jig",
            "/dev/nonexistent-jig",
            "--device",
            "/dev/nonexistent-dev",
            "--record",
            str(tmp_path / "x.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3
    assert "nonexistent" in done.stderr
