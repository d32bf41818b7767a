"""HTTP/1.1 for one request at a time on a kept-alive connection (sans-I/O, as h11 is).

`encode_request` makes the bytes of a request; `ResponseParser` takes the bytes the connection
brings, in pieces of any size, and gives back the response once it is whole. Everything a
handset's exchange needs and nothing more: a body framed by `Content-Length`, by chunked
transfer coding (trailers read and dropped), or by the server closing the connection;
informational 1xx answers skipped; no pipelining. No clocks, no sockets: the shell
(`agent_client.transport.Http1Transport`) owns those.

A response that breaks the grammar or the size limits raises `HttpProtocolError` (the server's
or the link's fault: the transport treats it as a failed exchange, safe to retry).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .errors import HttpProtocolError

__all__ = [
    "MAX_BODY",
    "MAX_HEAD",
    "HttpProtocolError",
    "Response",
    "ResponseParser",
    "encode_request",
]

MAX_HEAD = 64 * 1024
"""Status line and headers of one response, at most (aiohttp's client allows 8190 per line)."""
MAX_BODY = 32 * 1024 * 1024
"""A response body, at most: far beyond any sync answer (the platform's frames are kilobytes)."""

_TOKEN_BYTES = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_NO_BODY = frozenset({204, 304})


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    """In order as received; names lower-cased."""
    body: bytes
    keep_alive: bool
    """Whether the connection may carry the next request."""

    def header(self, name: str) -> str | None:
        """The last value of header `name` (any case), if present."""
        wanted = name.lower()
        found = None
        for key, value in self.headers:
            if key == wanted:
                found = value
        return found


def _is_token(name: bytes) -> bool:
    """Whether `name` is a non-empty HTTP token (one C call: this runs per header)."""
    return bool(name) and not name.translate(None, _TOKEN_BYTES)


def _check_token(name: str) -> None:
    if not _is_token(name.encode("latin-1", "replace")):
        raise ValueError(f"header name {name!r} is not an HTTP token")


def encode_request(
    method: str, host: str, path: str, headers: Mapping[str, str], body: bytes
) -> bytes:
    """The bytes of one request: `Host` and `Content-Length` first, then `headers` as given.

    Raises ValueError for a method, path or header that would break the request's framing
    (a space or line break where none may be, a name that is not a token): the caller's fault.
    """
    _check_token(method)
    if not path.startswith("/") or any(c in path for c in " \r\n\t"):
        raise ValueError(f"path {path!r} must start with / and hold no space or line break")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    for name, value in headers.items():
        _check_token(name)
        if name.lower() in ("host", "content-length", "transfer-encoding"):
            raise ValueError(f"header {name!r} is the transport's to set")
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError(f"header {name!r} holds a line break or NUL: {value!r}")
        lines.append(f"{name}: {value}")
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValueError(f"request head is not latin-1: {exc}") from None
    return head + body


class ResponseParser:
    """Reads one response at a time from a connection's bytes (see the module docstring).

    `feed(data)` returns the response once it is complete, else None; `feed_eof()` says the
    server closed the connection and returns the response that the close completed (a body
    read to the end of the connection), else raises. After a response, the parser reads the
    next one (bytes past a response are kept; a server sends none unasked, so a caller that
    sees `pending` after a response should not reuse the connection).
    """

    __slots__ = (
        "_body",
        "_buf",
        "_chunk_left",
        "_chunked",
        "_head",
        "_keep_alive",
        "_length",
        "_state",
    )

    def __init__(self) -> None:
        self._buf = bytearray()
        self._reset()

    def _reset(self) -> None:
        self._state = "head"  # head | length | chunk_size | chunk_data | chunk_crlf | trailer | eof
        self._head: tuple[int, str, tuple[tuple[str, str], ...]] | None = None
        self._body = bytearray()
        self._length = 0
        self._chunk_left = 0
        self._chunked = False
        self._keep_alive = True

    @property
    def pending(self) -> int:
        """Bytes received and not yet part of a finished response."""
        return len(self._buf) + len(self._body)

    def feed(self, data: bytes) -> Response | None:
        self._buf += data
        while True:
            state = self._state
            if state == "head":
                if not self._read_head():
                    return None
            elif state == "length":
                take = min(self._length - len(self._body), len(self._buf))
                self._body += self._buf[:take]
                del self._buf[:take]
                if len(self._body) < self._length:
                    return None
                return self._done()
            elif state == "chunk_size":
                if not self._read_chunk_size():
                    return None
            elif state == "chunk_data":
                take = min(self._chunk_left, len(self._buf))
                self._body += self._buf[:take]
                del self._buf[:take]
                self._chunk_left -= take
                if self._chunk_left:
                    return None
                self._state = "chunk_crlf"
            elif state == "chunk_crlf":
                if len(self._buf) < 2:
                    return None
                if self._buf[:2] != b"\r\n":
                    raise HttpProtocolError("a chunk does not end with CRLF")
                del self._buf[:2]
                self._state = "chunk_size"
            elif state == "trailer":
                line = self._line()
                if line is None:
                    return None
                if not line:
                    return self._done()
            else:  # eof: the body runs to the end of the connection
                self._body += self._buf
                self._buf.clear()
                self._check_body_size()
                return None

    def feed_eof(self) -> Response:
        """The server closed the connection: the response it completed, or HttpProtocolError."""
        if self._state == "eof":
            return self._done()
        if self._state == "head" and not self._buf:
            raise HttpProtocolError("the server closed the connection before answering")
        raise HttpProtocolError(f"the server closed the connection mid-response ({self._state})")

    def _line(self) -> bytes | None:
        end = self._buf.find(b"\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEAD:
                raise HttpProtocolError(f"a line of the response is over {MAX_HEAD} bytes")
            return None
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        return line

    def _read_head(self) -> bool:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEAD:
                raise HttpProtocolError(f"the response head is over {MAX_HEAD} bytes")
            return False
        if end > MAX_HEAD:
            raise HttpProtocolError(f"the response head is over {MAX_HEAD} bytes")
        lines = bytes(self._buf[:end]).split(b"\r\n")
        del self._buf[: end + 4]
        status, reason, minor = _status_line(lines[0])
        headers = tuple(_header(line) for line in lines[1:])
        if 100 <= status < 200:
            if status == 101:
                raise HttpProtocolError("the server switched protocols (101), which was not asked")
            return True  # informational: the real answer follows
        values: dict[str, list[str]] = {}
        for name, value in headers:
            values.setdefault(name, []).append(value)
        connection = {t.strip().lower() for v in values.get("connection", ()) for t in v.split(",")}
        self._keep_alive = "close" not in connection and (minor == 1 or "keep-alive" in connection)
        self._head = (status, reason, headers)
        coding = values.get("transfer-encoding")
        lengths = values.get("content-length")
        if status in _NO_BODY:
            self._state = "length"
            self._length = 0
        elif coding is not None:
            codings = [t.strip().lower() for v in coding for t in v.split(",")]
            if codings[-1] != "chunked":
                self._state = "eof"  # framed by the close (RFC 9112 6.3)
                self._keep_alive = False
            elif codings != ["chunked"]:
                raise HttpProtocolError(f"transfer coding {', '.join(codings)} is not supported")
            else:
                self._state = "chunk_size"
                self._chunked = True
        elif lengths is not None:
            if len(set(lengths)) != 1 or not lengths[0].isdigit() or not lengths[0].isascii():
                raise HttpProtocolError(f"bad Content-Length {', '.join(lengths)!r}")
            self._length = int(lengths[0])
            if self._length > MAX_BODY:
                raise HttpProtocolError(f"Content-Length {self._length} is over {MAX_BODY}")
            self._state = "length"
        else:
            self._state = "eof"
            self._keep_alive = False
        return True

    def _read_chunk_size(self) -> bool:
        line = self._line()
        if line is None:
            return False
        size = line.split(b";", 1)[0].strip()
        if not size or any(b not in b"0123456789abcdefABCDEF" for b in size) or len(size) > 16:
            raise HttpProtocolError(f"bad chunk size {line[:40]!r}")
        self._chunk_left = int(size, 16)
        if self._chunk_left == 0:
            self._state = "trailer"
            return True
        if len(self._body) + self._chunk_left > MAX_BODY:
            raise HttpProtocolError(f"a chunked body over {MAX_BODY} bytes")
        self._state = "chunk_data"
        return True

    def _check_body_size(self) -> None:
        if len(self._body) > MAX_BODY:
            raise HttpProtocolError(f"a response body over {MAX_BODY} bytes")

    def _done(self) -> Response:
        assert self._head is not None
        status, reason, headers = self._head
        response = Response(status, reason, headers, bytes(self._body), self._keep_alive)
        self._reset()
        return response


def _status_line(line: bytes) -> tuple[int, str, int]:
    parts = line.split(b" ", 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise HttpProtocolError(f"not an HTTP/1.x status line: {line[:60]!r}")
    code = parts[1]
    if len(code) != 3 or not code.isdigit():
        raise HttpProtocolError(f"bad status code {code[:10]!r}")
    reason = parts[2].decode("latin-1") if len(parts) == 3 else ""
    return int(code), reason, 1 if parts[0] == b"HTTP/1.1" else 0


def _header(line: bytes) -> tuple[str, str]:
    name, colon, value = line.partition(b":")
    if not colon or not _is_token(name):
        raise HttpProtocolError(f"malformed header line {line[:60]!r}")
    return name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")
