"""The clauses: each one documented behaviour of docs/sync-protocol.md, checked by doing it.

`CLAUSES` is data: a name, the doc section it checks, one line of what it means, the check,
and the clauses whose state it builds on (a clause whose prerequisite failed is reported as
not run, which fails the kit too). Checks speak through `KitHandset` and `Wire` in intents
(send this body, signed like this, at this time), never in headers or paths.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgpack

from agent_client.protocol.auth import HandsetKey
from agent_client.protocol.frames import (
    MAX_BODY_BYTES,
    MAX_INFLATED_BYTES,
    VERSION,
    DownlinkFrame,
    Entry,
    Keycode,
    Plan,
    Reason,
    Stock,
)
from agent_client.protocol.keycodes import KeycodeFormat
from agent_client.protocol.ops import U32, Kind

from .handset import (
    Failed,
    KitHandset,
    Row,
    envelope,
    expect,
    expect_refusal,
    row,
    uplink,
)
from .wire import Auth, Forgery, Wire, provision_body

PAGE = 256
"""The most entries one downlink frame may carry (docs/sync-protocol.md, Limits)."""
BULK = 300
"""Payments per exchange when the kit needs more downlink entries than one page holds."""
MAX_WALK = 1024
"""Pages the kit reads before it calls a downlink endless."""
NEVER_A_KIND = 127
"""An operation kind no version will allocate before this kit is updated."""


class SetupProblem(Exception):
    """The platform cannot be tested as set up (wrong agent or code): the user's to fix."""


@dataclass
class Context:
    """What the clauses learn and build on, in order."""

    wire: Wire
    agent: str
    code: str
    clock: Callable[[], float] = time.time
    a: KitHandset | None = None
    b: KitHandset | None = None
    plans: dict[int, Plan] = field(default_factory=dict)
    stock: dict[int, KeycodeFormat] = field(default_factory=dict)
    device: int = 0  # sold in this run
    spare: int = 0  # stays unsold
    customer: int = 0  # seq of A's registered customer
    paid: int = 0  # seq of A's first payment (a seq that is not a customer)
    batch: tuple[Row, ...] = ()
    answer: DownlinkFrame | None = None

    @property
    def handset(self) -> KitHandset:
        assert self.a is not None, "provisioning clause ran first"
        return self.a

    @property
    def plan(self) -> Plan:
        return min(self.plans.values(), key=lambda p: p.plan)

    def now(self) -> int:
        return int(self.clock())


Check = Callable[[Context], Awaitable[str]]


@dataclass(frozen=True)
class Clause:
    name: str
    section: str
    """The heading of docs/sync-protocol.md this clause checks."""
    says: str
    check: Check
    needs: tuple[str, ...] = ()


# -- provisioning ---------------------------------------------------------------------------


def integer(doc: dict[str, object], name: str) -> int:
    """An integer member of a JSON answer, or the clause fails naming it."""
    value = doc.get(name)
    if type(value) is not int:
        raise Failed(f"answer lacks integer {name}: {doc}")
    return value


async def provision(ctx: Context, key: HandsetKey) -> KitHandset:
    sent = int(ctx.clock() * 1000)
    answer = await ctx.wire.provision(ctx.agent, ctx.code, key.public)
    received = int(ctx.clock() * 1000)
    if answer.status == 403 and answer.refusal()[0] == "bad_provisioning_code":
        raise SetupProblem(
            f"the platform refused agent {ctx.agent!r} with that code: pass --agent and --code"
            " of an agent with at least 2 unsold devices and a plan (server-stub: add-agent"
            f" {ctx.agent} --code {ctx.code} --devices 4, and add-plan)"
        )
    code, detail = answer.refusal()
    expect(answer.status == 201, f"expected 201, got {answer.status} {code}: {detail}")
    doc = answer.json() or {}
    handset, server_ms = integer(doc, "handset"), integer(doc, "server_ms")
    expect(handset >= 1, f"handset id {handset} is not positive")
    offset = server_ms - (sent + received) // 2
    return KitHandset(ctx.wire, key, handset, offset, ctx.clock)


async def provision_answer(ctx: Context) -> str:
    ctx.a = await provision(ctx, HandsetKey.generate())
    return f"handset {ctx.a.handset}, clock offset {ctx.a.offset_ms} ms"


