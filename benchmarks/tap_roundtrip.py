"""Round trip through `meter-sim tap`: a jig's request to its answer, per device medium.

Prints one JSON object per line. A jig writes `STATUS` on a pseudo-terminal; the tap
(`run_tap`, as `meter-sim tap` runs it) forwards it to `meter-sim serve` in a subprocess, over
pyserial's `socket://` or over a pty, and the answer back. Figures are milliseconds from the
jig's write to the whole answer line, median and 95th percentile of ROUNDS. Before serial
reads drained what was waiting, `socket://` took about a second a request (it reports at most
one byte waiting, so an answer came two bytes a tap turn, 20 ms apart).
"""

from __future__ import annotations

import argparse
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

from meter_sim.serve import open_pty
from meter_sim.trace.format import Event
from meter_sim.trace.tap import run_tap
from meter_sim.trace.targets import SerialLink

ROUNDS = 200
WAIT = 5.0


@contextmanager
def served(*how: str) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "meter_sim.cli", "serve", *how, "--no-rate-limit"],
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


def measure(device_url: str, label: str, rounds: int) -> None:
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"default {ROUNDS}")
    rounds = max(1, parser.parse_args().rounds)
    with served("--tcp", "127.0.0.1:0") as where:
        measure(f"socket://{where}", "socket", rounds)
    with served("--pty") as path:
        measure(path, "pty", rounds)


if __name__ == "__main__":
    main()
