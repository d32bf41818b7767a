"""The serial tap: sit between a jig and a device, pass bytes both ways, record the exchange.

The tap asks the device `HELLO` once before passing anything, to fill the trace header; then
it only forwards. Every read is bounded (`poll`), so `stop` and `duration` are honoured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from meter_sim.trace.device import PROTOCOLS, DeviceConfig
from meter_sim.trace.errors import TargetError, TargetTimeout
from meter_sim.trace.format import Header
from meter_sim.trace.lines import Line, LineSplitter
from meter_sim.trace.recorder import EventSink, WireRecorder
from meter_sim.trace.replies import Reply, ReplyError, parse_reply
from meter_sim.trace.targets import Link


def identify(
    device: Link, *, timeout: float = 2.0, clock: Callable[[], float] = time.monotonic
) -> Reply:
    """Ask the device HELLO and return its answer; `TargetTimeout` if none comes in time."""
    device.write(b"HELLO\n")
    splitter = LineSplitter()
    deadline = clock() + timeout
    while (remaining := deadline - clock()) > 0:
        for item in splitter.feed(device.read(remaining)):
            if isinstance(item, Line):
                try:
                    reply = parse_reply(item.text)
                except ReplyError:
                    continue
                if reply.verb == "HELLO":
                    return reply
    raise TargetTimeout(f"{device.name}: no answer to HELLO within {timeout} s")


def header_from_hello(reply: Reply, *, origin: str | None) -> Header:
    protocol = reply.get("protocol")
    if protocol not in PROTOCOLS:
        raise TargetError(f"the device reports protocol={protocol!r}, not one a trace can carry")
    assert isinstance(protocol, str)
    return Header(
        device=DeviceConfig(protocol=protocol),
        firmware=f"{reply.get('device')} line-protocol={reply.get('line-protocol')}",
        recorder="meter-sim tap",
        origin=origin,
        timebase="wall",
    )


@dataclass
class TapStats:
    to_device: int = 0
    to_jig: int = 0


def run_tap(
    jig: Link,
    device: Link,
    sink: EventSink,
    *,
    stop: Callable[[], bool] = lambda: False,
    duration: float | None = None,
    poll: float = 0.01,
    clock: Callable[[], float] = time.monotonic,
) -> TapStats:
    """Forward bytes both ways until `stop()` or `duration`; record requests with answers."""
    wire = WireRecorder(sink)
    stats = TapStats()
    start = clock()
    try:
        while not stop() and (duration is None or clock() - start < duration):
            data = jig.read(poll)
            if data:
                device.write(data)
                stats.to_device += len(data)
                wire.request(data, clock() - start)
            data = device.read(poll)
            if data:
                jig.write(data)
                stats.to_jig += len(data)
                wire.answer(data, clock() - start)
    finally:
        wire.close()
    return stats
