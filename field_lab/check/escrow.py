"""The judge's escrow checks: every code a handset released for an offline sale accounted by
the platform exactly once, and no meter credited without a recorded sale.

Evidence: the releases come from the handsets' own outboxes (an offline sale carries the
reserved id of the code it released), the accounting from the platform's audit feed
``/v1/audit/escrow`` (a `reconciled` event names the sale that released the code), the sales
from the audit's operations, and the credit from the meters themselves.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from field_lab.errors import AuditError

RECONCILED = "reconciled"
RECORD_SALE = "record_sale"


@dataclass(frozen=True, slots=True)
class Release:
    """An escrowed code a handset released: the offline sale's key, the device, the id."""

    key: str
    device: int
    reserved_id: int


@dataclass(frozen=True, slots=True)
class EscrowEvent:
    """One item of the platform's escrow feed."""

    event: str
    device: int
    reserved_id: int
    sale: str | None
    """The releasing sale's key (reconciled and flagged events)."""
    flag: str | None = None


def parse_escrow(item: Mapping[str, Any], where: str) -> EscrowEvent:
    """An escrow feed item per the audit contract, or AuditError naming the field."""

    def get(name: str, kind: type) -> Any:
        value = item.get(name) if isinstance(item, Mapping) else None
        if not isinstance(value, kind) or isinstance(value, bool):
            raise AuditError(f"{where}: field {name!r} is {value!r}, not per the audit contract")
        return value

    sale = item.get("sale") if isinstance(item, Mapping) else None
    key = None
    if sale is not None:
        handset, seq = (
            sale.get(k) if isinstance(sale, Mapping) else None for k in ("handset", "seq")
        )
        if not isinstance(handset, int) or not isinstance(seq, int):
            raise AuditError(f"{where}: sale is {sale!r}, not per the audit contract")
        key = f"{handset}:{seq}"
    flag = item.get("flag")
    if flag is not None and not isinstance(flag, str):
        raise AuditError(f"{where}: flag is {flag!r}, not per the audit contract")
    return EscrowEvent(get("event", str), get("device", int), get("reserved_id", int), key, flag)


@dataclass(frozen=True)
class EscrowCheck:
    unaccounted: tuple[str, ...]
    """Codes released for sales the platform settled without accounting the code."""
    twice: tuple[str, ...]
    """Codes or sales accounted more than once, or accounted with no release behind them."""


def check_escrow(
    releases: Sequence[Release], settled: set[str], events: Sequence[EscrowEvent]
) -> EscrowCheck:
    """`settled`: keys of sales their handsets no longer hold queued (acknowledged or refused);
    a release whose sale is still queued is not yet the platform's to account."""
    accounted = [e for e in events if e.event == RECONCILED]
    by_code = Counter((e.device, e.reserved_id) for e in accounted)
    by_sale = Counter(e.sale for e in accounted)
    done = {(e.sale, e.device, e.reserved_id) for e in accounted}
    released = {(r.key, r.device, r.reserved_id) for r in releases}
    unaccounted = [
        f"sale {r.key}: code of device {r.device} at id {r.reserved_id} released, not accounted"
        for r in releases
        if r.key in settled and (r.key, r.device, r.reserved_id) not in done
    ]
    twice = [f"device {d} id {i}: accounted {n} times" for (d, i), n in by_code.items() if n > 1]
    twice += [f"sale {s}: accounted {n} codes" for s, n in by_sale.items() if n > 1]
    twice += [
        f"sale {s}: device {d} id {i} accounted, never released by a handset"
        for s, d, i in sorted(done - released, key=str)
    ]
    return EscrowCheck(tuple(unaccounted), tuple(twice))


def credited_unsold(
    sales: Mapping[str, int], applied: set[str], meters: Mapping[int, float], tolerance: float
) -> tuple[str, ...]:
    """Meters that granted credit though no sale of their device was applied. `sales`: every
    attempted sale's key -> its device; `applied`: the keys the platform applied."""
    sold = {device for key, device in sales.items() if key in applied}
    return tuple(
        f"device {device}: meter granted {granted:g} s, no sale recorded"
        for device, granted in sorted(meters.items())
        if granted > tolerance and device not in sold
    )
