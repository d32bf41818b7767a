"""The trace file: round trips, and precise errors for every kind of bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from meter_sim.meter import MAX_OPENPAYGO_COUNT
from meter_sim.trace import DeviceConfig, Event, Header, Trace, TraceFormatError, dumps, loads
from meter_sim.trace.device import key_id, load_device
from meter_sim.trace.format import KINDS
from meter_sim.trace.replies import INTEGERS, SECONDS, ReplyError, parse_reply

from ..helpers import KEY, OTHER_KEY

HEADER = Header(DeviceConfig("nexus-full", KEY, payg_id="42"), firmware="fw 1", origin=None)


def text_of(*events: dict[str, object], header: dict[str, object] | None = None) -> str:
    head = json.loads(dumps(Trace(HEADER), include_secret=True))
    head.update(header or {})
    return "\n".join(json.dumps(x) for x in [head, *events]) + "\n"


def test_round_trip_keeps_every_field() -> None:
    events = (
        Event("code", 0.0, "*123#", parse_reply("OK CODE invalid credit=0 state=disabled")),
        Event("key", 0.5, "5", parse_reply("OK KEY accepted")),
        Event("advance", 1.0, 3600.5, parse_reply("OK TIME 3600.5")),
        Event("power", 1.0, None, parse_reply("OK POWER nv=ok")),
        Event("status", 2.0, None, None),
        Event("hello", 2.0, None, parse_reply("OK HELLO x line-protocol=1 protocol=nexus-full")),
        Event("line", 3.0, "FLY 1", parse_reply("ERR unknown-command nope")),
        Event("code", 4.0, "*1#", parse_reply("OK CODE applied credit=inf state=unlocked")),
    )
    trace = Trace(HEADER, events)
    back = loads(dumps(trace, include_secret=True))
    assert back.events == events
    assert back.header == HEADER


def test_the_secret_is_written_only_when_asked() -> None:
    plain = dumps(Trace(HEADER))
    assert KEY.hex() not in plain
    assert key_id(KEY) in plain
    assert loads(plain).header.device.key is None
    assert loads(dumps(Trace(HEADER), include_secret=True)).header.device.key == KEY


def test_commands_map_onto_the_line_protocol() -> None:
    assert Event("key", 0, "#").command() == "KEY #"
    assert Event("code", 0, "*1 2#").command() == "CODE *1 2#"
    assert Event("advance", 0, 7200.0).command() == "TIME 7200"
    assert Event("power", 0).command() == "POWER"
    assert Event("line", 0, "WAIT 5").command() == "WAIT 5"
    assert Event("reset", 0).command() == "RESET"
    assert Event("connect", 0).command() == "HELLO"
    assert {k.verb for k in KINDS.values()} == {
        "KEY",
        "CODE",
        "TIME",
        "POWER",
        "STATUS",
        "HELLO",
        "RESET",
        None,
    }


BAD = [
    ("", 1, "empty trace"),
    ("[]\n", 1, "must be a JSON object"),
    ("{\n", 1, "not JSON"),
    ('{"t": 0}\n', 1, "first line must be the header"),
    (text_of(header={"version": 2}), 1, "version 2 is not supported"),
    (text_of(header={"format": "pcap"}), 1, "format must be"),
    (text_of(header={"extra": 1}), 1, "unknown field 'extra'"),
    (text_of(header={"device": {"protocol": "nexus-huge"}}), 1, "device.protocol is 'nexus-huge'"),
    (text_of(header={"device": {"protocol": "nexus-full", "key": "zz"}}), 1, "hex digits"),
    (
        text_of(header={"device": {"protocol": "nexus-full", "payg_id": "12 34"}}),
        1,
        "device.payg_id must be one word",
    ),
    (text_of(header={"device": {"protocol": "nexus-full", "key": "00"}}), 1, "32 hex digits"),
    (
        text_of(header={"device": {"protocol": "nexus-full", "key": KEY.hex(), "key_id": "x"}}),
        1,
        "does not match",
    ),
    (
        text_of(header={"clock": {"origin": None, "timebase": "lunar", "device_start": 0}}),
        1,
        "clock.timebase",
    ),
    (text_of({"t": 0, "event": "dance"}), 2, "event is 'dance'"),
    (text_of({"t": -1, "event": "power"}), 2, "t must be a finite number >= 0"),
    (text_of({"t": "soon", "event": "power"}), 2, "t must be a number, got a string"),
    (text_of({"t": 0, "event": "key", "key": "55"}), 2, "key is longer than 1"),
    (text_of({"t": 0, "event": "key", "key": " "}), 2, "printable ASCII"),
    (text_of({"t": 0, "event": "code", "code": "*1\n#"}), 2, "printable ASCII"),
    (text_of({"t": 0, "event": "code"}), 2, "code is missing"),
    (text_of({"t": 0, "event": "advance", "to": "inf"}), 2, "to must be a number"),
    (text_of({"t": 0, "event": "power", "oops": 1}), 2, "unknown field 'oops'"),
    (text_of({"t": 0, "event": "power", "reply": {"verb": "FLY"}}), 2, "reply.verb is 'FLY'"),
    (
        text_of({"t": 0, "event": "code", "code": "1", "reply": {"verb": "CODE"}}),
        2,
        "reply.outcome is missing",
    ),
    (
        text_of(
            {"t": 0, "event": "code", "code": "1", "reply": {"verb": "CODE", "outcome": "a b"}}
        ),
        2,
        "one ASCII word",
    ),
    (
        text_of({"t": 0, "event": "power", "reply": {"verb": "STATUS", "limited": True}}),
        2,
        "reply.limited must be an integer",
    ),
    (
        text_of({"t": 0, "event": "power", "reply": {"verb": "TIME", "time": -3}}),
        2,
        "reply.time must be a finite number",
    ),
    (text_of({"t": 5, "event": "power"}, {"t": 4, "event": "power"}), 3, "earlier than"),
    (text_of({"t": 0, "event": "power"}) + "\n", 3, "blank line"),
    (text_of({"t": 0, "event": "code", "code": "9" * 5000}), 2, "longer than 4096"),
    (text_of({"t": 10**400, "event": "power"}), 2, "t must be a finite number"),
    (text_of({"t": 0, "event": "advance", "to": 10**400}), 2, "to must be a finite number"),
]


@pytest.mark.parametrize(("text", "line", "message"), BAD)
def test_bad_traces_fail_with_the_line_and_the_field(text: str, line: int, message: str) -> None:
    with pytest.raises(TraceFormatError, match=message) as caught:
        loads(text, "t.jsonl")
    assert caught.value.line == line
    assert str(caught.value).startswith(f"t.jsonl:{line}: ")


def load_error(text: str) -> TraceFormatError | None:
    """The error loading `text` raises, if any; anything but a TraceFormatError propagates."""
    try:
        loads(text)
    except TraceFormatError as exc:
        return exc
    return None


@given(st.text(max_size=300))
def test_any_text_loads_or_fails_with_a_trace_error(text: str) -> None:
    error = load_error(text)
    assert error is None or error.line is not None


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**400), 10**400)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)


@given(
    st.dictionaries(
        st.sampled_from(["t", "event", "key", "code", "to", "line", "reply"]), json_values
    )
)
def test_any_json_event_loads_or_fails_with_a_trace_error(obj: dict[str, object]) -> None:
    error = load_error(text_of(obj))
    assert error is None or error.line == 2


@given(st.lists(st.sampled_from(list(KINDS)), max_size=20), st.data())
def test_generated_traces_round_trip(kinds: list[str], data: st.DataObject) -> None:
    printable = st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30
    )
    made: list[Event] = []
    t = 0.0
    for kind in kinds:
        t += data.draw(st.integers(0, 10**6)) / 1000
        arg: str | float | None = None
        if kind == "key":
            arg = data.draw(printable.map(lambda s: s[0]))
        elif kind in ("code", "line"):
            arg = data.draw(printable)
        elif kind == "advance":
            arg = data.draw(st.integers(0, 10**9)) / 1000
        reply = data.draw(
            st.sampled_from([None, parse_reply("OK POWER nv=ok"), parse_reply("ERR x y z")])
        )
        made.append(Event(kind, round(t, 6), arg, reply))
    trace = Trace(HEADER, tuple(made))
    assert loads(dumps(trace, include_secret=True)).events == trace.events


def test_device_files_complete_a_trace_without_its_key(tmp_path: Path) -> None:
    recorded = loads(dumps(Trace(HEADER))).header.device
    good = tmp_path / "device.json"
    good.write_text(json.dumps(HEADER.device.to_json(include_secret=True)))
    assert recorded.with_key_from(load_device(good)).key == KEY
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"protocol": "nexus-full", "key": OTHER_KEY.hex()}))
    with pytest.raises(TraceFormatError, match="not the key the trace was recorded with"):
        recorded.with_key_from(load_device(wrong))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"protocol": "nexus-small", "key": KEY.hex()}))
    with pytest.raises(TraceFormatError, match="for nexus-small"):
        recorded.with_key_from(load_device(other))
    with pytest.raises(TraceFormatError, match="record with --include-secret"):
        recorded.build()
    with pytest.raises(TraceFormatError, match="cannot read"):
        load_device(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(TraceFormatError, match="not JSON"):
        load_device(tmp_path / "bad.json")
    (tmp_path / "huge.json").write_text('{"protocol": "openpaygo", "count": 1' + "0" * 5000 + "}")
    with pytest.raises(TraceFormatError, match="not usable JSON"):
        load_device(tmp_path / "huge.json")


def test_openpaygo_device_round_trips_with_its_provisioning() -> None:
    device = DeviceConfig(
        "openpaygo-restricted", KEY, starting_code=5, count=9, time_divider=2, rate_limit=False
    )
    back = loads(dumps(Trace(Header(device)), include_secret=True)).header.device
    assert back == device
    meter = back.build()
    assert meter.protocol == "openpaygo-restricted"
    assert math.isfinite(meter.credit_remaining(0))


devices = st.builds(
    DeviceConfig,
    protocol=st.sampled_from(["nexus-full", "nexus-small", "openpaygo", "openpaygo-restricted"]),
    key=st.one_of(st.none(), st.binary(min_size=16, max_size=16)),
    payg_id=st.text(alphabet="0123456789ABC", max_size=12),
    starting_code=st.integers(0, 999_999_999),
    count=st.integers(1, MAX_OPENPAYGO_COUNT),
    time_divider=st.integers(1, 255),
    rate_limit=st.booleans(),
)


@given(devices, st.booleans())
def test_device_configs_round_trip(device: DeviceConfig, secret: bool) -> None:
    back = loads(dumps(Trace(Header(device)), include_secret=secret)).header.device
    assert back.protocol == device.protocol
    assert back.fingerprint == device.fingerprint
    assert back.key == (device.key if secret else None)
    assert back.payg_id == device.payg_id
    assert back.rate_limit == device.rate_limit
    if device.is_openpaygo:
        assert (back.starting_code, back.count, back.time_divider) == (
            device.starting_code,
            device.count,
            device.time_divider,
        )


answer_words = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=80)


@given(
    st.sampled_from(["OK CODE ", "OK KEY ", "OK STATUS ", "OK TIME ", "OK HELLO ", "ERR "]),
    st.lists(
        st.one_of(
            answer_words,
            st.tuples(st.sampled_from(sorted(INTEGERS | SECONDS)), answer_words).map("=".join),
        ),
        max_size=6,
    ),
)
@example("OK KEY ", ["0=0", "0"])  # a named field before the positional one: order kept
@example("OK KEY ", ["0", "0="])  # a field with no value: not well formed, refused
def test_whatever_a_device_answer_parses_to_a_trace_carries(prefix: str, words: list[str]) -> None:
    try:
        reply = parse_reply(prefix + " ".join(words))
    except ReplyError:
        return
    trace = Trace(HEADER, (Event("status", 0.0, None, reply),))
    assert loads(dumps(trace)).events[0].reply == reply


def test_an_answer_field_with_no_value_is_not_well_formed() -> None:
    with pytest.raises(ReplyError, match="'x' has no value"):
        parse_reply("OK KEY accepted x=")
