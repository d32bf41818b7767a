"""The HTTP/1.1 codec: responses of every framing read back whole from pieces of any size;
any bytes at all give a response or a clear HttpProtocolError, never another exception; a
request whose head would break framing is refused before a byte is sent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_client.errors import HttpProtocolError
from agent_client.http1 import MAX_HEAD, Response, ResponseParser, encode_request

TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=12)
VALUE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30)
FRAMING = st.sampled_from(["length", "chunked", "close"])


@st.composite
def responses(draw: st.DrawFn) -> tuple[bytes, int, list[tuple[str, str]], bytes, str]:
    status = draw(st.integers(200, 599).filter(lambda s: s not in (204, 304)))
    extra = draw(
        st.lists(
            st.tuples(TOKEN, VALUE).filter(
                lambda h: h[0] not in ("content-length", "transfer-encoding", "connection")
            ),
            max_size=5,
        )
    )
    body = draw(st.binary(max_size=3000))
    framing = draw(FRAMING)
    head = [f"HTTP/1.1 {status} Some Reason"] + [f"{k}: {v}" for k, v in extra]
    # an informational answer first, sometimes: to be skipped
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" if draw(st.booleans()) else b""
    if framing == "length":
        head.append(f"Content-Length: {len(body)}")
        payload = body
    elif framing == "chunked":
        head.append("Transfer-Encoding: chunked")
        sizes = draw(st.lists(st.integers(1, 700), max_size=10))
        parts, at = [], 0
        for size in sizes:
            piece = body[at : at + size]
            if not piece:
                break
            ext = ";ext=1" if draw(st.booleans()) else ""
            parts.append(f"{len(piece):x}{ext}\r\n".encode() + piece + b"\r\n")
            at += len(piece)
        if at < len(body):
            rest = body[at:]
            parts.append(f"{len(rest):X}\r\n".encode() + rest + b"\r\n")
        trailer = b"X-Trailer: 1\r\n" if draw(st.booleans()) else b""
        payload = b"".join(parts) + b"0\r\n" + trailer + b"\r\n"
    else:
        payload = body
    wire = interim + ("\r\n".join(head) + "\r\n\r\n").encode() + payload
    return wire, status, [(k, v) for k, v in extra], body, framing


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in [*points, len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


@settings(max_examples=150, deadline=None)
@given(responses(), st.lists(st.integers(0, 10_000), max_size=12))
def test_any_framing_in_any_pieces_reads_back_the_response(
    drawn: tuple[bytes, int, list[tuple[str, str]], bytes, str], cuts: list[int]
) -> None:
    wire, status, extra, body, framing = drawn
    parser = ResponseParser()
    done: list[Response] = []
    for piece in split(wire, cuts):
        got = parser.feed(piece)
        if got is not None:
            done.append(got)
    if framing == "close":
        assert done == []
        done.append(parser.feed_eof())
    assert len(done) == 1
    response = done[0]
    assert (response.status, response.reason, response.body) == (status, "Some Reason", body)
    assert [h for h in response.headers if h[0] in {k for k, _ in extra}] == extra
    assert response.keep_alive is (framing != "close")
    assert parser.pending == 0


@settings(max_examples=250, deadline=None)
@given(st.binary(max_size=400), st.booleans())
def test_any_bytes_give_a_response_or_a_protocol_error(data: bytes, eof: bool) -> None:
    parser = ResponseParser()
    try:
        parser.feed(data)
        if eof:
            parser.feed_eof()
    except HttpProtocolError:
        pass


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(
        [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ]
    ),
    st.integers(1, 40),
)
def test_malformed_responses_are_refused_however_they_arrive(wire: bytes, step: int) -> None:
    def read() -> None:
        parser = ResponseParser()
        for at in range(0, len(wire), step):
            parser.feed(wire[at : at + step])
        parser.feed_eof()

    with pytest.raises(HttpProtocolError):
        read()


def test_an_endless_head_is_refused_once_over_the_limit() -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\n")
    for _ in range(MAX_HEAD // 1000):
        parser.feed(b"x-filler: " + b"a" * 990 + b"\r\n")
    with pytest.raises(HttpProtocolError, match="over"):
        parser.feed(b"x-filler: " + b"a" * 2000 + b"\r\n")


def test_a_close_before_or_during_an_answer_is_an_error() -> None:
    with pytest.raises(HttpProtocolError, match="before answering"):
        ResponseParser().feed_eof()
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(HttpProtocolError, match="mid-response"):
        parser.feed_eof()


@pytest.mark.parametrize(
    ("head", "keep"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n", True),
        (b"HTTP/1.1 204 No Content\r\n", True),
    ],
)
def test_keep_alive_follows_the_version_and_connection_header(head: bytes, keep: bool) -> None:
    response = ResponseParser().feed(head + b"\r\n")
    assert response is not None
    assert response.keep_alive is keep
    assert response.body == b""


def test_two_responses_in_a_row_on_one_connection() -> None:
    parser = ResponseParser()
    first = parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 404 N")
    assert first is not None
    assert first.body == b"a"
    assert parser.pending > 0  # the caller sees bytes it did not ask for yet
    second = parser.feed(b"ot Found\r\nContent-Length: 2\r\nX-A: 1\r\nx-a: 2\r\n\r\nno")
    assert second is not None
    assert (second.status, second.body) == (404, b"no")
    assert second.header("X-A") == "2"


def test_a_request_is_framed_by_its_length_and_carries_only_what_is_given() -> None:
    wire = encode_request("POST", "127.0.0.1:8080", "/v2/sync", {"X-Handset": "7"}, b"\x00body")
    assert wire == (
        b"POST /v2/sync HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Length: 5\r\n"
        b"X-Handset: 7\r\n\r\n\x00body"
    )


@pytest.mark.parametrize(
    ("method", "path", "headers", "match"),
    [
        ("POST", "/x", {"X-A": "1\r\nX-Injected: 1"}, "line break"),
        ("POST", "/x", {"Bad Name": "1"}, "not an HTTP token"),
        ("POST", "/x", {"Content-Length": "9"}, "transport's to set"),
        ("POST", "/x y", {}, "must start with /"),
        ("POST", "x", {}, "must start with /"),
        ("PO ST", "/x", {}, "not an HTTP token"),
        ("POST", "/x", {"X-A": "\u20ac"}, "not latin-1"),
    ],
)
def test_a_request_that_would_break_framing_is_refused(
    method: str, path: str, headers: dict[str, str], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        encode_request(method, "h", path, headers, b"")