async def provision_idempotent(ctx: Context) -> str:
    again = await provision(ctx, ctx.handset.key)
    expect(again.handset == ctx.handset.handset, f"same key got handset {again.handset}")
    return "same key, same handset id"


async def provision_bad_code(ctx: Context) -> str:
    answer = await ctx.wire.provision(ctx.agent, ctx.code + "-wrong", HandsetKey.generate().public)
    expect_refusal(answer, 403, "bad_provisioning_code")
    return "403 bad_provisioning_code"


async def provision_bad_key(ctx: Context) -> str:
    for key in ("not hex", "00" * 31):
        body = provision_body(ctx.agent, ctx.code, key)
        expect_refusal(await ctx.wire.provision_raw(body), 400, "bad_public_key")
    return "not hex and 31 bytes: 400 bad_public_key"


async def provision_malformed_json(ctx: Context) -> str:
    expect_refusal(await ctx.wire.provision_raw(b'{"agent": '), 400, "malformed_json")
    return "400 malformed_json"


# -- the first pull and the downlink --------------------------------------------------------


def _learn(ctx: Context, entries: list[tuple[int, Entry]]) -> None:
    for _, entry in entries:
        match entry:
            case Plan():
                ctx.plans[entry.plan] = entry
            case Stock(present=True):
                ctx.stock[entry.device] = entry.format
            case Stock(present=False):
                ctx.stock.pop(entry.device, None)


async def first_pull(ctx: Context) -> str:
    a = ctx.handset
    entries = await a.pull()
    expect(not entries or entries[0][0] == 1, f"a new handset's entries start at {entries[0][0]}")
    _learn(ctx, entries)
    expect(ctx.plans, "no catalog entry came down: the platform needs a plan")
    expect(
        len(ctx.stock) >= 2,
        f"{len(ctx.stock)} devices in stock: the agent needs at least 2 unsold (a run sells 1)",
    )
    ctx.device, ctx.spare = sorted(ctx.stock)[:2]
    ctx.b = await provision(ctx, HandsetKey.generate())  # a sibling, before anything is sold
    sibling = {e.device for _, e in await ctx.b.pull() if isinstance(e, Stock) and e.present}
    expect(ctx.device in sibling, f"the sibling handset's stock lacks device {ctx.device}")
    return f"{len(entries)} entries: {len(ctx.plans)} plans, {len(ctx.stock)} devices in stock"


async def cursor_beyond_end(ctx: Context) -> str:
    a = ctx.handset
    beyond = a.cursor + 1000
    frame = await a.exchange(cursor=beyond)
    expect(not frame.entries and not frame.more, "entries or more past the last entry")
    expect(frame.first_entry == beyond + 1, f"first_entry {frame.first_entry}, not cursor + 1")
    return "empty page, first_entry = cursor + 1"


# -- authentication and frames --------------------------------------------------------------


def _empty(ctx: Context, handset: int | None = None) -> bytes:
    a = ctx.handset
    return uplink(a.handset if handset is None else handset, a.cursor, ())


async def auth_missing(ctx: Context) -> str:
    answer = await ctx.handset.send(_empty(ctx), forgery=Forgery.MISSING)
    expect_refusal(answer, 401, "missing_auth")
    return "401 missing_auth"


async def auth_bad_signature(ctx: Context) -> str:
    for forgery in (Forgery.WRONG_KEY, Forgery.OTHER_BODY):
        expect_refusal(await ctx.handset.send(_empty(ctx), forgery=forgery), 401, "bad_signature")
    return "another key, another body: 401 bad_signature"


async def auth_unknown_handset(ctx: Context) -> str:
    a = ctx.handset
    answer = await ctx.wire.sync(_empty(ctx, U32), Auth(U32, a.key, a.stamp()))
    expect_refusal(answer, 401, "unknown_handset")
    return "401 unknown_handset"


async def auth_handset_mismatch(ctx: Context) -> str:
    expect_refusal(await ctx.handset.send(_empty(ctx, U32)), 403, "handset_mismatch")
    return "403 handset_mismatch"


