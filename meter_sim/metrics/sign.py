"""OpenPAYGO Metrics signatures: SipHash-2-4 over text, written as the reference writes it.

Every hash is `format(siphash24(key, text.encode()), "x")`: lowercase hex with no zero
padding, so a hash may be shorter than 16 characters. Values join with no separator; JSON is
compact (`,` and `:`), in insertion order, ASCII-escaped, as Python's `json.dumps` writes it,
because the other side re-serialises what it parsed and hashes that. Fields that are absent
or falsy (0, "", [], {}) are left out of the hashed text, as the reference does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from meter_sim.errors import ConfigError
from meter_sim.siphash import siphash24

METHODS = ("sa", "ta", "ca", "da", "ra")
"""Simple, timestamp, counter, data, recursive data (the recommended one)."""


def compact(value: Any) -> str:
    """The JSON text both sides hash: no spaces, insertion order, ASCII only."""
    return json.dumps(value, separators=(",", ":"))


def hash_hex(key: bytes, text: str) -> str:
    return format(siphash24(key, text.encode()), "x")


def _stamp(value: int | None) -> str:
    return str(value) if value else ""


def request_auth(
    method: str,
    key: bytes,
    serial: str,
    *,
    timestamp: int | None,
    request_count: int | None,
    data: Mapping[str, Any] | Sequence[Any],
    history: Sequence[Mapping[str, Any] | Sequence[Any]],
) -> str:
    """The `auth` value of a request: the method's two letters, then the hash.

    `data` and `history` are what the request carries (objects in the simple form, arrays in
    the condensed one): condensed requests are signed over their arrays.
    """
    head = _stamp(timestamp) + _stamp(request_count)
    if method == "sa":
        digest = hash_hex(key, serial)
    elif method in ("ta", "ca"):
        stamp = timestamp if method == "ta" else request_count
        if not stamp:
            raise ConfigError(f"{method} auth needs a {'timestamp' if method == 'ta' else 'count'}")
        digest = hash_hex(key, serial + str(stamp))
    elif method == "da":
        text = serial + head
        text += compact(data) if data else ""
        text += compact(history) if history else ""
        digest = hash_hex(key, text)
    elif method == "ra":
        digest = hash_hex(key, serial)
        for part in (_stamp(timestamp), _stamp(request_count)):
            if part:
                digest = hash_hex(key, digest + part)
        digest = hash_hex(key, digest + compact(data))
        for row in history:
            digest = hash_hex(key, digest + compact(row))
    else:
        raise ConfigError(f"auth method must be one of {', '.join(METHODS)}, got {method!r}")
    return method + digest


ANSWER_FIELDS = ("auts", "asl")
ANSWER_JSON_FIELDS = ("tkl", "st", "ed")


def answer_auth(
    key: bytes,
    serial: str,
    answer: Mapping[str, Any],
    *,
    timestamp: int | None,
    request_count: int | None,
) -> str:
    """The `a` an answer (condensed keys) must carry: `da` over the request's serial, its
    timestamp and count, then the answer's time fields and its JSON fields, truthy ones only."""
    text = serial + _stamp(timestamp) + _stamp(request_count)
    for name in ANSWER_FIELDS:
        if answer.get(name):
            text += str(answer[name])
    for name in ANSWER_JSON_FIELDS:
        if answer.get(name):
            text += compact(answer[name])
    return "da" + hash_hex(key, text)
