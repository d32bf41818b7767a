"""How the kit reaches a platform: the HTTP framing and the request authentication of sync v2.

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
import msgpack

from agent_client.protocol import envelope
from agent_client.protocol.auth import HandsetKey

SYNC_PATH = envelope.SYNC_PATH
PROVISION_PATH = "/v1/provision"
MSGPACK = "application/msgpack"
JSON = "application/json"


class Forgery(Enum):
    """How a request's authentication is deliberately wrong (auth clauses)."""

    NONE = "none"
    MISSING = "missing"  # an envelope without its tag
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
    """Sync v2 over HTTP/1.1 on one kept-alive connection (aiohttp), bounded per request.

    Each handset's sync key is registered (Ed25519-signed, `POST /v2/key`) before its first
    sync, stamped just below that sync's time so the sync stays the newer request."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._keyed: set[tuple[int, bytes]] = set()

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
            content_type = r.content_type
            if path == SYNC_PATH and r.status == 200 and "Content-Type" not in r.headers:
                content_type = MSGPACK  # v2 answers a frame without a Content-Type
            return Answer(r.status, content_type, await r.read())

    async def provision(self, agent: str, code: str, public_key: bytes) -> Answer:
        return await self.provision_raw(provision_body(agent, code, public_key.hex()))

    async def provision_raw(self, body: bytes) -> Answer:
        return await self._post(PROVISION_PATH, body, {"Content-Type": JSON})

    async def sync(self, body: bytes, auth: Auth) -> Answer:
        mine = (auth.handset, auth.key.public)
        if mine not in self._keyed and auth.forgery is Forgery.NONE and auth.ts_ms > 1:
            key = envelope.sync_key(auth.key.seed)
            headers = auth.key.headers("POST", envelope.KEY_PATH, key, auth.handset, auth.ts_ms - 1)
            if (await self._post(envelope.KEY_PATH, key, headers)).status == 201:
                self._keyed.add(mine)  # otherwise the sync itself shows what is wrong
        return await self._post(SYNC_PATH, seal(body, auth), {})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def seal(body: bytes, auth: Auth) -> bytes:
    """The v2 request body around the frame `body`, forged as `auth` asks."""
    if auth.forgery is Forgery.MISSING:
        return msgpack.packb([envelope.VERSION, auth.handset, auth.ts_ms]) + body
    seed = b"\x5a" * 32 if auth.forgery is Forgery.WRONG_KEY else auth.key.seed
    mac = envelope.tag(
        envelope.sync_key(seed),
        auth.handset,
        auth.ts_ms,
        body + b"\x00" if auth.forgery is Forgery.OTHER_BODY else body,
    )
    return msgpack.packb([envelope.VERSION, auth.handset, auth.ts_ms, mac]) + body
