from __future__ import annotations

import subprocess
import sys

from meter_sim.demo import run_demo

from .helpers import full_add


def test_demo_shows_applied_duplicate_and_invalid() -> None:
    lines: list[str] = []
    assert run_demo(lines.append) == 0
    text = "\n".join(lines)
    for word in ("applied", "duplicate", "invalid", "unlocked"):
        assert word in text
    assert "Nexus small" in text
    assert "OpenPAYGO" in text


def test_interactive_session() -> None:
    keys = full_add(1, 24)
    done = subprocess.run(
        [sys.executable, "-m", "meter_sim.cli", "--protocol", "nexus-full"],
        input=f"{keys}\n:wait 3600\n:status\n{keys}\n:quit\n".encode(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    out = done.stdout.decode()
    assert "applied credit=86400 state=enabled" in out
    assert "credit=82800 s" in out
    assert "duplicate" in out


def test_bad_key_argument_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "meter_sim.cli", "serve", "--stdio", "--key", "zz"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert b"32 hex digits" in done.stderr
