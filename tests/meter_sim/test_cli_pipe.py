"""A reader that stops early ends the CLI quietly: no traceback on stderr."""

from __future__ import annotations

import os
import subprocess
import sys


def test_demo_into_a_closed_pipe_prints_no_traceback() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line, as `| head -0` leaves it
    try:
        done = subprocess.run(
            [sys.executable, "-m", "meter_sim.cli", "demo"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert b"Traceback" not in done.stderr, done.stderr.decode()
    assert b"BrokenPipe" not in done.stderr
    assert done.returncode == 141
