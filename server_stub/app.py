"""The aiohttp application: ``POST /v1/sync`` (the compact contract), ``POST /v1/provision``
(and ``/v1/provision/many``, a fleet's handsets at once), ``POST /v1/ops`` (one JSON operation per
request, for naive REST clients), ``GET /v1/health``;
the mobile-money callback ``POST /v1/mm/callback``, distributor reports ``GET /v1/reports/*``
and payment steps ``GET /v1/payments/{txn}`` (a distributor's bearer token: its rows only),
the audit API ``GET /v1/audit/*`` (the operator's bearer token),
and operations: ``/healthz``, ``/readyz``, ``/metrics``, ``/openapi.json``.

Handlers are thin: read the bounded body, verify the signature and decode the frame (pure, from
`agent_client.protocol`), then run the whole exchange as one transaction on the store's own
thread. Every refusal is a 4xx JSON body ``{"error": code, "detail": ..., "server_ms": ...}``
with nothing written; the server time lets a handset with a wrong clock correct itself.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from agent_client.protocol import auth, envelope
from agent_client.protocol.errors import AuthError, FrameError, ProtocolError
from agent_client.protocol.frames import (
    MAX_BODY_BYTES,
    DownlinkFrame,
    decode_uplink,
    encode_downlink,
)
from agent_client.protocol.ops import APPENDED, SCHEMAS, Kind, Operation

from .audit import FEEDS, Audit, parse_audit_query
from .callbacks import (
    SIGNATURE_HEADER,
    Answer,
    answer_body,
    check_signature,
    json_object,
    parse_callback,
)
from .checkpoint import Checkpointer
from .errors import RequestError
from .escrow import EscrowPolicy
from .faults import PlatformFaults
from .health import OVER_BUDGET, TIMED_OUT, ReportFailed, check_reports, healthy
from .ledger.access import bearer
from .ledger.throttle import Backoff, Throttle
from .metrics import CONTENT_TYPE, Metrics
from .metrics_share import PUBLISH_S, MetricsShare
from .notify import Gateway, ResendRule, SmsSender
from .openapi import document
from .opm import routes as opm_routes
from .provisioning import PROVISION_MANY_PATH, Provisioning, provisioning, provisionings
from .reports import REPORTS, Query, Reports, parse_query
from .runner import URGENT, StoreThread
from .store import Store

T = TypeVar("T")
Clock = Callable[[], float]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STORE = web.AppKey("store", Store)
RUNNER = web.AppKey("runner", StoreThread)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
STATS = web.AppKey("stats", dict[str, int])
READERS = web.AppKey("readers", ThreadPoolExecutor)
READER: web.AppKey[Callable[[], Reports]] = web.AppKey("reader")
METRICS = web.AppKey("metrics", Metrics)
CONFIG: web.AppKey[Platform] = web.AppKey("config")
SENDER: web.AppKey[SmsSender | None] = web.AppKey("sender")
DRAINING = web.AppKey("draining", asyncio.Event)
SHARE: web.AppKey[MetricsShare | None] = web.AppKey("share")
"""Several workers: where each publishes its request counts for the others' scrapes."""
HANDSET = web.RequestKey("handset", int)
KEYS = web.AppKey("keys", dict[int, bytes])
"""Handset public keys read so far (they never change)."""
SYNC_KEYS = web.AppKey("sync_keys", dict[int, bytes])
"""v2 sync keys: all of them, read at start, and those registered since (only `/v2/key`
changes one, in this process)."""
CODE_GUESSES = web.AppKey("code_guesses", Throttle)
TOKEN_GUESSES = web.AppKey("token_guesses", Throttle)

log = logging.getLogger("server_stub.access")


MAX_WORKERS = 64