async def frame_malformed(ctx: Context) -> str:
    a = ctx.handset
    for body in (b"\xc1", b"", msgpack.packb({"version": VERSION})):
        expect_refusal(await a.send(body), 400, "malformed_frame")
    short = msgpack.packb([VERSION, a.handset, a.cursor, 0, 0])
    expect_refusal(await a.send(short), 400, "malformed_frame")
    return "not msgpack, not an array, too few fields: 400 malformed_frame"


async def frame_version(ctx: Context) -> str:
    a = ctx.handset
    body = msgpack.packb([VERSION + 1, a.handset, a.cursor, 0, 0, []])
    expect_refusal(await a.send(body), 400, "unsupported_version")
    return f"version {VERSION + 1}: 400 unsupported_version"


async def frame_bad_field(ctx: Context) -> str:
    a = ctx.handset
    (seq,) = a.seqs(1)
    rows = [[1, int(Kind.REGISTER_CUSTOMER), 0, "Kit", "+233200000000"]]  # first d_seq not 0
    body = msgpack.packb([VERSION, a.handset, 0, seq, ctx.now(), rows])
    expect_refusal(await a.send(body), 400, "bad_field")
    body = msgpack.packb([VERSION, a.handset, "0", 0, 0, []])
    expect_refusal(await a.send(body), 400, "bad_field")
    return "first d_seq 1, cursor a string: 400 bad_field"


# -- limits ---------------------------------------------------------------------------------


async def body_cap(ctx: Context) -> str:
    expect_refusal(await ctx.handset.send(b"\x00" * (MAX_BODY_BYTES + 1)), 413, "too_large")
    return f"{MAX_BODY_BYTES + 1} bytes: 413 too_large"


def _padded(ctx: Context, size: int) -> bytes:
    """A compressed frame that inflates to about `size` bytes (a trailing field pads it)."""
    a = ctx.handset
    pad = "x" * (size - 64)
    return envelope(msgpack.packb([VERSION, a.handset, a.cursor, 0, 0, [], pad]), True)


async def inflation_cap(ctx: Context) -> str:
    a = ctx.handset
    a.downlink(await a.send(_padded(ctx, MAX_INFLATED_BYTES - 1024)))
    expect_refusal(await a.send(_padded(ctx, MAX_INFLATED_BYTES + 1024)), 413, "too_large")
    return "inflating to 1 MiB - 1 KiB: 200; to 1 MiB + 1 KiB: 413 too_large"


# -- operations -----------------------------------------------------------------------------


def register(seq: int, at: int, name: str = "Kit Customer") -> Row:
    return row(seq, int(Kind.REGISTER_CUSTOMER), at, name, "+233200000000")


def sale(
    ctx: Context, seq: int, *, customer: int = 0, device: int = 0, plan: int = 0, down: int = -1
) -> Row:
    price = ctx.plan.price_per_day
    return row(
        seq,
        int(Kind.RECORD_SALE),
        ctx.now(),
        customer or ctx.customer,
        device or ctx.device,
        plan or ctx.plan.plan,
        3 * price if down < 0 else down,
    )


def payment(ctx: Context, seq: int, device: int = 0, amount: int = 0) -> Row:
    amount = amount or ctx.plan.price_per_day
    return row(seq, int(Kind.RECORD_PAYMENT), ctx.now(), device or ctx.device, amount)


def _outcome(frame: DownlinkFrame, seqs: list[int]) -> tuple[set[int], dict[int, Reason]]:
    rejected = dict(frame.rejected)
    acked = set(frame.acked)
    missing = [s for s in seqs if s not in acked and s not in rejected]
    expect(not missing, f"done does not mention seqs {missing}")
    return acked, rejected


async def ops_acknowledged(ctx: Context) -> str:
    a = ctx.handset
    c, s, p = a.seqs(3)
    ctx.customer, ctx.paid = c, p
    ctx.batch = (register(c, ctx.now()), sale(ctx, s), payment(ctx, p))
    ctx.answer = await a.exchange(ctx.batch)
    _, rejected = _outcome(ctx.answer, [c, s, p])
    expect(not rejected, f"refused: {rejected}")
    entries = await a.pull()
    codes = {e.op_seq: e for _, e in entries if isinstance(e, Keycode) and e.device == ctx.device}
    expect(s in codes and p in codes, f"keycodes paid by seqs {sorted(codes)}, need {s} and {p}")
    expect(all(codes[q].credit_s > 0 for q in (s, p)), "a keycode grants no credit")
    gone = [e for _, e in entries if isinstance(e, Stock) and e.device == ctx.device]
    expect(gone and not gone[-1].present, f"no stock out for sold device {ctx.device}")
    return f"register, sale, payment acknowledged; 2 keycodes; device {ctx.device} out of stock"


