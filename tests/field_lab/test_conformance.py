"""The conformance kit against the stand-in: every clause holds on the real platform, a
platform broken through its fault seam fails exactly the clauses that describe the bug, and
the command line prints one line per clause (issue 19)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from agent_client.protocol.frames import UplinkFrame, decode_uplink, encode_uplink
from agent_client.strategies import uplink_frames
from field_lab.conformance import CLAUSES, HttpWire, Verdict, run_clauses
from field_lab.conformance.handset import row, uplink
from field_lab.net import free_port
from server_stub.app import create_app
from server_stub.cli import main as server_stub_main
from server_stub.faults import PlatformFaults

DOC = Path(__file__).parents[2] / "docs" / "sync-protocol.md"
BIN = Path(sys.executable).parent
DEVICES = 300
"""More than one downlink page of stock, so the paging clause needs no payments (fast)."""


def seed(db: Path) -> None:
    """The documented test-provisioning convention, through server-stub's own CLI."""
    assert server_stub_main(["--db", str(db), "add-plan", "solar-home-10w", "100"]) == 0
    argv = ["--db", str(db), "add-agent", "conformance", "--code", "conformance-kit-1"]
    assert server_stub_main([*argv, "--devices", str(DEVICES), "--seed", "1"]) == 0


async def kit(db: Path, faults: PlatformFaults | None = None) -> list[Verdict]:
    server = TestServer(create_app(db, faults=faults), host="127.0.0.1")
    await server.start_server()
    wire = HttpWire(str(server.make_url("")), timeout_s=30)
    try:
        return await run_clauses(wire, "conformance", "conformance-kit-1", timeout_s=30)
    finally:
        await wire.close()
        await server.close()


@pytest.fixture
def db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "platform.db"
    seed(path)
    capsys.readouterr()
    return path


async def test_the_stand_in_passes_every_clause(db: Path) -> None:
    verdicts = await kit(db)
    failed = [v.line() for v in verdicts if not v.passed]
    assert not failed, "\n".join(failed)
    assert [v.clause.name for v in verdicts] == [c.name for c in CLAUSES]
    paging = next(v for v in verdicts if v.clause.name == "paging.more")
    assert "0 payments made" in paging.detail


@pytest.mark.parametrize(
    ("faults", "failing"),
    [
        # the old poison-batch bug: only the clauses of operation-level field errors see it
        (PlatformFaults(poison_batches=True), {"refusal.unknown_kind", "refusal.bad_field"}),
        # idempotency off: a replayed batch issues its keycodes again
        (PlatformFaults(replays_apply_again=True), {"ops.replay", "ops.conflict"}),
    ],
)
async def test_a_broken_platform_fails_the_clause_that_describes_the_bug(
    db: Path, faults: PlatformFaults, failing: set[str]
) -> None:
    verdicts = await kit(db, faults)
    assert {v.clause.name for v in verdicts if not v.passed} == failing


@given(uplink_frames(), st.booleans())
def test_the_kits_own_frame_builder_agrees_with_the_contract(
    frame: UplinkFrame, compress: bool
) -> None:
    """The kit builds frames itself (so it can build wrong ones); for valid operations its
    bytes are the contract codec's, byte for byte, deflated or not."""
    rows = [row(op.seq, int(op.kind), op.at, *op.fields) for op in frame.ops]
    built = uplink(frame.handset, frame.cursor, rows, compress)
    if compress:
        assert decode_uplink(built) == frame
    else:
        assert built == encode_uplink(frame, compress=False)
    assert uplink(frame.handset, frame.cursor, rows) == encode_uplink(frame)


def test_every_clause_names_a_section_of_the_doc() -> None:
    headings = set(re.findall(r"^#+ (.+)$", DOC.read_text(), flags=re.MULTILINE))
    assert {c.section for c in CLAUSES} <= headings
    assert len({c.name for c in CLAUSES}) == len(CLAUSES)


@pytest.fixture
def served(db: Path, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """`server-stub serve` in its own process on a free port; returns a starter of it."""
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> str:
        port = free_port()
        command = [str(BIN / "server-stub"), "--db", str(db), "serve", "--port", str(port)]
        with (tmp_path / "serve.log").open("wb") as log:  # the child keeps its own handle
            procs.append(subprocess.Popen(command, stderr=log, stdout=log))
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):  # bounded wait for the listener
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    return base
            except requests.ConnectionError:
                time.sleep(0.05)
        pytest.fail("server-stub serve did not come up")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)


def test_field_lab_conformance_against_server_stub_serve(served: Callable[[], str]) -> None:
    url = served()
    done = subprocess.run(
        [str(BIN / "field-lab"), "conformance", url],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(lines) == len(CLAUSES) + 1
    for clause, line in zip(CLAUSES, lines, strict=False):
        assert line.startswith(f"PASS  {clause.name} "), line
        assert f"docs/sync-protocol.md § {clause.section}" in line
    assert (
        lines[-1]
        == f"{len(CLAUSES)} of {len(CLAUSES)} clauses of docs/sync-protocol.md held at {url}"
    )
