"""Serial robustness: a device on a real pty pair (or TCP) that misbehaves on purpose.

Every replay here must end, with the misbehaviour reported, never hang: pytest-timeout would
fail a hang, and the waits are bounded at a fraction of a second.
"""

from __future__ import annotations

import os
import socket
import threading

import pytest

from meter_sim.trace import Status, load, open_target, replay
from meter_sim.trace.format import Trace

from .devices import Misbehaving, pty_device, tcp_device
from .test_golden import GOLDEN_DIR

WAIT = 1.0
"""Bounded wait per answer: short, yet long enough for a loaded 2-core machine."""


def golden(name: str = "nexus_full_credit.jsonl") -> Trace:
    return load(GOLDEN_DIR / name)


def first_code(trace: Trace) -> int:
    return next(i for i, e in enumerate(trace.events) if e.kind == "code")


def on_pty(trace: Trace, plan: dict[int, str], max_timeouts: int = 3) -> object:
    session = Misbehaving(trace.header.device.build(), plan)
    with pty_device(session) as path, open_target(path) as link:
        return replay(trace, link, timeout=WAIT, max_timeouts=max_timeouts)


def test_a_diverging_device_on_a_pty_is_caught_where_it_diverges() -> None:
    trace = golden()
    index = first_code(trace)  # request 0 is HELLO, so event i is request i + 1
    result = on_pty(trace, {index + 1: "diverge"})
    assert result.exit_code == 1
    bad = [c for c in result.checks if c.status is Status.MISMATCH]
    assert [c.index for c in bad] == [index]
    assert bad[0].line == index + 2
    assert [(d.field, d.expected, d.got) for d in bad[0].diffs] == [
        ("outcome", "applied", "duplicate")
    ]
    assert result.count(Status.MATCH) == len(trace.events) - 1


def test_a_diverging_device_over_tcp_is_caught() -> None:
    trace = golden("openpaygo.jsonl")
    index = first_code(trace)
    with (
        tcp_device(
            trace.header.device.build(), lambda m: Misbehaving(m, {index + 1: "diverge"})
        ) as url,
        open_target(url) as link,
    ):
        result = replay(trace, link, timeout=WAIT)
    assert result.exit_code == 1
    (bad,) = [c for c in result.checks if c.status is Status.MISMATCH]
    assert bad.index == index
    assert bad.got is not None
    assert bad.got.get("outcome") == "duplicate"
    # the nearest recorded answer like the one that came back is the recorded duplicate
    assert bad.nearest
    assert bad.nearest[0].differs == ()
    assert trace.events[bad.nearest[0].index].reply == bad.got


def test_silence_times_out_resynchronises_and_carries_on() -> None:
    trace = golden()
    result = on_pty(trace, {3: "silent"})
    assert result.exit_code == 1
    timeouts = [c.index for c in result.checks if c.status is Status.TIMEOUT]
    assert timeouts == [2]
    assert any(i.kind == "resync" for i in result.incidents)
    # the rest of the trace still ran: everything after the lost request matched or diverged
    assert len(result.checks) == len(trace.events)


def test_half_a_line_then_silence_is_reported_as_partial() -> None:
    trace = golden()
    result = on_pty(trace, {2: "partial"})
    assert result.exit_code == 1
    partial = [i for i in result.incidents if i.kind == "partial"]
    assert partial
    assert partial[0].index == 1
    assert "OK" in partial[0].detail


def test_garbage_bytes_are_set_aside_and_the_answer_still_matches() -> None:
    trace = golden()
    result = on_pty(trace, dict.fromkeys(range(1, 8), "garbage"))
    assert result.exit_code == 0
    garbage = [i for i in result.incidents if i.kind == "garbage"]
    assert len(garbage) == 7
    assert "outside ASCII" in garbage[0].detail


def test_a_device_echoing_every_request_still_replays_identically() -> None:
    trace = golden("openpaygo.jsonl")
    result = on_pty(trace, dict.fromkeys(range(len(trace.events) + 1), "echo"))
    assert result.exit_code == 0
    echoes = [i for i in result.incidents if i.kind == "garbage"]
    assert len(echoes) == len(trace.events) + 1  # and the HELLO
    assert "starts with OK or ERR" in echoes[0].detail


def test_a_flood_without_newlines_is_bounded_and_reported() -> None:
    trace = golden()
    result = on_pty(trace, {2: "flood"})
    assert result.exit_code == 1
    assert [c.index for c in result.checks if c.status is Status.TIMEOUT] == [1]
    assert any("longer than" in i.detail for i in result.incidents)
    assert len(result.checks) == len(trace.events)


def test_a_device_that_reboots_mid_trace_is_reported_not_hung() -> None:
    trace = golden()
    reboot_at = 10
    result = on_pty(trace, {reboot_at: "reboot"})
    assert result.exit_code == 1
    lost = reboot_at - 1
    assert [c.index for c in result.checks if c.status is Status.TIMEOUT] == [lost]
    banner = [i for i in result.incidents if i.kind == "garbage"]
    assert banner
    assert banner[0].index == lost
    assert "BOOT" in banner[0].detail
    assert len(result.checks) == len(trace.events)
    # after the reboot its clock restarted: the next TIME is refused or the credit differs
    after = [c for c in result.checks if c.index > lost and c.status is Status.MISMATCH]
    assert after, "a rebooted device's answers differ from the recording"


def test_a_dead_device_is_unreachable_after_bounded_waits() -> None:
    trace = golden()
    result = on_pty(trace, dict.fromkeys(range(100), "silent"), max_timeouts=2)
    assert result.exit_code == 3
    assert result.aborted is not None
    assert "2 bounded waits" in result.aborted
    assert len(result.checks) <= 1


def test_a_loopback_port_echoing_requests_never_hangs() -> None:
    trace = golden()
    with open_target("loop://") as link:
        result = replay(trace, link, timeout=0.05, max_timeouts=2)
    assert result.exit_code == 3
    assert any("an answer starts with OK or ERR" in i.detail for i in result.incidents)


def test_the_wrong_device_is_a_usage_error() -> None:
    trace = golden()
    other = golden("openpaygo.jsonl").header.device.build()
    with tcp_device(other, lambda m: Misbehaving(m, {})) as url, open_target(url) as link:
        result = replay(trace, link, timeout=WAIT)
    assert result.exit_code == 2
    assert result.aborted is not None
    assert "openpaygo" in result.aborted
    assert result.checks == []


def test_a_closed_pty_is_unreachable() -> None:
    controller, device = os.openpty()
    path = os.ttyname(device)
    os.close(device)
    os.close(controller)
    with pytest.raises(Exception, match=path):
        open_target(path)


def test_a_tcp_device_that_hangs_up_is_unreachable() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def hang_up() -> None:
        conn, _ = server.accept()
        conn.recv(100)
        conn.close()

    thread = threading.Thread(target=hang_up)
    thread.start()
    try:
        with open_target(f"tcp://127.0.0.1:{port}") as link:
            result = replay(golden(), link, timeout=WAIT)
    finally:
        thread.join(5)
        server.close()
    assert result.exit_code == 3
    assert result.aborted is not None
    assert "closed" in result.aborted
