"""Replay throughput, as fast as possible: events per second per target.

Prints one JSON object per line. The trace is recorded here through `TraceRecorder` (Nexus
full, rate limit off as on a bench): whole codes, codes typed key by key, duplicates, clock
advances and status reads. `core` replays against the recorded answers themselves (no meter:
the replayer's own cost); `sim` runs the simulator in-process; `tcp` and `pty` run
`meter-sim serve` in a subprocess, so they include the shell, the kernel and a process hop.

`tap_roundtrip` is a jig's request to its whole answer through the serial tap (`run_tap`, as
`meter-sim tap` runs it) with the device on pyserial's `socket://` or on a pty: milliseconds,
median and 95th percentile of ROUNDS. Before serial reads drained what was waiting,
`socket://` took about a second a request (it reports at most one byte waiting, so an answer
came two bytes a tap turn, 20 ms apart): `socket_roundtrip_ms` 1032.7 then, 4.0 after.
"""

from __future__ import annotations

import io
import json
import os
import select
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from nexus_keycode.protocols.full import FullMessage

from meter_sim.serve import open_pty
from meter_sim.trace import (
    DeviceConfig,
    Header,
    Replayer,
    Status,
    Timing,
    TraceRecorder,
    TraceWriter,
    loads,
    open_target,
    replay,
)
from meter_sim.trace.format import Event, Trace
from meter_sim.trace.replies import format_reply
from meter_sim.trace.tap import run_tap
from meter_sim.trace.targets import SerialLink

KEY = bytes.fromhex("deadbeef1020304004030201feebdaed")
CODES = 150
ROUNDS = 200
"""Requests through the tap per medium."""
WAIT = 5.0


def make_trace() -> Trace:
    config = DeviceConfig("nexus-full", KEY, rate_limit=False)
    out = io.StringIO()
    writer = TraceWriter(out, Header(config, timebase="device"), include_secret=True)
    meter = TraceRecorder(config.build(), writer.write)
    now = 0.0
    for i in range(1, CODES + 1):
        code = str(FullMessage.add_credit(i, 1, KEY).to_keycode())
        now += 60
        if i % 3 == 0:
            for key in code.replace(" ", ""):
                meter.press_key(key, now)
        else:
            meter.enter_keycode(code, now)
        meter.enter_keycode(code, now)  # duplicate
        meter.status(now)
    return loads(out.getvalue())


def core_only(trace: Trace) -> float:
    """The replayer fed the recorded answers: what replay costs without a device."""
    answers = [b"OK HELLO bench line-protocol=1 protocol=nexus-full\n"] + [
        (format_reply(e.reply) + "\n").encode() for e in trace.events if e.reply is not None
    ]
    start = time.perf_counter()
    core = Replayer(trace)
    for answer in answers:
        if core.next_send() is None:
            break
        core.receive(answer)
    core.next_send()
    elapsed = time.perf_counter() - start
    if not core.finished or core.result.count(Status.MATCH) != len(trace.events):
        raise SystemExit("benchmark broke: the core did not match its own answers")
    return len(trace.events) / elapsed


@contextmanager
def served(*how: str) -> Iterator[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meter_sim.cli",
            "serve",
            *how,
            "--key",
            KEY.hex(),
            "--no-rate-limit",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        if not select.select([proc.stdout], [], [], 30)[0]:
            raise SystemExit("benchmark broke: meter-sim serve did not start")
        yield proc.stdout.readline().removeprefix("serving on ").strip()
    finally:
        proc.terminate()
        proc.wait(10)


def run(trace: Trace, target: str, label: str) -> None:
    timing = Timing()
    with open_target(target, trace.header.device) as link:
        result = replay(trace, link, timeout=10, timing=timing)
    if result.exit_code != 0:
        raise SystemExit(f"benchmark broke: {label} replay exited {result.exit_code}")
    print(
        json.dumps(
            {
                "bench": "replay",
                "target": label,
                "events": len(trace.events),
                "events_per_s": round(len(trace.events) / timing.elapsed),
                "elapsed_s": round(timing.elapsed, 4),
            }
        ),
        flush=True,
    )


def exchange(fd: int) -> float:
    """Write one request as the jig; seconds until its whole answer line is back."""
    start = time.perf_counter()
    os.write(fd, b"STATUS\n")
    answer = b""
    deadline = time.monotonic() + WAIT
    while not answer.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise SystemExit("benchmark broke: no answer through the tap")
        if select.select([fd], [], [], left)[0]:
            answer += os.read(fd, 4096)
    if not answer.startswith(b"OK STATUS"):
        raise SystemExit(f"benchmark broke: {answer!r}")
    return time.perf_counter() - start


def tap_roundtrip(device_url: str, label: str, rounds: int = ROUNDS) -> None:
    jig_fd, jig_path = open_pty()
    events: list[Event] = []
    stop = threading.Event()
    device, jig = SerialLink(device_url), SerialLink(jig_path)
    thread = threading.Thread(
        target=run_tap, args=(jig, device, events.append), kwargs={"stop": stop.is_set}
    )
    thread.start()
    try:
        exchange(jig_fd)  # warm up
        times = sorted(exchange(jig_fd) * 1000 for _ in range(rounds))
    finally:
        stop.set()
        thread.join(10)
        device.close()
        jig.close()
        os.close(jig_fd)
    if len(events) != rounds + 1:
        raise SystemExit(f"benchmark broke: the tap recorded {len(events)} events")
    print(
        json.dumps(
            {
                "bench": "tap_roundtrip",
                "device": label,
                "rounds": rounds,
                f"{label}_roundtrip_ms": round(statistics.median(times), 3),
                f"{label}_roundtrip_p95_ms": round(times[int(0.95 * (rounds - 1))], 3),
            }
        ),
        flush=True,
    )


def main() -> None:
    trace = make_trace()
    kinds = {k: sum(1 for e in trace.events if e.kind == k) for k in ("code", "key", "status")}
    print(json.dumps({"bench": "replay", "trace_events": len(trace.events), **kinds}))
    rate = max(core_only(trace) for _ in range(3))
    print(json.dumps({"bench": "replay", "target": "core", "events_per_s": round(rate)}))
    run(trace, "sim", "sim")
    with served("--tcp", "127.0.0.1:0") as where:
        run(trace, f"tcp://{where}", "tcp")
    with served("--pty") as path:
        run(trace, path, "pty")
    with served("--tcp", "127.0.0.1:0") as where:
        tap_roundtrip(f"socket://{where}", "socket")
    with served("--pty") as path:
        tap_roundtrip(path, "pty")


if __name__ == "__main__":
    main()
