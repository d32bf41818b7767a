"""How the kit reaches a platform: the HTTP framing and the request authentication of sync v1.

This is the only module of the kit that knows paths, header names, content types and how a
request is signed. Clauses say what they send (a body, which handset signs it, at what time,
forged how) and read what came back (`Answer`); a protocol version that changes the framing
or the auth headers changes this module (and the codecs in `agent_client.protocol`), not the
clauses (docs/sync-protocol.md, Implementing a platform).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import aiohttp

from agent_client.protocol.auth import HandsetKey

SYNC_PATH = "/v1/sync"
PROVISION_PATH = "/v1/provision"
MSGPACK = "application/msgpack"
JSON = "application/json"


class Forgery(Enum):
    """How a request's authentication is deliberately wrong (auth clauses)."""

    NONE = "none"
    MISSING = "missing"  # no auth headers at all
    WRONG_KEY = "wrong_key"  # signed by a key the platform never saw
    OTHER_BODY = "other_body"  # a valid signature over a different body


@dataclass(frozen=True)
class Auth:
    """Who signs a sync request and with which timestamp (server time, milliseconds)."""

    handset: int
    key: HandsetKey
    ts_ms: int
    forgery: Forgery = Forgery.NONE


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes

    def json(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None when it is not one."""
        try:
            doc = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None
        return doc if isinstance(doc, dict) else None

    def refusal(self) -> tuple[str, str]:
        """(error code, detail) of a refusal body; ("?", raw text) when it is not ours."""
        doc = self.json() or {}
        return str(doc.get("error", "?")), str(doc.get("detail", self.body[:120]))


class Wire(Protocol):
    """What the clauses send through: provisioning and sync, in intents, not headers."""

    async def provision(self, agent: str, code: str, public_key: bytes) -> Answer: ...

    async def provision_raw(self, body: bytes) -> Answer:
        """A provisioning request with this exact body (bad-input clauses)."""
        ...

    async def sync(self, body: bytes, auth: Auth) -> Answer: ...

    async def close(self) -> None: ...


def provision_body(agent: str, code: str, public_key: str) -> bytes:
    """The provisioning request's body; `public_key` as sent (hex, or deliberately not)."""
    return json.dumps({"agent": agent, "code": code, "public_key": public_key}).encode()


class HttpWire:
    """Sync v1 over HTTP/1.1 on one kept-alive connection (aiohttp), bounded per request."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1),
                timeout=self._timeout,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            )
        return self._session

    async def _post(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        async with self._client().post(self.base_url + path, data=body, headers=headers) as r:
            return Answer(r.status, r.content_type, await r.read())

    async def provision(self, agent: str, code: str, public_key: bytes) -> Answer:
        return await self.provision_raw(provision_body(agent, code, public_key.hex()))

    async def provision_raw(self, body: bytes) -> Answer:
        return await self._post(PROVISION_PATH, body, {"Content-Type": JSON})

    async def sync(self, body: bytes, auth: Auth) -> Answer:
        return await self._post(SYNC_PATH, body, sign(body, auth))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def sign(body: bytes, auth: Auth) -> dict[str, str]:
    """The v1 auth headers for `body`, forged as `auth` asks."""
    if auth.forgery is Forgery.MISSING:
        return {}
    key = HandsetKey.from_seed(b"\x5a" * 32) if auth.forgery is Forgery.WRONG_KEY else auth.key
    signed = body + b"\x00" if auth.forgery is Forgery.OTHER_BODY else body
    return key.headers("POST", SYNC_PATH, signed, auth.handset, auth.ts_ms)
