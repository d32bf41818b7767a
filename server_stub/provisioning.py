"""Provisioning requests read from JSON: one handset (`POST /v1/provision`) or many at once
(`POST /v1/provision/many`, for a fleet set up together: one request instead of one each).

Pure functions of the parsed body: each refusal is a `RequestError` (400) that names the field,
and in a list of many the item (`handsets[3]: ...`, and `item` in the answer), so a client knows
what to fix; nothing is written for a request refused here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent_client.protocol import envelope

from .errors import RequestError

PROVISION_MANY_PATH = "/v1/provision/many"
PUBLIC_KEY_BYTES = 32
MAX_PROVISIONINGS = 256
"""Handsets in one `POST /v1/provision/many` at most (about 64 KiB of JSON)."""


@dataclass(frozen=True)
class Provisioning:
    """One handset asking to be registered for `agent` with the agent's `code`."""

    agent: str
    code: str
    public_key: bytes
    sync_key: bytes | None = None


def refused(status: int, code: str, detail: str, item: int | None) -> RequestError:
    """A refusal of one provisioning; of item `item` of many: named in its detail and answer."""
    if item is None:
        return RequestError(status, code, detail)
    return RequestError(status, code, f"handsets[{item}]: {detail}", {"item": item})


def provisioning(doc: dict[str, Any], item: int | None = None) -> Provisioning:
    """One provisioning request's fields (`item`: its place in a list of many)."""
    agent, code, key = (doc.get(k) for k in ("agent", "code", "public_key"))
    if not (isinstance(agent, str) and isinstance(code, str) and isinstance(key, str)):
        raise refused(400, "bad_field", "need string agent, code and public_key (hex)", item)
    try:
        public_key = bytes.fromhex(key)
    except ValueError as exc:
        raise refused(400, "bad_public_key", "public_key must be hex", item) from exc
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise refused(400, "bad_public_key", "an Ed25519 public key is 32 bytes", item)
    return Provisioning(agent, code, public_key, _sync_key(doc.get("sync_key"), item))


def provisionings(doc: dict[str, Any]) -> list[Provisioning]:
    """The handsets of a `POST /v1/provision/many` body: `{"handsets": [request, ...]}`, 1 to
    `MAX_PROVISIONINGS` of them, each as `POST /v1/provision` takes it, no public key twice."""
    items = doc.get("handsets")
    if not isinstance(items, list) or not items:
        raise RequestError(400, "bad_field", "need handsets: a non-empty list of provisionings")
    if len(items) > MAX_PROVISIONINGS:
        raise RequestError(
            400,
            "too_many_handsets",
            f"{len(items)} handsets in one request; at most {MAX_PROVISIONINGS}: split them",
        )
    made: list[Provisioning] = []
    keys: dict[bytes, int] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise refused(400, "bad_field", "must be a JSON object", i)
        one = provisioning(item, i)
        if one.public_key in keys:
            first = keys[one.public_key]
            raise refused(400, "duplicate_public_key", f"the public_key of handsets[{first}]", i)
        keys[one.public_key] = i
        made.append(one)
    return made


def _sync_key(value: object, item: int | None) -> bytes | None:
    """The optional `sync_key`: 32 bytes as hex, or absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise refused(400, "bad_field", "sync_key, when given, must be a string (hex)", item)
    digits = 2 * envelope.KEY_BYTES
    try:  # exactly that many hex digits: fromhex would also skip spaces
        key = bytes.fromhex(value) if len(value) == digits else b""
    except ValueError:
        key = b""
    if len(key) != envelope.KEY_BYTES:
        raise refused(400, "bad_sync_key", f"sync_key must be {digits} hex digits", item)
    return key