async def ops_replay(ctx: Context) -> str:
    a = ctx.handset
    before = a.cursor
    frame = await a.exchange(ctx.batch)
    assert ctx.answer is not None
    expect(
        (frame.acked, frame.rejected) == (ctx.answer.acked, ctx.answer.rejected),
        f"replay answered {frame.acked}/{frame.rejected}, first time {ctx.answer.acked}",
    )
    new = [e for _, e in await a.pull() if isinstance(e, Keycode)]
    expect(not new, f"a replay issued {len(new)} keycodes again (cursor was {before})")
    return "same answer, nothing applied twice"


async def ops_conflict(ctx: Context) -> str:
    a = ctx.handset
    other = register(ctx.customer, ctx.now(), "Someone Else")
    frame = await a.exchange([other])
    _, rejected = _outcome(frame, [ctx.customer])
    expect(rejected.get(ctx.customer) == Reason.CONFLICT, f"answered {frame.rejected or 'ack'}")
    return "same seq, other content: reason 1 conflict"


def refused_alone(reason: Reason, faulty: Callable[[Context], list[Row]]) -> Check:
    """The check that `faulty` ops are refused with `reason` in a batch whose valid
    registration is still applied (no poison operations)."""

    async def check(ctx: Context) -> str:
        a = ctx.handset
        (good,) = a.seqs(1)
        bad = faulty(ctx)
        frame = await a.exchange([register(good, ctx.now()), *bad])
        acked, rejected = _outcome(frame, [good, *(r.seq for r in bad)])
        expect(good in acked, f"the valid operation in the batch was not acknowledged: {rejected}")
        got = {r.seq: rejected.get(r.seq) for r in bad}
        expect(all(v == reason for v in got.values()), f"expected {reason.name.lower()}: {got}")
        return f"reason {int(reason)} {reason.name.lower()}, the rest applied"

    return check


def one(make: Callable[[Context, int], Row]) -> Callable[[Context], list[Row]]:
    """A faulty batch of one operation, made by `make` with a fresh seq."""

    def faulty(ctx: Context) -> list[Row]:
        (seq,) = ctx.handset.seqs(1)
        return [make(ctx, seq)]

    return faulty


def bad_fields(ctx: Context) -> list[Row]:
    """A 65-character name and a payment of 0: each a field out of its range."""
    name, amount = ctx.handset.seqs(2)
    zero = row(amount, int(Kind.RECORD_PAYMENT), ctx.now(), ctx.device, 0)
    return [register(name, ctx.now(), "x" * 65), zero]


def _no_plan(ctx: Context) -> int:
    return next(p for p in range(U32, 0, -1) if p not in ctx.plans)


def _not_ours(ctx: Context) -> int:
    return next(d for d in range(U32, 0, -1) if d not in ctx.stock and d != ctx.device)


REFUSALS: dict[Reason, Callable[[Context], list[Row]]] = {
    Reason.NOT_IN_STOCK: one(lambda c, s: sale(c, s, device=_not_ours(c))),
    Reason.UNKNOWN_CUSTOMER: one(lambda c, s: sale(c, s, customer=c.paid, device=c.spare)),
    Reason.UNKNOWN_PLAN: one(lambda c, s: sale(c, s, device=c.spare, plan=_no_plan(c))),
    Reason.UNKNOWN_ACCOUNT: one(lambda c, s: payment(c, s, device=c.spare)),
    Reason.AMOUNT_TOO_LOW: one(
        lambda c, s: sale(c, s, device=c.spare, down=c.plan.price_per_day - 1)
    ),
    Reason.ALREADY_SOLD: one(lambda c, s: sale(c, s)),
    Reason.UNKNOWN_KIND: one(lambda c, s: row(s, NEVER_A_KIND, c.now(), 1)),
    Reason.BAD_FIELD: bad_fields,
}
"""For each refusal reason, a batch that earns it (each operation with exactly one fault)."""


