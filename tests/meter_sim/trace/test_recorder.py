"""Recording: the Meter wrapper, the wire recorder, and `--record` on session and serve."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meter_sim import ClockError, Meter
from meter_sim.line_protocol import LineSession
from meter_sim.trace import (
    DeviceConfig,
    Event,
    Header,
    RecordError,
    Status,
    Trace,
    TraceRecorder,
    TraceWriter,
    WireRecorder,
    dumps,
    load,
    loads,
    open_target,
    replay,
)
from meter_sim.trace.format import dumps_line, event_to_json, header_to_json

from ..helpers import KEY, full_add, small_add

CONFIG = DeviceConfig("nexus-full", KEY)
CODES = [full_add(1, 24), full_add(2, 1), full_add(3, 5), "*123 456 789 012 34#", "*1#", "12"]


def recorded(events: list[Event]) -> TraceRecorder:
    return TraceRecorder(CONFIG.build(), events.append)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("code"), st.sampled_from(CODES)),
        st.tuples(st.just("key"), st.sampled_from("0123456789*#")),
        st.tuples(st.just("wait"), st.integers(0, 2000)),
        st.tuples(st.just("power"), st.none()),
        st.tuples(st.just("status"), st.none()),
    ),
    max_size=40,
)


@given(ops)
def test_a_recorded_meter_answers_as_the_meter_and_the_trace_replays(
    steps: list[tuple[str, object]],
) -> None:
    plain = CONFIG.build()
    events: list[Event] = []
    meter = recorded(events)
    now = 0.0
    for op, arg in steps:
        if op == "code":
            assert meter.enter_keycode(str(arg), now) == plain.enter_keycode(str(arg), now)
        elif op == "key":
            assert meter.press_key(str(arg), now) == plain.press_key(str(arg), now)
        elif op == "wait":
            now += float(str(arg))
            meter.advance(now)
            plain.advance(now)
        elif op == "power":
            meter.power_cycle(now)
            plain.power_cycle(now)
        else:
            assert meter.status(now).get("credit") == plain.credit_remaining(now)
        assert meter.state(now) == plain.state(now)
    buffer = io.StringIO()
    writer = TraceWriter(buffer, Header(CONFIG, timebase="device"), include_secret=True)
    for event in events:
        writer.write(event)
    trace = loads(buffer.getvalue())
    result = replay(trace, open_target("sim", trace.header.device))
    assert result.exit_code == 0
    assert result.count(Status.MATCH) == len(events)


def test_device_time_is_recorded_from_the_start_of_recording() -> None:
    events: list[Event] = []
    start = 50_000.0
    meter = TraceRecorder(CONFIG.build(now=start), events.append, start=start)
    meter.enter_keycode(full_add(1, 24), start + 10)
    status = meter.status(start + 70)
    assert [e.kind for e in events] == ["advance", "code", "advance", "status"]
    assert events[0].arg == 10.0
    assert status.get("time") == 70.0
    trace = loads(
        "".join(
            [
                header_line(Header(CONFIG, timebase="device", device_start=start)),
                *(line_of(e) for e in events),
            ]
        )
    )
    assert replay(trace, open_target("sim", CONFIG)).exit_code == 0


def header_line(header: Header) -> str:
    return dumps_line(header_to_json(header, include_secret=True))


def line_of(event: Event) -> str:
    return dumps_line(event_to_json(event))


def test_what_a_trace_cannot_carry_is_refused_before_the_meter_changes() -> None:
    events: list[Event] = []
    meter = recorded(events)
    for bad in ["", "   ", "*12\u00e9#", "*" + "1" * 300 + "#"]:
        with pytest.raises(RecordError, match="printable ASCII"):
            meter.enter_keycode(bad, 0)
    for key in ["", "12", " ", "\u00e9"]:
        with pytest.raises(RecordError, match="one printable ASCII"):
            meter.press_key(key, 0)
    with pytest.raises(RecordError, match="no line-protocol command"):
        meter.set_restricted(True, 0)
    meter.advance(100)
    with pytest.raises(ClockError):
        meter.enter_keycode(full_add(1, 1), 50)
    assert [e.kind for e in events] == ["advance"]
    assert meter.credit_remaining(100) == 0


def _wire_events(requests: list[bytes], answers: list[bytes]) -> list[Event]:
    events: list[Event] = []
    wire = WireRecorder(events.append)
    for chunk in requests:
        wire.request(chunk, 1.0)
    for chunk in answers:
        wire.answer(chunk, 2.0)
    wire.close()
    return events


def test_the_wire_recorder_pairs_requests_with_answers() -> None:
    session = LineSession(Meter.nexus(KEY))
    script = (
        f"HELLO\nCODE {full_add(1, 24)}\n\nKEY 5\nWAIT 10\nTIME 5\nTIME x\nWAIT -1\nPOWER\n"
        "STATUS\nFLY\n" + "A" * 300 + "\n" + "B" * 257 + "\n\xe9\n"
    ).encode("latin-1")
    answers = session.feed(script)
    events = _wire_events([script + b"KEY 1\n"], [answers])
    kinds = [(e.kind, e.arg) for e in events]
    assert kinds == [
        ("hello", None),
        ("code", full_add(1, 24)),
        ("key", "5"),
        ("advance", 10.0),
        ("advance", 5.0),
        ("line", "TIME x"),
        ("line", "WAIT -1"),
        ("power", None),
        ("status", None),
        ("line", "FLY"),
        ("key", "1"),
    ]
    assert events[4].reply is not None
    assert events[4].reply.get("error") == "clock-backwards"
    assert events[-1].reply is None  # never answered: replay will not compare it


@given(st.lists(st.integers(1, 40), max_size=12), st.lists(st.integers(1, 40), max_size=12))
def test_wire_recording_does_not_depend_on_chunking(a: list[int], b: list[int]) -> None:
    session = LineSession(Meter.nexus(KEY))
    script = f"HELLO\nCODE {full_add(1, 24)}\nKEY 5\nWAIT 10\nSTATUS\nPOWER\n".encode()
    answers = session.feed(script)

    def chunks(data: bytes, sizes: list[int]) -> list[bytes]:
        out, at = [], 0
        for size in sizes:
            out.append(data[at : at + size])
            at += size
        return [*out, data[at:]]

    assert _wire_events(chunks(script, a), chunks(answers, b)) == _wire_events([script], [answers])


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meter_sim.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_record_then_replay(tmp_path: Path) -> None:
    path = tmp_path / "served.jsonl"
    script = f"HELLO\nCODE {full_add(1, 24)}\nWAIT 3600\nCODE {full_add(1, 24)}\nSTATUS\nPOWER\n"
    served = _cli("serve", "--stdio", "--record", str(path), "--include-secret", stdin=script)
    assert served.returncode == 0, served.stderr
    trace = load(path)
    assert [e.kind for e in trace.events] == [
        "connect",
        "hello",
        "code",
        "advance",
        "code",
        "status",
        "power",
    ]
    assert trace.header.recorder == "meter-sim serve"
    assert trace.header.device.key == KEY
    replayed = _cli("replay", str(path), "--fast")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "identical" in replayed.stdout


def test_session_record_keeps_the_secret_out_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    keys = full_add(1, 24)
    done = _cli(
        "--record", str(path), stdin=f"{keys}\n:wait 60\n:status\n:power\n\u00e9\n{keys}\n:quit\n"
    )
    assert done.returncode == 0, done.stderr
    assert "not pressed" in done.stdout
    text = path.read_text()
    assert KEY.hex() not in text
    trace = load(path)
    assert trace.header.recorder == "meter-sim session"
    assert {e.kind for e in trace.events} == {"key", "advance", "status", "power"}
    no_key = _cli("replay", str(path), "--fast")
    assert no_key.returncode == 2
    assert "--include-secret" in no_key.stderr
    device = tmp_path / "device.json"
    device.write_text(f'{{"protocol": "nexus-full", "key": "{KEY.hex()}"}}')
    with_key = _cli("replay", str(path), "--fast", "--device", str(device))
    assert with_key.returncode == 0, with_key.stdout


def test_open_records_a_meter_into_a_file_the_lab_way(tmp_path: Path) -> None:
    path = tmp_path / "meter-17.jsonl"
    t0 = 86_400.0
    with TraceRecorder.open(path, DeviceConfig("nexus-small", KEY), now=t0) as meter:
        assert meter.enter_keycode(small_add(1, 7), t0 + 5).outcome.value == "applied"
        meter.power_cycle(t0 + 10)
        meter.status(t0 + 20)
    trace = load(path)
    assert trace.header.timebase == "device"
    assert trace.header.device_start == t0
    assert trace.header.device.key is None  # no secret unless asked
    assert [(e.kind, e.t) for e in trace.events][:2] == [("advance", 5.0), ("code", 5.0)]
    config = trace.header.device.with_key_from(DeviceConfig("nexus-small", KEY))
    assert replay(trace, open_target("sim", config)).exit_code == 0


request_lines = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300),
    st.tuples(
        st.sampled_from(["KEY", "CODE", "TIME", "WAIT", "POWER", "STATUS", "HELLO", "key"]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
    ).map(" ".join),
    st.floats(min_value=0, allow_infinity=False).map(lambda x: f"TIME {x!r}"),
)


@given(st.lists(request_lines, max_size=12))
def test_every_event_the_wire_recorder_writes_loads_back(lines: list[str]) -> None:
    session = LineSession(Meter.nexus(KEY))
    data = "".join(line + "\n" for line in lines).encode()
    events = _wire_events([data], [session.feed(data)])
    trace = Trace(Header(CONFIG), tuple(events))
    assert loads(dumps(trace)).events == trace.events
