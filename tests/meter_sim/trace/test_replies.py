"""Answers as data: parse every line-protocol answer form, print it back, compare."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meter_sim import Meter
from meter_sim.line_protocol import LineSession
from meter_sim.trace.replies import Reply, ReplyError, diff, format_reply, parse_reply

from ..helpers import KEY, full_add

SAMPLES = [
    "OK HELLO meter-sim line-protocol=1 protocol=nexus-full keys=0123456789*# clock=virtual",
    "OK KEY accepted",
    "OK KEY applied credit=7200 state=enabled",
    "OK CODE display_id credit=0 state=disabled id=-",
    "OK CODE applied credit=inf state=unlocked",
    "OK CODE applied credit=0.5 state=enabled",
    "OK TIME 3600.25",
    "OK STATUS time=1 credit=2 state=enabled output=on restricted=0 limited=1 protocol=openpaygo",
    "OK POWER nv=recovered",
    "ERR clock-backwards device clock went backwards: 1 after 2",
    "ERR unknown-command",
]


@pytest.mark.parametrize("line", SAMPLES)
def test_parse_then_format_gives_the_line_back(line: str) -> None:
    assert format_reply(parse_reply(line)) == line


def test_fields_are_typed() -> None:
    reply = parse_reply(SAMPLES[7])
    assert reply.get("credit") == 2.0
    assert reply.get("limited") == 1
    assert parse_reply(SAMPLES[4]).get("credit") == math.inf
    err = parse_reply(SAMPLES[9])
    assert not err.ok
    assert err.get("error") == "clock-backwards"


def test_every_answer_a_real_session_gives_parses() -> None:
    s = LineSession(Meter.nexus(KEY))
    requests = [
        "HELLO",
        f"CODE {full_add(1, 2)}",
        "KEY 5",
        "KEY *",
        "WAIT 10",
        "TIME 5",
        "STATUS",
        "POWER",
        "FLY",
        "KEY 12",
        "\xff",
    ]
    for request in requests:
        answer = s.feed(request.encode("latin-1") + b"\n").decode().rstrip("\n")
        assert format_reply(parse_reply(answer)) == answer


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("", "starts with OK or ERR"),
        ("HELLO", "starts with OK or ERR"),
        ("OK", "without a verb"),
        ("OK FROB x", "unknown verb"),
        ("OK CODE", "lacks its 'outcome'"),
        ("OK CODE applied credit=abc", "not a number of seconds"),
        ("OK CODE applied credit=-1", "not a number of seconds"),
        ("OK TIME nan", "not a number of seconds"),
        ("OK STATUS limited=x", "not an integer in 0..2147483648"),
        ("OK STATUS limited=99999999999", "not an integer"),
        ("OK CODE " + "a" * 65, "longer than a trace carries"),
        ("OK KEY accepted extra", "unexpected word"),
        ("OK CODE applied state=a state=b", "repeated"),
        ("OK CODE applied verb=x", "bad or repeated"),
    ],
)
def test_malformed_answers_say_what_is_wrong(line: str, why: str) -> None:
    with pytest.raises(ReplyError, match=why):
        parse_reply(line)


@given(st.text(max_size=80))
def test_any_text_parses_or_raises_reply_error(text: str) -> None:
    try:
        reply = parse_reply(text)
    except ReplyError:
        return
    assert parse_reply(format_reply(reply)) == reply


word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_0123456789", min_size=1, max_size=10)
seconds = st.one_of(st.just(math.inf), st.integers(0, 10**9).map(lambda ms: ms / 1000))


@st.composite
def replies(draw: st.DrawFn) -> Reply:
    verb = draw(st.sampled_from(["CODE", "KEY", "STATUS", "POWER", "TIME"]))
    fields: list[tuple[str, object]] = []
    if verb in ("CODE", "KEY"):
        fields.append(("outcome", draw(word)))
    if verb == "TIME":
        fields.append(("time", draw(seconds)))
    if verb in ("CODE", "STATUS"):
        fields.append(("credit", draw(seconds)))
        fields.append(("limited", draw(st.integers(0, 1))))
    extra = draw(word.filter(lambda w: w not in {"verb", "error", "credit", "limited", "time"}))
    if draw(st.booleans()) and verb != "TIME":
        fields.append((f"x{extra}", draw(word)))
    return Reply(verb, tuple(fields))  # type: ignore[arg-type]


@given(replies())
def test_format_then_parse_is_identity(reply: Reply) -> None:
    assert parse_reply(format_reply(reply)) == reply
    assert diff(reply, reply) == ()


def test_diff_names_fields_and_ignores_informational_ones() -> None:
    a = parse_reply("OK CODE applied credit=10 state=enabled")
    b = parse_reply("OK CODE duplicate credit=10 state=enabled id=7")
    assert [(d.field, d.expected, d.got) for d in diff(a, b)] == [
        ("outcome", "applied", "duplicate"),
        ("id", None, "7"),
    ]
    assert diff(parse_reply("ERR x one wording"), parse_reply("ERR x another")) == ()
    assert diff(parse_reply("ERR x m"), parse_reply("ERR y m"))[0].field == "error"
    hello_a = parse_reply("OK HELLO acme-fw-2 line-protocol=1 protocol=nexus-full")
    hello_b = parse_reply("OK HELLO meter-sim line-protocol=1 protocol=nexus-full")
    assert diff(hello_a, hello_b) == ()
    assert diff(a, parse_reply("OK KEY accepted"))[0].field == "verb"
