"""Request signing: Ed25519 over method, path, body digest, handset and a millisecond timestamp.

Pure functions plus a `Stamper` that turns the handset's clock into server-time timestamps that
only ever increase, so the server can refuse any request not newer than the last one it accepted
(a replay) or too far from its own clock (stale), without keeping a store of seen signatures.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import AuthError
from .ops import U32

HANDSET_HEADER = "X-Handset"
TIME_HEADER = "X-Time"
SIG_HEADER = "X-Sig"
MAX_SKEW_MS = 300_000
_DOMAIN = b"payg-sync-v1"


def signing_bytes(method: str, path: str, body: bytes, handset: int, ts_ms: int) -> bytes:
    digest = hashlib.sha256(body).hexdigest().encode()
    parts = [
        _DOMAIN,
        method.upper().encode(),
        path.encode(),
        digest,
        b"%d" % handset,
        b"%d" % ts_ms,
    ]
    return b"\n".join(parts)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise AuthError(f"signature is not base64url: {exc}") from exc


class HandsetKey:
    """A handset's Ed25519 key pair."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self._seed: bytes | None = None

    @classmethod
    def generate(cls) -> HandsetKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> HandsetKey:
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def seed(self) -> bytes:
        """The 32-byte private seed (read once from the key: every v2 exchange needs it)."""
        if self._seed is None:
            self._seed = self._private.private_bytes_raw()
        return self._seed

    @property
    def public(self) -> bytes:
        return self._private.public_key().public_bytes_raw()

    def headers(
        self, method: str, path: str, body: bytes, handset: int, ts_ms: int
    ) -> dict[str, str]:
        sig = self._private.sign(signing_bytes(method, path, body, handset, ts_ms))
        return {HANDSET_HEADER: str(handset), TIME_HEADER: str(ts_ms), SIG_HEADER: _b64(sig)}


@dataclass(frozen=True)
class Claim:
    """What a request's auth headers say, before they are verified."""

    handset: int
    ts_ms: int
    signature: bytes


def parse_claim(headers: Mapping[str, str]) -> Claim:
    try:
        handset_text, ts_text, sig_text = (
            headers[h] for h in (HANDSET_HEADER, TIME_HEADER, SIG_HEADER)
        )
    except KeyError as exc:
        raise AuthError(f"missing header {exc.args[0]}", code="missing_auth") from exc
    if not (
        handset_text.isascii()
        and handset_text.isdigit()
        and ts_text.isascii()
        and ts_text.isdigit()
    ):
        raise AuthError("handset and time headers must be decimal integers", code="missing_auth")
    if len(handset_text) > 10 or len(ts_text) > 16:
        raise AuthError("handset or time header too long", code="missing_auth")
    handset = int(handset_text)
    if not 1 <= handset <= U32:
        raise AuthError(f"handset {handset} outside 1..{U32}", code="missing_auth")
    signature = _unb64(sig_text)
    if len(signature) != 64:
        raise AuthError("signature must be 64 bytes")
    return Claim(handset, int(ts_text), signature)


def verify(
    claim: Claim, public: bytes, method: str, path: str, body: bytes, *, now_ms: int, last_ms: int
) -> None:
    """Raise AuthError unless the claim is signed by `public`, fresh, and newer than `last_ms`."""
    try:
        key = Ed25519PublicKey.from_public_bytes(public)
        key.verify(claim.signature, signing_bytes(method, path, body, claim.handset, claim.ts_ms))
    except (InvalidSignature, ValueError) as exc:
        raise AuthError("signature does not verify") from exc
    check_fresh(claim, now_ms=now_ms, last_ms=last_ms)


def check_fresh(claim: Claim, *, now_ms: int, last_ms: int) -> None:
    """Raise AuthError unless the (authenticated) claim's time is within the skew window of
    `now_ms` and newer than `last_ms`, the last one accepted from this handset."""
    if abs(claim.ts_ms - now_ms) > MAX_SKEW_MS:
        raise AuthError(
            f"timestamp {claim.ts_ms} is {claim.ts_ms - now_ms} ms from server time",
            code="stale_timestamp",
        )
    if claim.ts_ms <= last_ms:
        raise AuthError(
            "timestamp not newer than the last accepted request", code="replayed_request"
        )


class Stamper:
    """Server-time timestamps from the handset clock: offset-corrected and strictly increasing.

    The offset is estimated from each response's server time, taking the midpoint of the
    exchange; the sample with the shortest round trip among recent ones wins (least queueing).
    """

    def __init__(self, offset_ms: int = 0, last_ms: int = 0, window: int = 8) -> None:
        self.offset_ms = offset_ms
        self.last_ms = last_ms
        self._before = last_ms
        self._samples: list[tuple[int, int]] = []  # (round trip, offset)
        self._window = window

    def stamp(self, local_ms: int) -> int:
        self._before = self.last_ms
        self.last_ms = max(local_ms + self.offset_ms, self.last_ms + 1)
        return self.last_ms

    def refused_as_stale(self, ts_ms: int, server_last_ms: int | None = None) -> None:
        """The server refused `ts_ms` as outside its window, so it never became the last one
        accepted: forget it (or a clock that ran fast would keep every later stamp too high).
        The server's own record of the last accepted stamp, when it sends one, is the truth."""
        if server_last_ms is not None:
            self.last_ms = server_last_ms
        elif ts_ms == self.last_ms:
            self.last_ms = self._before

    def observe(self, sent_local_ms: int, recv_local_ms: int, server_ms: int) -> int:
        rtt = max(0, recv_local_ms - sent_local_ms)
        offset = server_ms - (sent_local_ms + recv_local_ms) // 2
        self._samples = [*self._samples[-(self._window - 1) :], (rtt, offset)]
        self.offset_ms = min(self._samples)[1]
        return self.offset_ms