@dataclass(frozen=True)
class Platform:
    """What the stand-in is wired to besides its database."""

    mm_secret: bytes | None = None  # shared with the operator; no secret, no callback endpoint
    sms: Gateway | None = None  # where keycode SMS go; None: keycodes travel by sync only
    resend: ResendRule = field(default_factory=ResendRule)
    ready_budget_s: float = 0.5  # /readyz fails when a critical report's first page takes longer
    report_threads: int = 2
    audit_token: str | None = None  # bearer token of the audit API; None: no audit API
    synchronous: str = "full"  # "normal": commits survive the process dying, not power loss
    backoff: Backoff = field(default_factory=Backoff)  # after failed codes and tokens
    escrow: EscrowPolicy = field(default_factory=lambda: EscrowPolicy(devices=0))
    """Offline-sale escrow per agent (docs/offline-sales.md); the default grants none."""
    workers: int = 1
    """Processes serving this database (`serve --workers N`, docs/platform.md); above 1,
    transactions take the cross-process write lock and only worker 0 checkpoints."""
    worker: int = 0
    """This process's number among them, 0..workers-1."""
    write_lock: bool = True
    """With several workers: order their writers with writelock.py; False leaves it to
    SQLite's busy handler alone (kept to measure the difference)."""
    owns_interpreter: bool = False
    """This process serves the platform and nothing else (`server-stub serve`, a benchmark's
    child): once started, its heap is frozen and the collector runs less often
    (`settle_heap`). False in a process that is also something else (tests, the lab)."""

    def __post_init__(self) -> None:
        if self.audit_token is not None and not bearer_safe(self.audit_token):
            raise ValueError("audit_token must be non-empty visible ASCII without spaces")
        if not (1 <= self.workers <= MAX_WORKERS and 0 <= self.worker < self.workers):
            raise ValueError(
                f"workers must be in 1..{MAX_WORKERS} and worker in 0..workers-1, got"
                f" workers={self.workers} worker={self.worker}"
            )


def bearer_safe(token: str) -> bool:
    """A token can travel in an Authorization header: non-empty visible ASCII, no spaces."""
    return bool(token) and all("!" <= c <= "~" for c in token)


GEN0_THRESHOLD = 20_000
"""Allocations between young collections in a serving process (CPython's default: 700).
Each exchange allocates thousands of short-lived objects; at the default a young collection
ran every few exchanges, each also visiting the survivors of the last."""


def settle_heap() -> None:
    """After start-up: what is alive now (modules, the memo's first rows, the app) lives as
    long as the process, so it is frozen out of every later collection (`gc.freeze`), and
    young collections run at GEN0_THRESHOLD. Process-wide: only for a process that serves
    and nothing else (`Platform.owns_interpreter`)."""
    gc.collect()
    gc.freeze()
    _, *older = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, *older)


SYNC_PATH = "/v1/sync"
V2_PREFIX = "/v2"
OPS_PATH = "/v1/ops"


def now_ms(app: web.Application) -> int:
    return int(app[CLOCK]() * 1000)


async def settled(job: Future[T]) -> T:
    """A store job's result. An inline store (`create_app(inline_store=True)`) has run it
    already: its result is taken at once, not after two turns of the event loop."""
    if job.done():
        return job.result()
    return await asyncio.wrap_future(job)


