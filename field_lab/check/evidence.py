"""What the judge may read: the platform's audit API, the handsets' own stores, the meters.

Nothing here opens another package's database: the platform is read over HTTP through the
audit contract (docs/platform.md), a handset through `agent_client`'s public store API, and a
meter through the credit it granted. A platform that breaks the contract is reported as an
`AuditError` naming the endpoint and the field, never guessed around.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, overload

import aiohttp

from agent_client.protocol.errors import FrameError
from agent_client.protocol.keycodes import KeycodeFormat, keycode_text
from agent_client.store import HandsetStore, OpState
from field_lab.check.escrow import EscrowEvent, Release, parse_escrow
from field_lab.check.keys import mm_key, op_key
from field_lab.errors import AuditError
from field_lab.measure.history import History, Status
from field_lab.protocols import format_named
from field_lab.world.mno import Final, Txn

AUDIT_PATH = "/v1/audit/"
PAGE_SIZE = 500
MAX_PAGES = 10_000
"""A bound on paging (5 million rows): a platform whose cursor never ends is an error."""


@dataclass(frozen=True, slots=True)
class AppliedOp:
    key: str
    handset: int
    kind: str
    outcome: str
    """`applied`, or the reason the platform refused it."""


@dataclass(frozen=True, slots=True)
class IssuedKeycode:
    keycode: int
    device: int
    handset: int
    """The handset whose downlink carries it."""
    format: KeycodeFormat
    message_id: int
    text: str
    credit_s: int
    paid_by: str | None
    """The paying operation's or transaction's key; None: nobody paid for it."""


@dataclass(frozen=True, slots=True)
class OperatorTxn:
    key: str
    outcome: str
    """`confirmed`, `failed` or `unknown_account`."""
    device: int | None
    amount: int


@dataclass(frozen=True)
class PlatformEvidence:
    """Everything the platform says it applied, as its audit API tells it."""

    operations: tuple[AppliedOp, ...]
    keycodes: tuple[IssuedKeycode, ...]
    payments: tuple[OperatorTxn, ...]
    escrow: tuple[EscrowEvent, ...] | None = ()
    """The escrow feed's events; None: the platform serves no escrow feed (404)."""


