"""Hardware-in-the-loop record and replay over the meter's line protocol.

    from meter_sim.trace import DeviceConfig, Header, TraceRecorder, TraceWriter
    config = DeviceConfig("nexus-full", key)
    with open("meter.jsonl", "w") as f:
        writer = TraceWriter(f, Header(config, timebase="device"))
        meter = TraceRecorder(config.build(), writer.write)   # use it as you would the Meter

    from meter_sim.trace import load, open_target, replay
    result = replay(load("meter.jsonl"), open_target("tcp://127.0.0.1:7700"), speed=None)
    result.exit_code   # 0 identical, 1 mismatch, 2 usage/trace error, 3 target unreachable

The format is in docs/trace-format.md.
"""

from __future__ import annotations

from meter_sim.trace.device import DeviceConfig, load_device
from meter_sim.trace.errors import (
    RecordError,
    TargetError,
    TargetTimeout,
    TargetUnreachable,
    TraceError,
    TraceFormatError,
)
from meter_sim.trace.format import Event, Header, Trace, TraceWriter, dumps, load, loads
from meter_sim.trace.recorder import MeterLike, RecordingSession, TraceRecorder, WireRecorder
from meter_sim.trace.replay import Check, Incident, Replayer, Result, Status
from meter_sim.trace.replies import Reply, format_reply, parse_reply
from meter_sim.trace.runner import Timing, replay
from meter_sim.trace.targets import Link, SerialLink, SimLink, TcpLink, open_target

__all__ = [
    "Check",
    "DeviceConfig",
    "Event",
    "Header",
    "Incident",
    "Link",
    "MeterLike",
    "RecordError",
    "RecordingSession",
    "Replayer",
    "Reply",
    "Result",
    "SerialLink",
    "SimLink",
    "Status",
    "TargetError",
    "TargetTimeout",
    "TargetUnreachable",
    "TcpLink",
    "Timing",
    "Trace",
    "TraceError",
    "TraceFormatError",
    "TraceRecorder",
    "TraceWriter",
    "WireRecorder",
    "dumps",
    "format_reply",
    "load",
    "load_device",
    "loads",
    "open_target",
    "parse_reply",
    "replay",
]
