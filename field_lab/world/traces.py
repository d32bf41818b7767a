"""Keypad traces of every meter in a run, for replay against a bench meter (meter-sim replay).

Events are buffered in memory while the run goes (thousands of meters would otherwise hold
thousands of open files) and written out as one JSON Lines trace per meter at the end. The
lab's device keys are throwaway, so traces include them and replay needs no device file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agent_client.protocol.keycodes import KeycodeFormat
from field_lab.protocols import NAMES
from field_lab.world.sites import meter_for
from meter_sim.trace import Event, Header
from meter_sim.trace.device import DeviceConfig, simulator_version
from meter_sim.trace.format import TraceWriter
from meter_sim.trace.recorder import TraceRecorder
from server_stub.keycodes import DeviceSecret


def device_config(secret: DeviceSecret) -> DeviceConfig:
    opaygo = secret.format in (KeycodeFormat.OPENPAYGO, KeycodeFormat.OPENPAYGO_RESTRICTED)
    return DeviceConfig(
        protocol=NAMES[secret.format],
        key=secret.key,
        starting_code=secret.starting_code if opaygo else None,
        time_divider=secret.time_divider,
    )


@dataclass
class TraceBook:
    """One buffered trace per meter."""

    folder: Path
    traces: dict[int, tuple[Header, list[Event]]] = field(default_factory=dict)

    def recorder(self, serial: int, secret: DeviceSecret, now: float) -> TraceRecorder:
        config = device_config(secret)
        header = Header(
            config,
            firmware=simulator_version(),
            recorder="field_lab.world.traces",
            timebase="device",
            device_start=now,
        )
        events: list[Event] = []
        self.traces[serial] = (header, events)
        return TraceRecorder(meter_for(secret, now), events.append, start=now)

    def write(self) -> int:
        self.folder.mkdir(parents=True, exist_ok=True)
        written = 0
        for serial, (header, events) in sorted(self.traces.items()):
            if not events:
                continue
            with open(self.folder / f"meter-{serial}.jsonl", "w", encoding="utf-8") as stream:
                writer = TraceWriter(stream, header, include_secret=True)
                for event in events:
                    writer.write(event)
            written += 1
        return written