async def stock_out_to_siblings(ctx: Context) -> str:
    assert ctx.b is not None
    entries = await ctx.b.pull()
    gone = [e for _, e in entries if isinstance(e, Stock) and e.device == ctx.device]
    expect(gone and not gone[-1].present, f"the sibling got no stock out for {ctx.device}")
    spare = [e for _, e in entries if isinstance(e, Stock) and e.device == ctx.spare]
    expect(not spare or spare[-1].present, f"the sibling lost unsold device {ctx.spare}")
    return f"[2, {ctx.device}, format, 0] reached the sibling handset"


# -- paging and compression -----------------------------------------------------------------


async def walk(a: KitHandset, cursor: int) -> tuple[int, int]:
    """Read every page past `cursor` as the doc says a handset does: (pages, entries)."""
    pages, total, more = 0, 0, True
    while more and pages < MAX_WALK:
        page = await a.exchange(cursor=cursor)
        expect(len(page.entries) <= PAGE, f"a page of {len(page.entries)} entries")
        if page.entries:
            expect(page.first_entry == cursor + 1, f"cursor {cursor}: page at {page.first_entry}")
        expect(page.entries or not page.more, "more = 1 on a page with no entries")
        cursor = max(cursor, page.last_entry)
        pages, total, more = pages + 1, total + len(page.entries), page.more
    expect(not more, f"more still 1 after {pages} pages")
    a.cursor = max(a.cursor, cursor)
    return pages, total


async def paging_more(ctx: Context) -> str:
    """More entries than a page holds, read from cursor 0: consecutive pages of at most 256,
    `more` = 1 on all but the last. A large stock provides them; else payments make keycodes."""
    a = ctx.handset
    made = pages = total = 0
    for rounds in range(4):  # a payment of one day's price issues one keycode on most platforms
        pages, total = await walk(a, 0)
        if total > PAGE or rounds == 3:
            break
        seqs = a.seqs(BULK)
        frame = await a.exchange([payment(ctx, s) for s in seqs])
        _, rejected = _outcome(frame, seqs)
        expect(not rejected, f"payments refused: {sorted(set(rejected.values()))}")
        expect(len(frame.entries) <= PAGE, f"a page of {len(frame.entries)} entries")
        made += BULK
    expect(pages >= 2 and total > PAGE, f"{total} entries in {pages} pages after {made} payments")
    return f"{total} entries in {pages} pages of at most {PAGE} ({made} payments made)"


async def compression_uplink(ctx: Context) -> str:
    a = ctx.handset
    for count in (40, 1):  # deflated because smaller, and deflated though it is not
        seqs = a.seqs(count)
        body = uplink(a.handset, a.cursor, [payment(ctx, s) for s in seqs], True)
        acked, _ = _outcome(a.downlink(await a.send(body)), seqs)
        expect(acked == set(seqs), f"compressed batch of {count}: acked {len(acked)}")
    await a.pull()
    return "a deflated body is read whatever its size"


async def compression_downlink(ctx: Context) -> str:
    bodies = ctx.handset.seen
    packed = 0
    for body in bodies:
        obj = msgpack.unpackb(body)
        if isinstance(obj, bytes):
            packed += 1
            raw = zlib.decompress(obj)
            expect(len(body) < len(raw), f"a {len(body)}-byte deflated body holds {len(raw)}")
    return f"{packed} of {len(bodies)} answers deflated, each smaller than its frame"


# -- clocks ---------------------------------------------------------------------------------


async def clock_skew(ctx: Context) -> str:
    a = ctx.handset
    for skew_ms in (600_000, -3_600_000):  # a phone clock 10 min fast, then an hour slow
        body = _empty(ctx)
        doc = expect_refusal(await a.send(body, ts_ms=a.stamp() + skew_ms), 401, "stale_timestamp")
        server_ms, last_ms = integer(doc, "server_ms"), integer(doc, "last_ms")
        a.last_ms = max(server_ms, last_ms + 1)
        a.downlink(await a.send(body, ts_ms=a.last_ms))
    return "stale_timestamp with server_ms and last_ms; the corrected retry accepted"


