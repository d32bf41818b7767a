"""A lab that cannot have what it needs refuses at once; a lab whose platform dies stops at once."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from field_lab.errors import BudgetError
from field_lab.lab.budget import Budget, ProcessLimits
from field_lab.lab.lab import Lab
from tests.field_lab.test_lab import CLI_SCENARIO, TINY, serving_process


class Fixed:
    """A machine that allows `limit` descriptors and no more."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.asked = 0

    def raise_soft(self) -> int:
        self.asked += 1
        return self.limit


async def test_a_lab_short_of_descriptors_refuses_before_starting(tmp_path: Path) -> None:
    scenario = replace(TINY, fleet=replace(TINY.fleet, agents=400, devices=800))
    limits = Fixed(500)
    lab = Lab(scenario, tmp_path, limits=limits)
    assert lab.budget().needed > 500
    with pytest.raises(BudgetError, match=r"needs \d+ file descriptors .* allows 500 "):
        await lab.run()
    assert limits.asked == 1
    assert not (tmp_path / "server.db").exists()  # nothing was started: no platform, no handset
    assert not (tmp_path / "handset-00000.db").exists()


def test_the_budget_counts_databases_and_sockets() -> None:
    alone = Budget(1000, 1, 100, 64, embedded=False)
    assert alone.needed == Budget(1000, 1, 100, 64, embedded=False).needed
    assert Budget(2000, 1, 100, 64, embedded=False).needed == alone.needed + 1000
    assert Budget(1000, 3, 100, 64, embedded=False).needed == alone.needed + 2000
    assert Budget(1000, 1, 100, 64, embedded=True).needed == alone.needed + 100
    assert ProcessLimits().raise_soft() == resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def test_connections_are_kept_warm_for_as_many_handsets_as_have_a_socket() -> None:
    alone = Budget(1000, 1, 100, 64, embedded=False)
    assert alone.warm(alone.needed) == 0
    assert alone.warm(alone.needed + 250) == 250
    assert alone.warm(alone.needed + 5000) == 1000  # every handset, no more
    embedded = Budget(1000, 1, 100, 64, embedded=True)
    assert embedded.warm(embedded.needed + 250) == 125  # the platform's end is here too
    assert Budget(10_000, 1, 2048, 64, embedded=False).warm(20_000) == 20_000 - 12_305


def test_the_cli_refuses_in_one_line_when_the_machine_cannot_give_the_descriptors(
    tmp_path: Path,
) -> None:
    def small_limit() -> None:  # in the child only: this process keeps its own limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))

    done = subprocess.run(
        [sys.executable, "-m", "field_lab.cli", "run", "--agents", "500", "--quiet"],
        capture_output=True,
        timeout=120,
        check=False,
        preexec_fn=small_limit,
        cwd=tmp_path,
    )
    err = done.stderr.decode()
    assert done.returncode == 2, err[-2000:]
    assert len(err.strip().splitlines()) == 1, err
    assert "file descriptors" in err
    assert "allows 300" in err
    assert not (tmp_path / "results").exists()


def test_a_run_whose_platform_dies_exits_107_within_seconds(tmp_path: Path) -> None:
    scenario = tmp_path / "long.toml"
    scenario.write_text(CLI_SCENARIO.replace("duration_s = 5", "duration_s = 120"))
    env = {**os.environ, "PAYG_AUDIT_TOKEN": "the-operators-token", "PAYG_MM_SECRET": "mm"}
    with serving_process(tmp_path, scenario, "p") as (url, fixture, server):
        run = [sys.executable, "-m", "field_lab.cli", "run", str(scenario)]
        run += ["--target", url, "--fixture", str(fixture)]
        lab = subprocess.Popen(
            [*run, "--out", str(tmp_path / "out")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        lines: list[str] = []
        in_field = threading.Event()

        def read() -> None:
            assert lab.stderr is not None
            for raw in lab.stderr:
                lines.append(raw.decode())
                if "[field]" in lines[-1]:
                    in_field.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert in_field.wait(90), "".join(lines)[-2000:]
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        killed = time.monotonic()
        code = lab.wait(timeout=60)
        took = time.monotonic() - killed
        reader.join(5)
        for pipe in (lab.stdout, lab.stderr):
            assert pipe is not None
            pipe.close()
    assert code == 107, "".join(lines)[-2000:]
    assert took < 20, took  # the watchdog's 3 missed seconds, plus closing the fleet
    errors = [line for line in lines if "[" not in line.split(" ")[0]]
    assert len(errors) == 1, "".join(lines)
    assert "stopped answering" in errors[0]
    assert not (tmp_path / "out" / "summary.json").exists()
