"""Sync v2's request authentication: a 16-byte MAC and the time inside the body, no headers.

v1 spends ~150 bytes of every request on three headers (an 86-character Ed25519 signature in
base64, the handset, the time). v2 puts `[2, handset, ts_ms, tag]` (about 30 bytes of msgpack)
in front of the frame, where `tag` is HMAC-SHA256 truncated to 16 bytes under the handset's
**sync key**, over the domain, handset, time and the exact frame bytes that follow. The sync
key is derived from the handset's Ed25519 seed (so nothing new is stored on the handset) and
registered once with an Ed25519-signed request (`POST /v2/key`, v1 auth headers): the
identity stays the Ed25519 key; the MAC is what each exchange pays (docs/sync-protocol.md).

Pure functions; the platform parses the envelope before it inflates or decodes the frame.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

import msgpack

from .auth import Claim
from .errors import AuthError, FrameError
from .frames import MAX_BODY_BYTES, MAX_MS
from .ops import U32

VERSION = 2
TAG_BYTES = 16
KEY_BYTES = 32
SYNC_PATH = "/v2"
KEY_PATH = "/v2/key"
_DOMAIN = b"payg-sync-v2"


@functools.lru_cache(maxsize=16384)
def sync_key(seed: bytes) -> bytes:
    """The handset's sync key, derived from its Ed25519 seed (the platform learns it once);
    remembered for the last 16,384 seeds, as every exchange of a handset derives it again."""
    return hmac.new(seed, _DOMAIN + b" key", hashlib.sha256).digest()


def mac_bytes(handset: int, ts_ms: int, frame: bytes) -> bytes:
    """What the tag covers: domain, handset and time (decimal), then the frame's bytes."""
    return b"%s\n%d\n%d\n%s" % (_DOMAIN, handset, ts_ms, frame)


def tag(key: bytes, handset: int, ts_ms: int, frame: bytes) -> bytes:
    return hmac.new(key, mac_bytes(handset, ts_ms, frame), hashlib.sha256).digest()[:TAG_BYTES]


def seal(key: bytes, handset: int, ts_ms: int, frame: bytes) -> bytes:
    """The request body: envelope then frame."""
    return msgpack.packb([VERSION, handset, ts_ms, tag(key, handset, ts_ms, frame)]) + frame


def open_envelope(body: bytes) -> tuple[Claim, bytes]:
    """(who claims to send it, when, the tag) and the frame bytes, before anything is verified.
    FrameError for a body that is not an envelope; `unsupported_version` for another version."""
    if len(body) > MAX_BODY_BYTES:
        raise FrameError(f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}", code="too_large")
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=len(body) or 1, max_array_len=16)
    unpacker.feed(body)
    try:
        head = unpacker.unpack()
    except Exception as exc:  # OutOfData, FormatError, ValueError...
        raise FrameError(f"body does not start with an envelope: {type(exc).__name__}") from exc
    if not isinstance(head, list) or not head:
        raise FrameError("envelope is not an array [version, handset, ts_ms, tag]")
    version = head[0]
    if type(version) is not int or version != VERSION:
        raise FrameError(
            f"envelope version {version!r} is not {VERSION}", code="unsupported_version"
        )
    if len(head) < 4:
        raise AuthError("envelope lacks handset, time or tag", code="missing_auth")
    handset, ts_ms, mac = head[1:4]
    if type(handset) is not int or not 1 <= handset <= U32:
        raise AuthError(f"envelope handset {handset!r} outside 1..{U32}", code="missing_auth")
    if type(ts_ms) is not int or not 0 <= ts_ms <= MAX_MS:
        raise AuthError(f"envelope time {ts_ms!r} outside 0..{MAX_MS}", code="missing_auth")
    if not isinstance(mac, bytes) or len(mac) != TAG_BYTES:
        raise AuthError(f"envelope tag must be {TAG_BYTES} bytes", code="missing_auth")
    return Claim(handset, ts_ms, mac), body[unpacker.tell() :]


def check_tag(claim: Claim, key: bytes, frame: bytes) -> None:
    """Raise AuthError (`bad_signature`) unless `claim`'s tag is the key's over `frame`."""
    if not hmac.compare_digest(claim.signature, tag(key, claim.handset, claim.ts_ms, frame)):
        raise AuthError("tag does not verify under this handset's sync key")
