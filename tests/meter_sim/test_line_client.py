"""The jig-side client of the line protocol, on the simulator in-process and on real shells."""

from __future__ import annotations

import math
import socket
import threading

import pytest

from meter_sim import Meter
from meter_sim.line_client import (
    AnswerTimeout,
    BadRequest,
    LineClient,
    LinkDown,
    Refused,
)
from meter_sim.line_protocol import LineSession
from meter_sim.trace.targets import SimLink, open_target

from .helpers import KEY, full_add, full_unlock
from .trace.devices import Misbehaving, pty_device


def client() -> LineClient:
    return LineClient(SimLink(LineSession(Meter.nexus(KEY, payg_id="KE-7"))), timeout=0.5)


def test_typed_calls_answer_as_the_protocol_says() -> None:
    meter = client()
    hello = meter.hello()
    assert (hello.protocol, hello.keys, hello.clock, hello.line_protocol) == (
        "nexus-full",
        "0123456789*#",
        "virtual",
        1,
    )
    applied = meter.code(full_add(1, 24))
    assert (applied.outcome, applied.credit, applied.state) == ("applied", 86400.0, "enabled")
    assert meter.wait(3600) == 3600.0
    assert meter.time(3600.5) == 3600.5
    status = meter.status()
    assert (status.time, status.credit, status.state) == (3600.5, 82799.5, "enabled")
    assert (status.output, status.restricted, status.limited) == (True, False, False)
    assert meter.key("*").feedback == "accepted"
    assert meter.code("*6347765#").payg_id == "KE-7"
    keys = [meter.key(k) for k in full_unlock(2).replace(" ", "")]
    assert keys[-1].code is not None
    assert math.isinf(keys[-1].code.credit)
    assert meter.power() == "ok"
    assert meter.reset() == 0.0
    assert meter.status().credit == 0.0


def test_an_err_answer_is_refused_by_typed_calls_and_data_for_request() -> None:
    meter = client()
    meter.time(100)
    with pytest.raises(Refused) as refused:
        meter.time(50)
    assert refused.value.code == "clock-backwards"
    reply = meter.request("POWER off")
    assert not reply.ok
    assert reply.get("error") == "bad-argument"


@pytest.mark.parametrize("line", ["", "   ", "HELLO\nSTATUS", "HELLO\rSTATUS", "CODE " + "1" * 300])
def test_what_is_not_one_request_line_is_never_sent(line: str) -> None:
    with pytest.raises(BadRequest):
        client().command(line)


def test_bad_arguments_of_typed_calls_are_the_callers() -> None:
    for bad in (-1, math.inf, math.nan, True):
        with pytest.raises(BadRequest, match="seconds"):
            client().wait(bad)
    with pytest.raises(BadRequest, match="ASCII"):
        client().code("\u00bd")


def test_echoes_and_banners_are_skipped_and_a_silent_device_times_out() -> None:
    with pytest_device({1: "echo", 2: "garbage", 3: "silent"}) as meter:
        assert meter.status().time == 0.0  # its echo is not taken for the answer
        assert meter.hello().protocol == "nexus-full"  # nor is noise
        with pytest.raises(AnswerTimeout, match="last lines seen"):
            meter.status()


def pytest_device(plan: dict[int, str]) -> _Served:
    return _Served(plan)


class _Served:
    """A misbehaving device served on a pty, with a client on it."""

    def __init__(self, plan: dict[int, str]) -> None:
        self.plan = plan

    def __enter__(self) -> LineClient:
        self._pty = pty_device(Misbehaving(Meter.nexus(KEY), {0: "ok", **self.plan}))
        path = self._pty.__enter__()
        self.client = LineClient(open_target(path), timeout=0.5)
        self.client.hello()  # request 0
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self._pty.__exit__(None, None, None)


def test_a_device_that_hangs_up_is_link_down() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def hang_up() -> None:
        conn, _ = server.accept()
        conn.close()

    thread = threading.Thread(target=hang_up)
    thread.start()
    try:
        with LineClient(open_target(f"tcp://127.0.0.1:{port}"), timeout=2) as meter:
            thread.join(5)
            with pytest.raises(LinkDown, match="closed"):
                meter.status()
    finally:
        server.close()
