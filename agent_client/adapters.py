"""Platform adapters: how a handset talks to one platform, by composition.

The `Agent` keeps everything a handset owns — the durable outbox and inbox, the cursor, the
identity, when to send and how fast to back off — and asks its adapter for two things only:
register this handset (`provision`), and carry this batch of operations and bring back what the
platform answered (`exchange`). Our compact sync protocol and a naive JSON-request-per-operation
client are the first two adapters; a user writes a class with the same three members to drive
their own platform (docs/library.md, examples/rest_platform/adapter.py).

    class MyPlatform:
        max_batch = 50
        polls = True
        async def provision(self, link: Link, *, agent: str, code: str) -> Provisioned: ...
        async def exchange(self, link: Link, ops: Sequence[Operation], cursor: int) -> Result: ...

`exchange` raises `TransientError` when the link or the platform failed (the batch stays queued
and goes again after backoff) and `ServerRefused` when the platform refused the request itself;
a refused *operation* is a `rejected` entry of the `Result`, not an exception.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .errors import TransientError
from .protocol import envelope
from .protocol.auth import HandsetKey, Stamper
from .protocol.errors import FrameError
from .protocol.frames import Keycode, Reason, UplinkFrame, decode_downlink, encode_uplink
from .protocol.keycodes import KeycodeFormat, pack_keycode
from .protocol.ops import Operation
from .protocol.sync import Result, fresh_entries
from .transport import Transport, refusal, refusal_int

SYNC_PATH = "/v1/sync"
PROVISION_PATH = "/v1/provision"
OPS_PATH = "/v1/ops"
MAX_BODY = 48 * 1024


@dataclass
class Link:
    """What an adapter may use to reach its platform on this handset's behalf."""

    transport: Transport
    key: HandsetKey
    """The handset's own Ed25519 key (adapters that sign requests use it)."""
    clock: Callable[[], float]
    stamper: Stamper
    """Request timestamps and the estimated offset of this handset's clock from the server's."""
    handset: int = 0
    """The platform's id for this handset (0 until provisioned)."""
    meta: dict[str, str] = field(default_factory=dict)
    """What the adapter asked to keep at provisioning (e.g. a bearer token); stored durably."""

    def now_ms(self) -> int:
        return int(self.clock() * 1000)


@dataclass(frozen=True)
class Provisioned:
    handset: int
    server_ms: int | None = None
    """The platform's clock at the answer, if it says (to estimate this handset's offset)."""
    meta: Mapping[str, str] = field(default_factory=dict)
    """Anything the adapter needs again after a restart (kept in the handset's store)."""


@runtime_checkable
class PlatformAdapter(Protocol):
    max_batch: int
    """The most operations one exchange may carry (1 for one-request-per-operation APIs)."""
    polls: bool
    """Whether an exchange with no operations fetches something (keycodes paid by others)."""

    async def provision(self, link: Link, *, agent: str, code: str) -> Provisioned:
        """Register this handset for `agent` with the provisioning `code`."""
        ...

    async def exchange(self, link: Link, ops: Sequence[Operation], cursor: int) -> Result:
        """Carry `ops` (possibly none: a poll) and bring back acks, rejections and downlink
        entries numbered past `cursor`."""
        ...