def _get(item: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = item.get(name) if isinstance(item, Mapping) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise AuditError(f"{where}: field {name!r} is {value!r}, not per the audit contract")
    return value


def parse_operation(item: Mapping[str, Any], where: str) -> AppliedOp:
    handset, seq = _get(item, "handset", int, where), _get(item, "seq", int, where)
    return AppliedOp(
        op_key(handset, seq),
        handset,
        _get(item, "kind", str, where),
        _get(item, "outcome", str, where),
    )


def parse_keycode(item: Mapping[str, Any], where: str) -> IssuedKeycode:
    paid = item.get("paid_by") if isinstance(item, Mapping) else None
    paid_by: str | None
    if paid is None:
        paid_by = None
    elif isinstance(paid, Mapping) and "txn" in paid:
        paid_by = mm_key(_get(paid, "txn", str, where + ".paid_by"))
    elif isinstance(paid, Mapping):
        paid_by = op_key(
            _get(paid, "handset", int, where + ".paid_by"),
            _get(paid, "seq", int, where + ".paid_by"),
        )
    else:
        raise AuditError(f"{where}: paid_by is {paid!r}, not per the audit contract")
    try:
        fmt = format_named(_get(item, "format", str, where))
    except ValueError as exc:
        raise AuditError(f"{where}: {exc}") from exc
    return IssuedKeycode(
        keycode=_get(item, "keycode", int, where),
        device=_get(item, "device", int, where),
        handset=_get(item, "handset", int, where),
        format=fmt,
        message_id=_get(item, "message_id", int, where),
        text=_get(item, "text", str, where),
        credit_s=_get(item, "credit_s", int, where),
        paid_by=paid_by,
    )


def parse_payment(item: Mapping[str, Any], where: str) -> OperatorTxn:
    device = item.get("device") if isinstance(item, Mapping) else None
    if device is not None:
        device = _get(item, "device", int, where)
    return OperatorTxn(
        mm_key(_get(item, "txn", str, where)),
        _get(item, "outcome", str, where),
        device,
        _get(item, "amount", int, where),
    )


class AuditClient:
    """Reads every page of the platform's three audit endpoints with the operator's token."""

    def __init__(
        self, base_url: str, token: str, *, page_size: int = PAGE_SIZE, timeout_s: float = 30.0
    ) -> None:
        if not token:
            raise ValueError("an audit token is needed to read the audit API")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._page_size = page_size
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def evidence(self) -> PlatformEvidence:
        async with aiohttp.ClientSession(timeout=self._timeout) as session:
            ops = await self._all(session, "operations")
            keycodes = await self._all(session, "keycodes")
            payments = await self._all(session, "payments")
            escrow = await self._all(session, "escrow", missing_ok=True)
        return PlatformEvidence(
            tuple(parse_operation(item, where) for where, item in ops),
            tuple(parse_keycode(item, where) for where, item in keycodes),
            tuple(parse_payment(item, where) for where, item in payments),
            None if escrow is None else tuple(parse_escrow(item, where) for where, item in escrow),
        )

    async def check(self) -> None:
        """Read one item of one page: a wrong token or URL fails now, not after the run."""
        async with aiohttp.ClientSession(timeout=self._timeout) as session:
            await self._all(session, "operations", pages=1)

    @overload
    async def _all(
        self, session: aiohttp.ClientSession, name: str, pages: int = MAX_PAGES
    ) -> list[tuple[str, Mapping[str, Any]]]: ...

    @overload
    async def _all(
        self, session: aiohttp.ClientSession, name: str, *, missing_ok: bool
    ) -> list[tuple[str, Mapping[str, Any]]] | None: ...

    async def _all(
        self,
        session: aiohttp.ClientSession,
        name: str,
        pages: int = MAX_PAGES,
        missing_ok: bool = False,
    ) -> list[tuple[str, Mapping[str, Any]]] | None:
        """Every item of feed `name`; with `missing_ok`, None when the platform has no such
        feed (404 on the first page: a platform without offline sales)."""
        url = self.base_url + AUDIT_PATH + name
        headers = {"Authorization": f"Bearer {self._token}"}
        out: list[tuple[str, Mapping[str, Any]]] = []
        cursor: str | None = None
        for page in range(pages):
            params = {"limit": str(self._page_size if pages > 1 else 1)}
            if cursor is not None:
                params["cursor"] = cursor
            try:
                async with session.get(url, params=params, headers=headers) as response:
                    status = response.status
                    body = await response.read()
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise AuditError(f"GET {url}: {type(exc).__name__}: {exc}") from exc
            if status == 404 and missing_ok and page == 0:
                return None
            if status == 401:
                raise AuditError(
                    f"GET {url}: 401, the platform refused the audit token"
                    " (check --audit-token or PAYG_AUDIT_TOKEN)"
                )
            if status != 200:
                raise AuditError(f"GET {url}: HTTP {status} {body[:200]!r}")
            doc = _json(body, url)
            items, cursor = doc.get("items"), doc.get("next_cursor")
            if not isinstance(items, list) or not (cursor is None or isinstance(cursor, str)):
                raise AuditError(f"GET {url}: a page needs items (list) and next_cursor")
            out += [(f"{name}[{len(out) + i}]", item) for i, item in enumerate(items)]
            if cursor is None or pages == 1:
                return out
            if page and not items:
                raise AuditError(f"GET {url}: an empty page that is not the last")
        raise AuditError(f"GET {url}: more than {MAX_PAGES} pages; is the cursor moving?")


def _json(body: bytes, url: str) -> Mapping[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AuditError(f"GET {url}: the answer is not JSON") from exc
    if not isinstance(doc, Mapping):
        raise AuditError(f"GET {url}: the answer is not a JSON object")
    return doc


@dataclass(frozen=True)
class HandsetEvidence:
    """One handset's own view: each operation's state, and the keycodes it received."""

    handset: int
    states: Mapping[int, OpState]
    """seq -> state, for every operation in its outbox."""
    keycodes: tuple[tuple[int, str], ...]
    """(device, keycode text), one per downlink entry received."""
    released: tuple[Release, ...] = ()
    """Escrowed codes it released, one per offline sale in its outbox."""

    @property
    def pending(self) -> int:
        unsettled = (OpState.PENDING, OpState.IN_FLIGHT)
        return sum(1 for state in self.states.values() if state in unsettled)

    @classmethod
    async def read(cls, store: HandsetStore) -> HandsetEvidence:
        handset = await store.get("handset")
        if handset is None:
            raise AuditError("a handset without an identity has no evidence to give")
        rows = await store.queue()
        states = {row.op.seq: row.state for row in rows}
        released = tuple(
            Release(op_key(int(handset), row.op.seq), int(row.op.field("device")), int(reserved))
            for row in rows
            if (reserved := row.op.get("reserved_id")) is not None
        )
        held = []
        for code in await store.keycodes():
            try:
                held.append((code.device, keycode_text(code.format, code.number)))
            except FrameError:  # a number no keycode has: the handset holds garbage
                held.append((code.device, f"<bad {code.format.name} {code.number}>"))
        return cls(int(handset), states, tuple(held), released)


def keycodes_by_device(keycodes: Sequence[IssuedKeycode]) -> dict[int, list[IssuedKeycode]]:
    """Each device's keycodes in the order its meter must see them (message id order)."""
    out: dict[int, list[IssuedKeycode]] = {}
    for code in sorted(keycodes, key=lambda k: (k.device, k.message_id, k.keycode)):
        out.setdefault(code.device, []).append(code)
    return out


def learn(history: History, key: str, status: Status, at: float, detail: str = "") -> None:
    """Record what a client now knows of `key`: an unknown outcome may become known, a known
    one never changes, and keys the run never invoked are not its business."""
    if history.kind(key) is None or history.final(key) in (Status.OK, Status.FAIL):
        return
    if status is Status.INFO and history.final(key) is Status.INFO:
        return
    history.complete(key, status, at, detail)


def learn_from_handset(history: History, handset: HandsetEvidence, at: float) -> None:
    """Each operation as its handset knows it: acknowledged (ok), rejected (fail), or still
    queued (unknown)."""
    for seq, state in handset.states.items():
        status = {OpState.ACKNOWLEDGED: Status.OK, OpState.REJECTED: Status.FAIL}.get(
            state, Status.INFO
        )
        learn(history, op_key(handset.handset, seq), status, at, state.value)


class OperatorRecord(Protocol):
    """What the judge reads of a mobile-money operator: every transaction and its attempts
    (`field_lab.world.mno.MnoSimulator` in real time, the simulation's operator in virtual time)."""

    @property
    def history(self) -> Mapping[str, Txn]: ...


def learn_from_operator(history: History, operator: OperatorRecord, at: float) -> None:
    """Each payment as the operator knows it: confirmed (ok); refused or answered otherwise
    (fail); given up on without an answer (unknown). Payments still in flight stay open."""
    for txn, record in operator.history.items():
        if record.final is Final.PENDING:
            continue
        status = Status.INFO
        if record.final is Final.ACKNOWLEDGED:
            answers = [a.answer for a in record.attempts if a.seen and a.answer is not None]
            confirmed = bool(answers) and answers[-1].get("result") == "confirmed"
            status = Status.OK if confirmed else Status.FAIL
        elif record.final is Final.REFUSED:
            status = Status.FAIL
        learn(history, mm_key(txn), status, at, record.final.value)
