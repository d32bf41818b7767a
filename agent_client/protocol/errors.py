"""Errors of the wire contract, split by whose fault they are.

    ProtocolError            the bytes or values crossing the wire are wrong
    ├── FrameError           a frame does not decode (malformed msgpack, wrong types, too big)
    └── AuthError            a request's identity or freshness does not check out
    UsageError               the caller asked the sync core for something its state forbids

Every `ProtocolError` carries a stable machine-readable ``code`` that the server sends back in
its 4xx body and the client maps back to an exception.
"""

from __future__ import annotations

STATUS_OF_CODE = {"too_large": 413}
"""Codes whose HTTP status differs from their class's (docs/sync-protocol.md, Errors)."""


class ProtocolError(Exception):
    """The peer (or whoever produced these bytes) broke the wire contract."""

    code = "protocol_error"
    status = 400

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.status = STATUS_OF_CODE.get(self.code, self.status)


class FrameError(ProtocolError):
    """A frame could not be decoded or failed validation; nothing in it may be used."""

    code = "malformed_frame"


class AuthError(ProtocolError):
    """Signature, key, timestamp or replay check failed."""

    code = "bad_signature"
    status = 401


class UsageError(Exception):
    """Our own caller misused the sync core (a bug on this side, not the peer's)."""
