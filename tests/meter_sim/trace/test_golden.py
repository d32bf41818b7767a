"""The golden corpus: reproducible from its script, and identical on every target."""

from __future__ import annotations

from pathlib import Path

import pytest

from meter_sim.line_protocol import LineSession
from meter_sim.trace import Status, load, open_target, replay

from ..golden.make_golden import GOLDEN, build
from .devices import pty_device, tcp_device

GOLDEN_DIR = Path(__file__).parent.parent / "golden"
NAMES = sorted(GOLDEN)


def test_golden_files_are_what_the_script_makes() -> None:
    for name, text in build().items():
        assert (GOLDEN_DIR / name).read_text(encoding="utf-8") == text, name


def test_corpus_covers_every_protocol_and_situation() -> None:
    traces = [load(GOLDEN_DIR / name) for name in NAMES]
    protocols = {t.header.device.protocol for t in traces}
    assert protocols == {"nexus-full", "nexus-small", "openpaygo"}
    outcomes = {e.reply.get("outcome") for t in traces for e in t.events if e.reply is not None}
    assert {"applied", "duplicate", "invalid", "rate_limited", "rejected"} <= outcomes
    kinds = {e.kind for t in traces for e in t.events}
    assert kinds == {"code", "key", "advance", "power", "status"}


@pytest.mark.parametrize("name", NAMES)
def test_replays_identically_in_process(name: str) -> None:
    trace = load(GOLDEN_DIR / name)
    result = replay(trace, open_target("sim", trace.header.device))
    assert result.exit_code == 0
    assert result.count(Status.MATCH) == len(trace.events)
    assert result.incidents == []


@pytest.mark.parametrize("name", NAMES)
def test_replays_identically_over_a_pty(name: str) -> None:
    trace = load(GOLDEN_DIR / name)
    with pty_device(LineSession(trace.header.device.build())) as path:
        assert path.startswith("/dev/")
        with open_target(path) as link:
            result = replay(trace, link, timeout=5)
    assert result.exit_code == 0, result
    assert result.count(Status.MATCH) == len(trace.events)
    assert result.target is not None
    assert f"protocol={trace.header.device.protocol}" in result.target


@pytest.mark.parametrize("name", NAMES)
def test_replays_identically_over_tcp(name: str) -> None:
    trace = load(GOLDEN_DIR / name)
    with (
        tcp_device(trace.header.device.build(), LineSession) as url,
        open_target(url) as link,
    ):
        result = replay(trace, link, timeout=5)
    assert result.exit_code == 0, result
    assert result.count(Status.MATCH) == len(trace.events)
