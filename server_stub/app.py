"""The aiohttp application: ``POST /v1/sync`` (the compact contract), ``POST /v1/provision``,
``POST /v1/ops`` (one JSON operation per request, for naive REST clients), ``GET /v1/health``.

Handlers are thin: read the bounded body, verify the signature and decode the frame (pure, from
`agent_client.protocol`), then run the whole exchange as one transaction on the store's own
thread. Every refusal is a 4xx JSON body ``{"error": code, "detail": ..., "server_ms": ...}``
with nothing written; the server time lets a handset with a wrong clock correct itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from agent_client.protocol import auth
from agent_client.protocol.errors import AuthError, FrameError, ProtocolError
from agent_client.protocol.frames import MAX_BODY_BYTES, decode_uplink, encode_downlink
from agent_client.protocol.ops import SCHEMAS, Kind, Operation

from .errors import RequestError
from .store import Store

T = TypeVar("T")
Clock = Callable[[], float]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STORE = web.AppKey("store", Store)
RUNNER = web.AppKey("runner", ThreadPoolExecutor)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
STATS = web.AppKey("stats", dict[str, int])

SYNC_PATH = "/v1/sync"
OPS_PATH = "/v1/ops"


def now_ms(app: web.Application) -> int:
    return int(app[CLOCK]() * 1000)


async def run(app: web.Application, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(store, *args)` on the store thread: one request's transaction at a time."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(app[RUNNER], partial(fn, app[STORE], *args))


def refusal(
    app: web.Application, status: int, code: str, detail: str, **extra: int
) -> web.Response:
    body: dict[str, object] = {"error": code, "detail": detail, "server_ms": now_ms(app), **extra}
    return web.json_response(body, status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every refusal to a coded 4xx; count requests for the wire benchmark."""
    app = request.app
    app[STATS]["requests"] += 1
    try:
        return await handler(request)
    except RequestError as exc:
        return refusal(app, exc.status, exc.code, exc.detail, **exc.extra)
    except ProtocolError as exc:
        return refusal(app, exc.status, exc.code, exc.detail)
    except web.HTTPRequestEntityTooLarge:
        return refusal(app, 413, "too_large", f"body exceeds {MAX_BODY_BYTES} bytes")
    except web.HTTPException as exc:
        if exc.status >= 500:
            raise
        return refusal(app, exc.status, exc.reason.lower().replace(" ", "_"), exc.text or "")


async def signed_body(request: web.Request) -> tuple[auth.Claim, bytes]:
    body = await request.read()
    claim = auth.parse_claim(request.headers)
    handset = await run(request.app, Store.handset, claim.handset)
    try:
        auth.verify(
            claim,
            handset.public_key,
            request.method,
            request.path,
            body,
            now_ms=now_ms(request.app),
            last_ms=handset.last_ms,
        )
    except AuthError as exc:
        if exc.code not in ("stale_timestamp", "replayed_request"):
            raise
        # the signature held: tell this handset the last stamp we accepted, so it can recover
        raise RequestError(exc.status, exc.code, exc.detail, {"last_ms": handset.last_ms}) from exc
    return claim, body


async def sync(request: web.Request) -> web.Response:
    claim, body = await signed_body(request)
    frame = decode_uplink(body)
    if frame.handset != claim.handset:
        raise RequestError(403, "handset_mismatch", "frame handset differs from the signer")
    reply = await run(
        request.app, Store.exchange, claim, frame.ops, frame.cursor, now_ms(request.app)
    )
    return web.Response(body=encode_downlink(reply), content_type="application/msgpack")


async def provision(request: web.Request) -> web.Response:
    doc = await json_body(request)
    agent, code, key = (doc.get(k) for k in ("agent", "code", "public_key"))
    if not (isinstance(agent, str) and isinstance(code, str) and isinstance(key, str)):
        raise RequestError(400, "bad_field", "need string agent, code and public_key (hex)")
    try:
        public_key = bytes.fromhex(key)
    except ValueError as exc:
        raise RequestError(400, "bad_public_key", "public_key must be hex") from exc
    handset = await run(request.app, Store.provision, agent, code, public_key, now_ms(request.app))
    return web.json_response({"handset": handset, "server_ms": now_ms(request.app)}, status=201)


async def json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, "malformed_json", str(exc)) from exc
    if not isinstance(doc, dict):
        raise RequestError(400, "malformed_json", "body must be a JSON object")
    return doc


async def one_op(request: web.Request) -> web.Response:
    """The naive REST shape: one operation per JSON request, named fields, keycodes inline."""
    claim, raw = await signed_body(request)
    try:
        doc = json.loads(raw)
        kind = Kind[str(doc["type"]).upper()]
        values = [doc["fields"][field.name] for field in SCHEMAS[kind]]
        op = Operation.make(doc["seq"], kind, doc["recorded_at"], *values)
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise FrameError(f"not a JSON operation: {exc}", code="malformed_json") from exc
    reply = await run(request.app, Store.exchange, claim, [op], 2**53, now_ms(request.app))
    if reply.rejected:
        reason = reply.rejected[0][1].name.lower()
        return refusal(request.app, 422, reason, f"operation {op.seq} refused: {reason}")
    keycodes = await run(request.app, Store.keycodes_for_op, claim.handset, op.seq)
    return web.json_response({"seq": op.seq, "status": "acknowledged", "keycodes": keycodes})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "server_ms": now_ms(request.app)})


def create_app(db_path: str | Path, *, clock: Clock = time.time) -> web.Application:
    app = web.Application(middlewares=[errors], client_max_size=MAX_BODY_BYTES)
    app[CLOCK] = clock
    app[STATS] = {"requests": 0}
    runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
    app[RUNNER] = runner

    async def open_store(app: web.Application) -> None:
        app[STORE] = await asyncio.get_running_loop().run_in_executor(runner, Store.open, db_path)

    async def close_store(app: web.Application) -> None:
        await asyncio.get_running_loop().run_in_executor(runner, app[STORE].close)
        runner.shutdown(wait=True)

    app.on_startup.append(open_store)
    app.on_cleanup.append(close_store)
    app.router.add_post(SYNC_PATH, sync)
    app.router.add_post(OPS_PATH, one_op)
    app.router.add_post("/v1/provision", provision)
    app.router.add_get("/v1/health", health)
    return app
