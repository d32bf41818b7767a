"""The escrow book applied to the platform's tables, inside the store's transactions.

The rules are `server_stub.escrow`'s (pure): each function here loads the rows a rule needs
into an `EscrowBook`, lets the book decide, and writes what it decided: reservations, the
device's next message id, downlink entries, and an append-only event trail (the audit feed
``/v1/audit/escrow``). The store calls in at four points: the end of an exchange (`grant`,
`heard`), a sale (`reconcile` before it applies, `sold` after), a refused offline sale
(`flag`), and a device leaving an agent's stock (`revoke`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent_client.protocol.frames import Escrow, EscrowRevoked, Reason
from agent_client.protocol.keycodes import KeycodeFormat
from agent_client.protocol.ops import Operation

from .escrow import EscrowBook, Flag, Reservation, State
from .keycodes import DeviceSecret, issue

if TYPE_CHECKING:
    from .store import Handset, Store

REASONS = {
    Flag.RELEASED_TWICE: Reason.ESCROW_RELEASED_TWICE,
    Flag.NOT_IN_STOCK: Reason.NOT_IN_STOCK,
    Flag.AFTER_REVOCATION: Reason.ESCROW_REVOKED,
}
"""The refusal an offline sale gets for each abuse the book flags."""


def _event(
    store: Store,
    kind: str,
    r: Reservation,
    now_ms: int,
    handset: int | None = None,
    seq: int | None = None,
    flag: Flag | None = None,
) -> None:
    store.db.execute(
        "INSERT INTO escrow_events(at_ms, kind, agent, device, reserved_id, days, handset, seq,"
        " flag) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (now_ms, kind, int(r.agent), r.device, r.reserved_id, r.days, handset, seq,
         None if flag is None else flag.value),
    )  # fmt: skip


def _load(rows: list[Any]) -> dict[tuple[int, int], Reservation]:
    """(device, reserved id) -> Reservation, from escrow rows."""
    return {
        (device, rid): Reservation(
            str(agent),
            device,
            rid,
            days,
            State(state),
            None if sale_h is None else f"{sale_h}:{sale_s}",
        )
        for agent, device, rid, days, state, sale_h, sale_s in rows
    }


_COLUMNS = "agent, device, reserved_id, days, state, sale_handset, sale_seq"


def _handsets(store: Store, agent: int) -> list[int]:
    rows = store.db.execute(
        "SELECT handset FROM handsets WHERE agent = ? ORDER BY handset", (agent,)
    ).fetchall()
    return [int(h) for (h,) in rows]


def grant(store: Store, agent: int, now_ms: int) -> list[Reservation]:
    """Top `agent` up to its bound from its unsold stock, issuing each code at the device's
    next id and moving that id past it; every handset of the agent gets the code."""
    policy = store.escrow
    if policy.bound_days == 0:
        return []
    (exposure,) = store.db.execute(
        "SELECT coalesce(sum(days), 0) FROM escrow"
        " WHERE agent = ? AND state IN ('held', 'revoked')",
        (agent,),
    ).fetchone()
    if exposure + policy.days > policy.bound_days:
        return []  # the common case: the agent holds its full escrow already
    book = EscrowBook(policy)
    book.reservations = _load(
        store.db.execute(
            f"SELECT {_COLUMNS} FROM escrow WHERE agent = ? AND state IN ('held', 'revoked')",
            (agent,),
        ).fetchall()
    )
    room = (policy.bound_days - int(exposure)) // policy.days
    stock = dict(
        store.db.execute(
            "SELECT device, next_id FROM devices WHERE agent = ? AND customer IS NULL AND device"
            " NOT IN (SELECT device FROM escrow WHERE agent = ? AND state = 'held')"
            " ORDER BY device LIMIT ?",
            (agent, agent, room),
        ).fetchall()
    )
    made = book.grant(str(agent), stock)
    handsets = _handsets(store, agent) if made else []
    for r in made:
        fmt, key, starting_code, divider = store.db.execute(
            "SELECT format, key, starting_code, time_divider FROM devices WHERE device = ?",
            (r.device,),
        ).fetchone()
        secret = DeviceSecret(KeycodeFormat(fmt), key, starting_code, divider)
        code = issue(secret, r.reserved_id, r.days)
        store.db.execute(
            "UPDATE devices SET next_id = ? WHERE device = ?", (code.next_id, r.device)
        )
        store.db.execute(
            "INSERT INTO escrow(device, reserved_id, agent, days, credit_s, state, granted_ms)"
            " VALUES (?, ?, ?, ?, ?, 'held', ?)",
            (r.device, r.reserved_id, agent, r.days, code.credit_s, now_ms),
        )
        _event(store, "granted", r, now_ms)
        store.memo.escrow_held = True
        entry = Escrow(r.device, r.reserved_id, secret.format, code.number, code.credit_s)
        for handset in handsets:
            store._emit(handset, entry)
    return made


class Flagged(Exception):
    """An offline sale the book refused and flagged (the store refuses the operation with
    `reason`, after rolling its savepoint back, and then writes the flag)."""

    def __init__(self, flag: Flag, reservation: Reservation) -> None:
        super().__init__(flag.value)
        self.flag = flag
        self.reason = REASONS[flag]
        self.reservation = reservation


def reconcile(store: Store, handset: Handset, op: Operation, now_ms: int) -> Reservation:
    """The offline sale `op` released its device's escrowed code: accept it once (the
    reservation is reconciled to this sale), or raise Flagged."""
    device, reserved = int(op.field("device")), int(op.field("reserved_id"))
    book = EscrowBook(store.escrow)
    book.reservations = _load(
        store.db.execute(
            f"SELECT {_COLUMNS} FROM escrow WHERE device = ? AND reserved_id = ?",
            (device, reserved),
        ).fetchall()
    )
    outcome = book.reconcile(str(handset.agent), device, reserved, f"{handset.handset}:{op.seq}")
    if outcome.flag is not None:
        seen = outcome.reservation or Reservation(str(handset.agent), device, reserved, 0)
        raise Flagged(outcome.flag, seen)
    assert outcome.reservation is not None
    store.db.execute(
        "UPDATE escrow SET state = 'reconciled', sale_handset = ?, sale_seq = ?, settled_ms = ?"
        " WHERE device = ? AND reserved_id = ?",
        (handset.handset, op.seq, now_ms, device, reserved),
    )
    _event(store, "reconciled", outcome.reservation, now_ms, handset.handset, op.seq)
    return outcome.reservation


def sold(
    store: Store, device: int, released: Reservation | None, price_per_day: int, now_ms: int
) -> None:
    """After a sale applied: an offline one's escrowed days come out of its down payment (the
    meter has them already); an online one revokes the device's held code."""
    if released is None:
        revoke(store, device, now_ms)
        return
    (credit_s,) = store.db.execute(
        "SELECT credit_s FROM escrow WHERE device = ? AND reserved_id = ?",
        (device, released.reserved_id),
    ).fetchone()
    store.db.execute(
        "UPDATE devices SET balance = balance - ?, credit_until_ms = max(credit_until_ms, ?) + ?"
        " WHERE device = ?",
        (released.days * price_per_day, now_ms, credit_s * 1000, device),
    )