async def run(app: web.Application, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(store, *args)` on the store thread: one request's transaction at a time."""
    return await settled(app[RUNNER].submit(partial(fn, app[STORE], *args)))


async def run_urgent(app: web.Application, fn: Callable[..., T], *args: Any) -> T:
    """Like `run`, ahead of queued sync work: for short jobs whose wait someone feels."""
    return await settled(app[RUNNER].submit_at(URGENT, partial(fn, app[STORE], *args)))


def refusal(
    app: web.Application, status: int, code: str, detail: str, **extra: int
) -> web.Response:
    body: dict[str, object] = {"error": code, "detail": detail, "server_ms": now_ms(app), **extra}
    return web.json_response(body, status=status)


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_of(request: web.Request) -> tuple[str, str]:
    """Metric labels with bounded cardinality: the route template, a known method or 'other'."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    return route, request.method if request.method in METHODS else "other"


CLIENT_CLOSED = 499
"""Status recorded (never sent) for a request whose client disconnected, as nginx logs it."""


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """RED metrics and one structured access-log line per request (ids only, no secrets)."""
    metrics = request.app[METRICS]
    began = time.perf_counter()
    status = 500
    metrics.requests.in_flight += 1
    try:
        response = await handler(request)
        status = response.status
        return response
    except (ConnectionResetError, asyncio.CancelledError):
        status = CLIENT_CLOSED  # the client went away mid-request: not the server's fault
        raise
    finally:
        metrics.requests.in_flight -= 1
        seconds = time.perf_counter() - began
        route, method = route_of(request)
        metrics.observe_request(route, method, status, seconds)
        if log.isEnabledFor(logging.INFO):  # nobody reads the line: do not build it
            access_line(request, method, route, status, seconds)


def access_line(request: web.Request, method: str, route: str, status: int, seconds: float) -> None:
    fields: dict[str, object] = {
        "method": method,
        "route": route,
        "status": status,
        "duration_s": round(seconds, 6),
        "bytes_in": request.content_length or 0,
    }
    handset = request.headers.get(auth.HANDSET_HEADER, "")
    if handset.isdigit() and len(handset) <= 10:
        fields["handset"] = int(handset)
    elif HANDSET in request:  # v2: named inside the body's envelope
        fields["handset"] = request[HANDSET]
    config = request.app[CONFIG]
    if config.workers > 1:  # which process answered (serve --workers)
        fields["worker"] = config.worker
    log.info("request", extra={"fields": fields})


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
        response = refusal(app, exc.status, exc.reason.lower().replace(" ", "_"), exc.text or "")
        if "Allow" in exc.headers:  # a 405 says what is allowed (RFC 9110)
            response.headers["Allow"] = exc.headers["Allow"]
        return response


async def signed_body(request: web.Request) -> tuple[auth.Claim, bytes]:
    """The body and its verified claim. The handset's public key never changes, so it is read
    once and kept (`KEYS`); the strictly-newer check is the exchange's own, in its transaction."""
    app = request.app
    body = await request.read()
    claim = auth.parse_claim(request.headers)
    keys = app[KEYS]
    public = keys.get(claim.handset)
    if public is None:
        public = keys[claim.handset] = (await run(app, Store.handset, claim.handset)).public_key
    try:
        auth.verify(
            claim, public, request.method, request.path, body, now_ms=now_ms(app), last_ms=0
        )
    except AuthError as exc:
        if exc.code != "stale_timestamp":
            raise
        await stale(app, claim)
    return claim, body


async def stale(app: web.Application, claim: auth.Claim) -> None:
    """Refuse a signed request outside the clock window, telling the handset the last stamp
    accepted so it can recover (the slow path: read from the store)."""
    handset = await run(app, Store.handset, claim.handset)
    fresh(app, claim, handset.last_ms)
    raise AssertionError("fresh() refuses a stale claim")  # pragma: no cover


async def sync(request: web.Request) -> web.Response:
    """Sync v1: Ed25519 signature in three headers (still served for handsets in the field)."""
    claim, body = await signed_body(request)
    reply = await exchange(request, claim, body)
    return web.Response(body=reply, content_type="application/msgpack")


async def sync_v2(request: web.Request) -> web.Response:
    """Sync v2: the envelope (handset, time, 16-byte MAC) leads the body; no auth headers, and
    the answer carries no Content-Type, Server or Date (`lean`): bytes are airtime."""
    app = request.app
    claim, frame = envelope.open_envelope(await request.read())
    request[HANDSET] = claim.handset
    keys = app[SYNC_KEYS]
    key = keys.get(claim.handset)
    if key is None:
        key = (await run(app, Store.sync_key, claim.handset))[1]
        if key is None:
            raise RequestError(
                401,
                "no_sync_key",
                f"handset {claim.handset} has no sync key: POST {envelope.KEY_PATH}",
            )
        keys[claim.handset] = key
    try:
        envelope.check_tag(claim, key, frame)
    except AuthError:
        if app[CONFIG].workers == 1:  # this process is the only writer: the key is current
            raise
        # another worker may have registered a new key (`/v2/key`): read it once more
        key = (await run(app, Store.sync_key, claim.handset))[1]
        if key is None:
            keys.pop(claim.handset, None)
            raise
        keys[claim.handset] = key
        envelope.check_tag(claim, key, frame)
    if abs(claim.ts_ms - now_ms(app)) > auth.MAX_SKEW_MS:
        await stale(app, claim)
    return web.Response(body=await exchange(request, claim, frame))


def fresh(app: web.Application, claim: auth.Claim, last_ms: int) -> None:
    """The skew window and strictly-newer check of an authenticated claim; the two refusals
    carry the last stamp accepted, so the handset can recover."""
    try:
        auth.check_fresh(claim, now_ms=now_ms(app), last_ms=last_ms)
    except AuthError as exc:
        raise RequestError(exc.status, exc.code, exc.detail, {"last_ms": last_ms}) from exc


async def register_key(request: web.Request) -> web.Response:
    """`POST /v2/key`: the handset's sync key (32 raw bytes), under its Ed25519 signature."""
    claim, body = await signed_body(request)
    if len(body) != envelope.KEY_BYTES:
        raise RequestError(400, "bad_field", f"a sync key is {envelope.KEY_BYTES} raw bytes")
    await run(request.app, Store.set_sync_key, claim, body)
    request.app[SYNC_KEYS][claim.handset] = body  # (other workers read it at a mismatch)
    return web.json_response({"server_ms": now_ms(request.app)}, status=201)


async def exchange(request: web.Request, claim: auth.Claim, body: bytes) -> bytes:
    """Decode the (authenticated) uplink, run the exchange, encode the downlink (the frames
    are the same in v1 and v2)."""
    frame = decode_uplink(body)
    if frame.handset != claim.handset:
        raise RequestError(403, "handset_mismatch", "frame handset differs from the signer")
    received = now_ms(request.app)

    def apply(store: Store) -> DownlinkFrame:  # stamped when the transaction runs
        return store.exchange(claim, frame.ops, frame.cursor, now_ms(request.app), bad=frame.bad)

    runner = request.app[RUNNER]  # shares one commit with the exchanges waiting beside it
    reply = await runner.answer_grouped(partial(apply, request.app[STORE]))
    metrics = request.app[METRICS]
    metrics.sync_ops.observe(len(frame.ops))
    metrics.sync_bytes.observe(len(body))
    received_s = received / 1000
    metrics.ingest_lag.observe_many([max(0.0, received_s - op.at) for op in frame.ops])
    return encode_downlink(reply)


async def lean(request: web.Request, response: web.StreamResponse) -> None:
    """v2 answers drop what a handset never reads: Server, Date, and a 200's Content-Type."""
    if request.path.startswith(V2_PREFIX):
        for header in ("Server", "Date"):
            response.headers.popall(header, None)
        if response.status == 200:
            response.headers.popall("Content-Type", None)


def too_many(app: web.Application, kind: str, retry_after: int) -> web.Response:
    """429 with Retry-After: this secret attempt was not even checked."""
    app[METRICS].auth_failures.labels(kind, "throttled").inc()
    response = refusal(
        app,
        429,
        "too_many_attempts",
        f"too many failed attempts; retry after {retry_after} s",
        retry_after_s=retry_after,
    )
    response.headers["Retry-After"] = str(retry_after)
    return response


async def failed_attempt(
    request: web.Request, kind: str, throttle: Throttle, keys: tuple[str, ...], subject: str
) -> None:
    """Count a wrong code or token against each key, in /metrics and in the audit trail."""
    app = request.app
    now = app[CLOCK]()
    blocks = [b for b in (throttle.failed(key, now) for key in keys) if b is not None]
    app[METRICS].auth_failures.labels(kind, "refused").inc()
    await run_urgent(
        app,
        Store.audit_auth,
        kind,
        subject,
        request.remote or "",
        "refused",
        max(blocks, default=None),
        now_ms(app),
    )


def blocked(app: web.Application, throttle: Throttle, keys: tuple[str, ...]) -> int | None:
    now = app[CLOCK]()
    waits = [w for w in (throttle.retry_after(key, now) for key in keys) if w is not None]
    return max(waits, default=None)


async def provision(request: web.Request) -> web.Response:
    """`POST /v1/provision`: one handset."""
    made = await _provision(request, [provisioning(await json_body(request))], numbered=False)
    if isinstance(made, web.Response):
        return made
    return web.json_response({"handset": made[0], "server_ms": now_ms(request.app)}, status=201)


async def provision_many(request: web.Request) -> web.Response:
    """`POST /v1/provision/many`: many handsets in one request and one transaction, all or
    nothing (a fleet set up at once: the per-request half of provisioning paid once)."""
    made = await _provision(request, provisionings(await json_body(request)), numbered=True)
    if isinstance(made, web.Response):
        return made
    server_ms = now_ms(request.app)
    answer = [{"handset": handset, "server_ms": server_ms} for handset in made]
    return web.json_response({"handsets": answer}, status=201)


async def _provision(
    request: web.Request, wanted: list[Provisioning], *, numbered: bool
) -> list[int] | web.Response:
    """The handsets registered for `wanted`, or the throttle's 429 if any of their agents (or
    the source) is blocked for guessing; a wrong code counts against its agent and the source."""
    app = request.app
    source = f"source:{request.remote}"
    keys = [(f"agent:{p.agent[:100]}", source) for p in wanted]
    waits = [w for k in keys if (w := blocked(app, app[CODE_GUESSES], k)) is not None]
    if waits:
        return too_many(app, "provision", max(waits))

    def apply(store: Store) -> list[int]:  # stamped when the transaction runs
        return store.provision_many(wanted, now_ms(app), numbered=numbered)

    try:  # a fleet set up at once shares commits, as exchanges do (answered after the commit)
        made = await app[RUNNER].answer_grouped(partial(apply, app[STORE]))
    except RequestError as exc:
        if exc.code == "bad_provisioning_code":
            bad = exc.extra.get("item", 0)
            agent = wanted[bad].agent
            await failed_attempt(request, "provision", app[CODE_GUESSES], keys[bad], agent)
        raise
    for handset in made:
        app[SYNC_KEYS].pop(handset, None)  # read again from the store at its next sync
    for agent_key, _ in keys:
        app[CODE_GUESSES].succeeded(agent_key)
    return made


async def json_body(request: web.Request) -> dict[str, Any]:
    return json_object(await request.read())


async def one_op(request: web.Request) -> web.Response:
    """The naive REST shape: one operation per JSON request, named fields, keycodes inline."""
    claim, raw = await signed_body(request)
    try:
        doc = json.loads(raw)
        kind = Kind[str(doc["type"]).upper()]
        values = [doc["fields"][field.name] for field in SCHEMAS[kind]]
        values += [doc["fields"][f.name] for f in APPENDED.get(kind, ()) if f.name in doc["fields"]]
        op = Operation.make(doc["seq"], kind, doc["recorded_at"], *values)
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise FrameError(f"not a JSON operation: {exc}", code="malformed_json") from exc
    unpaged = partial(Store.exchange, paging=False)  # no cursor: nothing reached the handset
    reply = await run(request.app, unpaged, claim, [op], 2**53, now_ms(request.app))
    if reply.rejected:
        reason = reply.rejected[0][1].name.lower()
        return refusal(request.app, 422, reason, f"operation {op.seq} refused: {reason}")
    keycodes = await run(request.app, Store.keycodes_for_op, claim.handset, op.seq)
    return web.json_response({"seq": op.seq, "status": "acknowledged", "keycodes": keycodes})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "server_ms": now_ms(request.app)})


async def read(app: web.Application, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(reports, *args)` on a reader thread, beside (not behind) the store thread."""
    loop = asyncio.get_running_loop()
    reader = app[READER]
    return await loop.run_in_executor(app[READERS], lambda: fn(reader(), *args))


async def mm_callback(request: web.Request) -> web.Response:
    app = request.app
    body = await request.read()
    secret = app[CONFIG].mm_secret
    if secret is None:
        raise RequestError(404, "not_found", "mobile money is not configured on this server")
    check_signature(secret, body, request.headers.get(SIGNATURE_HEADER))
    callback = parse_callback(body)
    sender = app[SENDER]

    def apply(store: Store) -> Answer:  # read the clock when the transaction runs
        return store.mobile_money(callback, now_ms(app), sender is not None)

    # activation latency: ahead of queued sync exchanges, sharing the next group's commit
    answer = await app[RUNNER].answer_grouped(partial(apply, app[STORE]), URGENT)
    if sender is not None and answer.keycode and not answer.duplicate:
        sender.wake()
    status, doc = answer_body(callback.txn, answer)
    return web.json_response({**doc, "server_ms": now_ms(app)}, status=status)


def unauthorized(app: web.Application, challenge: str, detail: str) -> web.Response:
    response = refusal(app, 401, "unauthorized", detail)
    response.headers["WWW-Authenticate"] = challenge
    return response


async def as_tenant(request: web.Request, fn: Callable[[Reports, int], T]) -> T | web.Response:
    """`fn(reports, distributor)` for the distributor whose token the request carries, the
    token's check and `fn` in one trip to a reader thread (each trip is two thread wake-ups,
    most of a report's cost); or the refusal to send: 401 without a live token, 429 while
    this source is backing off after wrong ones."""
    app = request.app
    token = bearer(request.headers.get("Authorization", ""))
    if token is None:
        return unauthorized(app, "Bearer", "send Authorization: Bearer <distributor token>")
    keys = (f"source:{request.remote}",)
    wait = blocked(app, app[TOKEN_GUESSES], keys)
    if wait is not None:
        return too_many(app, "token", wait)

    def checked(reports: Reports) -> tuple[T] | None:  # None: no live token
        distributor = reports.tenant(token)
        return None if distributor is None else (fn(reports, distributor),)

    answer = await read(app, checked)
    if answer is None:
        await failed_attempt(request, "token", app[TOKEN_GUESSES], keys, "distributor token")
        return unauthorized(
            app, 'Bearer error="invalid_token"', "unknown or revoked distributor token"
        )
    return answer[0]


async def report(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in REPORTS:
        query: Query | RequestError = RequestError(
            404, "not_found", f"no report {name!r}; reports: {', '.join(REPORTS)}"
        )
    else:
        try:
            query = parse_query(name, request.query)
        except RequestError as exc:  # answered after the token's check, as before
            query = exc
    at_ms = now_ms(request.app)

    def page(reports: Reports, distributor: int) -> dict[str, Any]:
        if isinstance(query, RequestError):
            raise query
        result: dict[str, Any] = getattr(reports, name)(query, at_ms, distributor)
        return result

    answer = await as_tenant(request, page)
    if isinstance(answer, web.Response):
        return answer
    return web.json_response({**answer, "server_ms": now_ms(request.app)})


async def payment_steps(request: web.Request) -> web.Response:
    txn = request.match_info["txn"]
    steps = await as_tenant(request, lambda reports, distributor: reports.payment(txn, distributor))
    if isinstance(steps, web.Response):
        return steps
    if steps is None:
        raise RequestError(404, "not_found", "no such transaction for this distributor")
    return web.json_response({**steps, "server_ms": now_ms(request.app)})


AUDIT_PATH = "/v1/audit"


def audit_refusal(request: web.Request) -> web.Response | None:
    """The audit API's gate, before anything of the request is read: 404 when this server
    has no audit token, 401 (with the Bearer challenge) without the right one."""
    app = request.app
    token = app[CONFIG].audit_token
    if token is None:
        return refusal(app, 404, "not_found", "audit is not configured on this server")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        challenge, detail = "Bearer", "send Authorization: Bearer <audit token>"
    elif hmac.compare_digest(given.encode(errors="surrogatepass"), token.encode()):
        return None
    else:
        challenge, detail = 'Bearer error="invalid_token"', "wrong audit token"
    return unauthorized(app, challenge, detail)


async def audit_feed(feed: str, request: web.Request) -> web.Response:
    refused = audit_refusal(request)
    if refused is not None:
        return refused
    query = parse_audit_query(feed, request.query)
    page = await read(request.app, lambda reports: Audit(reports.db).page(feed, query))
    return web.json_response({**page, "server_ms": now_ms(request.app)})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    """Ready when not draining and each critical report's first page runs within the budget
    (the check `server-stub check-reports` runs over HTTP, here on the report threads)."""
    app = request.app
    budget = app[CONFIG].ready_budget_s
    if app[DRAINING].is_set():
        return web.json_response({"ready": False, "reason": "draining"}, status=503)

    async def first_page(report: str) -> int:
        try:
            await read(app, getattr(Reports, report), Query(), now_ms(app), None)
        except Exception as exc:  # the database is what is unready, whatever it raised
            raise ReportFailed(f"{type(exc).__name__}: {exc}") from exc
        return 200

    checks = await check_reports(first_page, budget * 1000, timeout_s=budget)
    reports = [c.as_dict() for c in checks]
    if not healthy(checks):
        failed = next(c for c in checks if not c.ok)
        late = failed.verdict in (OVER_BUDGET, TIMED_OUT)
        reason = "over budget" if late else f"{failed.report}: {failed.problem or failed.status}"
        return web.json_response({"ready": False, "reason": reason, "reports": reports}, status=503)
    took = sum(c.ms for c in checks) / 1000
    return web.json_response({"ready": True, "probe_s": round(took, 6), "reports": reports})


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    totals = await read(app, Reports.totals)
    ours, share = app[METRICS], app[SHARE]
    if share is not None:  # every worker's counts, not only this one's share of the traffic
        peers = await asyncio.get_running_loop().run_in_executor(app[READERS], share.peers)
        ours = Metrics.merged([ours.snapshot(), *peers])
    body = ours.render(totals)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document())


def create_app(
    db_path: str | Path,
    *,
    clock: Clock = time.time,
    platform: Platform | None = None,
    faults: PlatformFaults | None = None,
    inline_store: bool = False,
) -> web.Application:
    """The platform on `db_path`. `faults` builds bugs in on purpose (tests of the lab's
    judge only); nothing else can switch them on. `inline_store`: the store's work runs on the
    event loop's thread (a virtual-time loop must see no thread)."""
    config = platform or Platform()
    app = web.Application(middlewares=[observe, errors], client_max_size=MAX_BODY_BYTES)
    app[CLOCK] = clock
    app[STATS] = {"requests": 0}
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app[DRAINING] = asyncio.Event()
    app[SENDER] = None
    app[SHARE] = None
    app[KEYS] = {}
    app[SYNC_KEYS] = {}
    app[CODE_GUESSES] = Throttle(config.backoff)
    app[TOKEN_GUESSES] = Throttle(config.backoff)
    runner = StoreThread(inline=inline_store)
    app[RUNNER] = runner
    readers = ThreadPoolExecutor(max_workers=config.report_threads, thread_name_prefix="report")
    app[READERS] = readers
    local = threading.local()
    opened: list[Reports] = []
    checkpointers: list[Checkpointer] = []
    publishing: list[asyncio.Task[None]] = []

    def reader() -> Reports:
        mine: Reports | None = getattr(local, "reports", None)
        if mine is None:
            mine = local.reports = Reports.open(db_path)
            opened.append(mine)
        return mine

    app[READER] = reader

    async def open_store(app: web.Application) -> None:
        # "full" on a store thread: each commit's fsync on the runner's syncer, off the writer
        deferred = config.synchronous == "full" and not inline_store
        opening = partial(
            Store.open,
            db_path,
            faults=faults,
            synchronous="deferred" if deferred else config.synchronous,
            escrow=config.escrow,
        )
        opening = partial(opening, write_lock=config.workers > 1 and config.write_lock)
        store = app[STORE] = await asyncio.get_running_loop().run_in_executor(runner, opening)
        runner.grouping = store.group
        runner.hold_open = config.workers == 1  # (a lock held over an fsync stalls the others)
        app[METRICS].write_lock.lock = store.write_lock
        if deferred:
            runner.changes = store.changes
            runner.durable = store.sync_wal
        if not inline_store and config.worker == 0:  # off the store thread (checkpoint.py)
            start = partial(Checkpointer.start_for, store.db, db_path)
            checkpointers.append(await asyncio.get_running_loop().run_in_executor(runner, start))
        elif config.workers > 1:  # worker 0 checkpoints for everyone, off its store thread
            await run(app, Store.no_autocheckpoint)
        app[SYNC_KEYS].update(await run(app, Store.sync_keys))
        if config.workers > 1:
            share = app[SHARE] = MetricsShare(db_path, config.worker, config.workers)
            share.publish(app[METRICS].snapshot())  # (replaces a previous run's counts)
            publishing.append(asyncio.get_running_loop().create_task(publish(share)))
        if config.sms is not None:
            sender = SmsSender(config.sms, partial(run, app), partial(now_ms, app), config.resend)
            sender.start()
            app[SENDER] = sender
        if config.owns_interpreter:
            settle_heap()

    async def publish(share: MetricsShare) -> None:
        while True:
            await asyncio.sleep(PUBLISH_S)
            try:
                share.publish(app[METRICS].snapshot())
            except OSError as exc:  # e.g. the disk is full: the peers see older counts
                logging.getLogger(__name__).warning("metrics not shared: %s", exc)

    async def drain(app: web.Application) -> None:
        """Runs while in-flight requests still finish: stop being ready, stop sending SMS."""
        app[DRAINING].set()
        for task in publishing:
            task.cancel()
        sender = app[SENDER]
        if sender is not None:
            await sender.stop()

    async def close_store(app: web.Application) -> None:
        share = app[SHARE]
        if share is not None:  # the last counts, for the workers still serving
            share.publish(app[METRICS].snapshot())
        for checkpointer in checkpointers:
            await asyncio.get_running_loop().run_in_executor(None, checkpointer.stop)
        await asyncio.get_running_loop().run_in_executor(runner, app[STORE].close)
        runner.shutdown(wait=True)
        readers.shutdown(wait=True)
        for r in opened:
            r.close()

    app.on_startup.append(open_store)
    app.on_shutdown.append(drain)
    app.on_cleanup.append(close_store)
    app.router.add_post(SYNC_PATH, sync)
    app.router.add_post(envelope.SYNC_PATH, sync_v2)
    app.router.add_post(envelope.KEY_PATH, register_key)
    app.on_response_prepare.append(lean)
    app.router.add_post(OPS_PATH, one_op)
    app.router.add_post("/v1/provision", provision)
    app.router.add_post(PROVISION_MANY_PATH, provision_many)
    app.router.add_get("/v1/health", health)
    app.router.add_post("/v1/mm/callback", mm_callback)
    app.router.add_get("/v1/reports/{name}", report)
    app.router.add_get("/v1/payments/{txn}", payment_steps)
    for feed in FEEDS:
        app.router.add_get(f"{AUDIT_PATH}/{feed}", partial(audit_feed, feed))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    opm_routes.register(app.router, run, now_ms)
    return app