async def clock_replayed(ctx: Context) -> str:
    a = ctx.handset
    a.downlink(await a.send(_empty(ctx)))
    doc = expect_refusal(await a.send(_empty(ctx), ts_ms=a.last_ms), 401, "replayed_request")
    expect(doc.get("last_ms") == a.last_ms, f"last_ms {doc.get('last_ms')}, sent {a.last_ms}")
    a.last_ms += 1
    a.downlink(await a.send(_empty(ctx), ts_ms=a.last_ms))
    return "replayed_request with last_ms; last_ms + 1 accepted"


P, F, S = "provision.answer", "sync.first_pull", "ops.acknowledged"

CLAUSES: tuple[Clause, ...] = (
    Clause(P, "Provisioning", "answered 201 with handset and server_ms", provision_answer),
    Clause(
        "provision.idempotent", "Provisioning", "same key, same handset", provision_idempotent, (P,)
    ),
    Clause("provision.bad_code", "Provisioning", "403 bad_provisioning_code", provision_bad_code),
    Clause("provision.bad_public_key", "Provisioning", "400 bad_public_key", provision_bad_key),
    Clause(
        "provision.malformed_json", "Provisioning", "400 malformed_json", provision_malformed_json
    ),
    Clause(F, "Downlink entries and paging", "catalog and stock come down", first_pull, (P,)),
    Clause(
        "auth.missing_auth", "Authentication and clocks", "401 missing_auth", auth_missing, (P,)
    ),
    Clause(
        "auth.bad_signature",
        "Authentication and clocks",
        "401 bad_signature",
        auth_bad_signature,
        (P,),
    ),
    Clause(
        "auth.unknown_handset",
        "Authentication and clocks",
        "401 unknown_handset",
        auth_unknown_handset,
        (P,),
    ),
    Clause(
        "auth.handset_mismatch",
        "Authentication and clocks",
        "403 handset_mismatch",
        auth_handset_mismatch,
        (P,),
    ),
    Clause("frame.malformed_frame", "Frames", "400 malformed_frame", frame_malformed, (P,)),
    Clause("frame.unsupported_version", "Frames", "400 unsupported_version", frame_version, (P,)),
    Clause(
        "frame.bad_field", "Frames", "400 bad_field for a frame-level field", frame_bad_field, (P,)
    ),
    Clause("limits.body", "Limits", "413 too_large past 256 KiB", body_cap, (P,)),
    Clause("limits.inflation", "Limits", "413 too_large past 1 MiB inflated", inflation_cap, (P,)),
    Clause(S, "Operations and their key", "a batch is acknowledged", ops_acknowledged, (F,)),
    Clause(
        "ops.replay", "Operations and their key", "a replay is answered again", ops_replay, (S,)
    ),
    Clause(
        "ops.conflict", "Operations and their key", "other content: conflict", ops_conflict, (S,)
    ),
    *(
        Clause(
            f"refusal.{reason.name.lower()}",
            "Refusal reasons",
            f"reason {int(reason)}, the rest of the batch applied",
            refused_alone(reason, faulty),
            (S,),
        )
        for reason, faulty in REFUSALS.items()
    ),
    Clause(
        "stock.sibling",
        "Server semantics",
        "stock out reaches every handset",
        stock_out_to_siblings,
        (S,),
    ),
    Clause(
        "paging.more", "Downlink entries and paging", "pages of 256 and more", paging_more, (S,)
    ),
    Clause(
        "paging.cursor_beyond_end",
        "Downlink entries and paging",
        "an empty page",
        cursor_beyond_end,
        (F,),
    ),
    Clause(
        "compression.uplink", "Compression", "a deflated body is read", compression_uplink, (S,)
    ),
    Clause(
        "compression.downlink",
        "Compression",
        "deflated only when smaller",
        compression_downlink,
        (F,),
    ),
    Clause(
        "clock.skew", "Authentication and clocks", "stale_timestamp and recovery", clock_skew, (P,)
    ),
    Clause(
        "clock.replayed",
        "Authentication and clocks",
        "replayed_request and recovery",
        clock_replayed,
        (P,),
    ),
)