def flag(store: Store, handset: Handset, op: Operation, flagged: Flagged, now_ms: int) -> None:
    """Keep the flag of a refused offline sale (after its savepoint was rolled back)."""
    r = flagged.reservation
    seen = Reservation(str(handset.agent), r.device, r.reserved_id, r.days)
    _event(store, "flagged", seen, now_ms, handset.handset, op.seq, flagged.flag)


def revoke(store: Store, device: int, now_ms: int) -> list[Reservation]:
    """The device left its agent's stock (sold online, returned, moved): its held code is
    revoked, and every handset of that agent is told to drop it."""
    if not _any_held(store):  # the usual case without offline sales: nothing to revoke
        return []
    book = EscrowBook(store.escrow)
    book.reservations = _load(
        store.db.execute(
            f"SELECT {_COLUMNS} FROM escrow WHERE device = ? AND state = 'held'", (device,)
        ).fetchall()
    )
    revoked = book.revoke(device)
    for r in revoked:
        store.db.execute(
            "UPDATE escrow SET state = 'revoked', settled_ms = ? WHERE device = ?"
            " AND reserved_id = ?",
            (now_ms, device, r.reserved_id),
        )
        _event(store, "revoked", r, now_ms)
        handsets = _handsets(store, int(r.agent))
        if not handsets:  # nobody holds it: no longer exposure
            store.db.execute(
                "UPDATE escrow SET state = 'dropped' WHERE device = ? AND reserved_id = ?",
                (device, r.reserved_id),
            )
        for handset in handsets:
            n = store._emit(handset, EscrowRevoked(device, r.reserved_id))
            store.db.execute(
                "INSERT INTO escrow_unheard(handset, n, device, reserved_id) VALUES (?, ?, ?, ?)",
                (handset, n, device, r.reserved_id),
            )
    return revoked


def _any_held(store: Store) -> bool:
    """Whether any code is held in escrow (memo.escrow_held; only `grant` makes one)."""
    held = store.memo.escrow_held
    if held is None:
        found = store.db.execute("SELECT 1 FROM escrow WHERE state = 'held' LIMIT 1").fetchone()
        held = store.memo.escrow_held = found is not None
    return held


def heard(store: Store, handset: int, cursor: int, now_ms: int) -> None:
    """The handset stored its downlink up to `cursor`: revocations it has now heard stop
    counting as exposure once every handset of the agent has heard them."""
    rows = store.db.execute(
        "DELETE FROM escrow_unheard WHERE handset = ? AND n <= ? RETURNING device, reserved_id",
        (handset, cursor),
    ).fetchall()
    for device, reserved in rows:
        left = store.db.execute(
            "SELECT 1 FROM escrow_unheard WHERE device = ? AND reserved_id = ?", (device, reserved)
        ).fetchone()
        if left is not None:
            continue
        book = EscrowBook(store.escrow)
        book.reservations = _load(
            store.db.execute(
                f"SELECT {_COLUMNS} FROM escrow WHERE device = ? AND reserved_id = ?"
                " AND state = 'revoked'",
                (device, reserved),
            ).fetchall()
        )
        for r in book.reservations.values():
            book.heard(r.agent, device)
        for r in book.reservations.values():
            store.db.execute(
                "UPDATE escrow SET state = ? WHERE device = ? AND reserved_id = ?",
                (r.state.value, device, reserved),
            )
            _event(store, r.state.value, r, now_ms)