async def provision_json(link: Link, path: str, doc: dict[str, object]) -> dict[str, object]:
    """POST a JSON body; the platform's JSON answer, or its refusal as `ServerRefused`."""
    reply = await link.transport.post(
        path, json.dumps(doc).encode(), {"Content-Type": "application/json"}
    )
    if reply.status not in (200, 201):
        raise refusal(reply)
    try:
        answer = json.loads(reply.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TransientError(f"provisioning answer is not JSON: {exc}") from exc
    if not isinstance(answer, dict):
        raise TransientError("provisioning answer is not a JSON object")
    return answer


class CompactAdapter:
    """The lab's own wire contract (docs/sync-protocol.md): one authenticated msgpack exchange
    carries a batch up and the downlink back, with a cursor. `version` 2 (the default) puts a
    16-byte MAC and the time in the body; 1 signs every request with Ed25519 in headers."""

    max_batch = 512
    polls = True

    def __init__(self, version: int = envelope.VERSION) -> None:
        if version not in (1, envelope.VERSION):
            raise ValueError(f"sync protocol version must be 1 or 2, got {version!r}")
        self.version = version

    async def provision(self, link: Link, *, agent: str, code: str) -> Provisioned:
        """One request: v2 sends its sync key with the public key, so the first sync is one
        round trip (a platform that ignores `sync_key` answers that sync `no_sync_key`, and
        `exchange` registers it at `/v2/key` then)."""
        doc: dict[str, object] = {"agent": agent, "code": code, "public_key": link.key.public.hex()}
        if self.version != 1:
            doc["sync_key"] = envelope.sync_key(link.key.seed).hex()
        answer = await provision_json(link, PROVISION_PATH, doc)
        handset, server_ms = answer.get("handset"), answer.get("server_ms")
        if not (isinstance(handset, int) and isinstance(server_ms, int)):
            raise TransientError(f"provisioning answer lacks handset/server_ms: {answer!r:.200}")
        return Provisioned(handset, server_ms)

    def _request(self, link: Link, frame: bytes, ts_ms: int) -> tuple[str, bytes, dict[str, str]]:
        """(path, body, headers) of one sync request carrying `frame`."""
        if self.version == 1:
            return SYNC_PATH, frame, link.key.headers("POST", SYNC_PATH, frame, link.handset, ts_ms)
        key = envelope.sync_key(link.key.seed)
        return envelope.SYNC_PATH, envelope.seal(key, link.handset, ts_ms, frame), {}

    async def exchange(self, link: Link, ops: Sequence[Operation], cursor: int) -> Result:
        def frame_of(batch: Sequence[Operation]) -> bytes:
            return encode_uplink(UplinkFrame(link.handset, cursor, tuple(batch)))

        frame = frame_of(ops)
        while len(frame) > MAX_BODY and len(ops) > 1:  # the rest go in the next exchange
            ops = ops[: len(ops) // 2]
            frame = frame_of(ops)
        ts_ms = link.stamper.stamp(link.now_ms())
        corrected = registered = False
        for _ in range(3):  # at most one clock correction and one key registration
            path, body, headers = self._request(link, frame, ts_ms)
            sent = link.now_ms()
            reply = await link.transport.post(path, body, headers)
            received = link.now_ms()
            if reply.status == 200:
                try:
                    answer = decode_downlink(reply.body)
                except FrameError as exc:  # a 200 that is not our frame (a captive portal)
                    raise TransientError(f"response is not a sync frame: {exc.detail}") from exc
                link.stamper.observe(sent, received, answer.server_ms)
                fresh, after = fresh_entries(answer, cursor)
                gap = answer.first_entry > cursor + 1  # nothing taken: ask again
                return Result(
                    answer.acked,
                    answer.rejected,
                    fresh,
                    after,
                    answer.more or gap,
                    answer.server_ms,
                    True,
                )
            stamp = refusal_int(reply, "server_ms")
            if stamp is not None:
                link.stamper.observe(sent, received, stamp)
            error = refusal(reply)
            if error.code in ("stale_timestamp", "replayed_request") and not corrected:
                corrected = True
                link.stamper.refused_as_stale(ts_ms, refusal_int(reply, "last_ms"))
                ts_ms = link.stamper.stamp(received)  # clock corrected: one honest retry
                continue
            if error.code == "no_sync_key" and self.version != 1 and not registered:
                registered = True  # once per handset: the platform keeps the key
                await register_sync_key(link)
                ts_ms = link.stamper.stamp(link.now_ms())
                continue
            raise error
        raise TransientError("sync did not settle after a clock correction and a key registration")


async def register_sync_key(link: Link) -> None:
    """Tell the platform this handset's v2 sync key, under its Ed25519 signature."""
    key = envelope.sync_key(link.key.seed)
    ts_ms = link.stamper.stamp(link.now_ms())
    headers = link.key.headers("POST", envelope.KEY_PATH, key, link.handset, ts_ms)
    reply = await link.transport.post(envelope.KEY_PATH, key, headers)
    if reply.status != 201:
        raise refusal(reply)


class NaiveAdapter:
    """One JSON request per operation with named fields and the keycode inline, as common REST
    clients do: the baseline the compact protocol is measured against. It has no downlink:
    keycodes it did not pay for itself (mobile money) never reach it."""

    max_batch = 1
    polls = False

    async def provision(self, link: Link, *, agent: str, code: str) -> Provisioned:
        return await CompactAdapter().provision(link, agent=agent, code=code)

    async def exchange(self, link: Link, ops: Sequence[Operation], cursor: int) -> Result:
        if not ops:
            return Result((), (), (), cursor, False, link.now_ms(), True)
        op = ops[0]
        body = op_json(op)
        ts = link.stamper.stamp(link.now_ms())
        headers = {
            "Content-Type": "application/json",
            **link.key.headers("POST", OPS_PATH, body, link.handset, ts),
        }
        reply = await link.transport.post(OPS_PATH, body, headers)
        now_ms = link.now_ms()
        if reply.status == 422:
            try:
                reason = Reason[str(json.loads(reply.body).get("error", "")).upper()]
            except (ValueError, KeyError, AttributeError) as exc:
                raise TransientError(f"refusal is not an operation refusal: {exc}") from exc
            return Result((), ((op.seq, reason),), (), cursor, False, now_ms, True)
        if reply.status != 200:
            raise refusal(reply)
        try:
            answer = json.loads(reply.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise TransientError(f"answer is not JSON: {exc}") from exc
        codes = keycodes_from(answer, op.seq)
        entries = tuple((cursor + i, code) for i, code in enumerate(codes, start=1))
        return Result((op.seq,), (), entries, cursor + len(codes), False, now_ms, True)


def op_json(op: Operation) -> bytes:
    fields = op.named()
    doc = {"seq": op.seq, "type": op.kind.name.lower(), "recorded_at": op.at, "fields": fields}
    return json.dumps(doc).encode()


def keycodes_from(answer: object, op_seq: int) -> list[Keycode]:
    """The inline keycodes of an answer; anything malformed is a transient failure."""
    try:
        assert isinstance(answer, dict)
        out = []
        for k in answer.get("keycodes", []):
            fmt = KeycodeFormat[str(k["format"]).upper()]
            number = pack_keycode(fmt, str(k["keycode"]))
            out.append(Keycode(op_seq, int(k["device"]), fmt, number, int(k["credit_s"])))
        return out
    except (AssertionError, KeyError, TypeError, ValueError) as exc:
        raise TransientError(f"answer is not an operation result: {exc}") from exc


ADAPTERS: dict[str, Callable[[], PlatformAdapter]] = {
    "compact": CompactAdapter,
    "naive": NaiveAdapter,
}
"""The built-in adapters by name (`agent-client --adapter`, `field-lab run --client`)."""
