"""`field-lab run --ray` on a local two-node Ray cluster bound to 127.0.0.1 (`make test-ray`):
the shards run as actors on both nodes, and the run acts on the same plan and reaches the same
verdicts as a `--shards` run of the same seed."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import pytest

from field_lab.check.keys import FIGURES
from field_lab.net import free_port
from tests.field_lab.test_lab import lab_cli
from tests.ray_cluster import LOCAL_ENV

pytestmark = [
    pytest.mark.ray,
    pytest.mark.skipif(find_spec("ray") is None, reason="the ray extra is not installed"),
]

SCENARIO = (
    "seed = 3\nduration_s = 6\nsettle_s = 10\n[fleet]\nagents = 4\ndevices = 16\n"
    "[agents]\nvisits_per_hour = 900\nsync_interval_s = 3\n"
    "[customers]\npayments_per_hour = 240\nseconds_per_key = 0.05\n"
)
START_S = 240.0


class LocalCluster:
    """`python -m tests.ray_cluster` in its own process: two nodes of one CPU each."""

    def __init__(self, log: Path) -> None:
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.ray_cluster", "--nodes", "2", "--cpus", "1"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env={**os.environ, **LOCAL_ENV},
        )
        self._address = ""

    def address(self) -> str:
        """The head's HOST:PORT, once every node is up."""
        if not self._address:
            assert self.proc.stdout is not None
            ready, _, _ = select.select([self.proc.stdout], [], [], START_S)
            line = self.proc.stdout.readline().decode().strip() if ready else ""
            assert line.startswith("127.0.0.1:"), f"no cluster (see {self.log.name}): {line!r}"
            self._address = line
        return self._address

    def stop(self) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.stdout.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Started, not waited for: tests start their local runs while its nodes come up."""
    started = LocalCluster(tmp_path_factory.mktemp("ray") / "cluster.log")
    try:
        yield started
    finally:
        started.stop()


def summary(out: Path) -> dict[str, object]:
    doc: dict[str, object] = json.loads((out / "summary.json").read_text())
    return doc


@pytest.mark.timeout(600)  # a cluster's start and two runs: 2.5 min at a load average of 10-14
def test_a_ray_run_acts_on_the_plan_of_a_sharded_run_and_reaches_its_verdicts(
    tmp_path: Path, cluster: LocalCluster
) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO)
    local_out, ray_out = tmp_path / "local", tmp_path / "ray"
    run = ["run", str(scenario), "--shards", "2", "--out", str(local_out), "--quiet"]
    local = subprocess.Popen(  # alongside the cluster's start: the machine has two cores
        [sys.executable, "-m", "field_lab.cli", *run],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    address = cluster.address()
    env = {**os.environ, **LOCAL_ENV}
    ray = lab_cli(
        "run", str(scenario), "--shards", "2", "--ray", address, "--out", str(ray_out), "--quiet",
        env=env,
    )  # fmt: skip
    _, local_err = local.communicate(timeout=240)
    assert local.returncode in (0, 99), local_err.decode()[-2000:]
    assert ray.returncode in (0, 99), ray.stderr.decode()[-2000:]
    assert "shards: 2 ran as Ray actors on 2 nodes" in ray.stderr.decode()
    a, b = summary(local_out), summary(ray_out)
    assert isinstance(a["plan"], dict)
    assert a["plan"]["events"] > 0
    for key in ("plan", "checks", "shards", "handsets", "devices", "sale_attempts"):
        assert b[key] == a[key], key
    for name in FIGURES:
        assert a[name] == b[name] == 0, (name, a["check_details"], b["check_details"])
    verdicts = [{k: v["status"] for k, v in d["slo"].items()} for d in (a, b)]  # type: ignore[attr-defined]
    assert verdicts[0] == verdicts[1]


@pytest.mark.timeout(300)  # run alone, it waits for the cluster's start
def test_more_shards_than_the_clusters_cpus_is_refused_in_one_line(
    tmp_path: Path, cluster: LocalCluster
) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO)
    done = lab_cli(
        "run", str(scenario), "--shards", "3", "--ray", cluster.address(), "--quiet",
        env={**os.environ, **LOCAL_ENV},
    )  # fmt: skip
    err = done.stderr.decode().strip()
    assert done.returncode == 2, err
    assert "--shards 3 is more than the Ray cluster's 2 CPUs" in err
    assert "Traceback" not in err


def test_a_head_address_where_nothing_listens_is_refused_at_once_in_one_line() -> None:
    port = free_port()
    done = lab_cli("run", "--ray", f"127.0.0.1:{port}", "--quiet", env={**os.environ, **LOCAL_ENV})
    assert done.returncode == 2
    assert done.stderr.decode().strip().splitlines() == [
        f"field-lab run: --ray 127.0.0.1:{port}: nothing answers there (Connection refused);"
        " start the head (ray start --head --port PORT) or check the address"
    ]
