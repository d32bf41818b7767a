"""One judge for every run: what the harness attempted (the history, and what each payment
buys) against the public evidence of what happened (the audit API, the handsets, the meters).

A check whose evidence is missing is *unchecked*, never passed: its figure is None and the
caller must say so. The checks:

- operations and payments: lost (acknowledged, not applied), duplicated (applied twice: listed
  twice, or paid for more than one keycode), unexpected (applied but never attempted; applied
  though the client was told it failed; a keycode nobody paid for; a keycode a handset holds
  that the platform never issued);
- credit: each meter's granted credit between what was confirmed and what was attempted;
- keycodes: the same keycode issued or held twice; keycodes the platform sent a handset that
  it does not hold (compared as sets of keycodes, not counts);
- pending: operations still queued on a handset;
- escrow (`field_lab.check.escrow`): each code released for an offline sale accounted once,
  nothing accounted that no handset released, and no meter credited without a recorded sale.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from field_lab.check.escrow import RECORD_SALE, EscrowCheck, check_escrow, credited_unsold
from field_lab.check.evidence import HandsetEvidence, PlatformEvidence
from field_lab.check.keys import MOBILE_MONEY, op_key
from field_lab.measure.history import (
    Bounded,
    CounterCheck,
    History,
    SetCheck,
    Status,
    check_applied,
    check_bounds,
)

APPLIED = "applied"
CONFIRMED = "confirmed"
QUEUED = ("pending", "in_flight")


@dataclass(frozen=True, slots=True)
class Claim:
    """What one attempted operation or payment buys: credit on one device."""

    device: int
    credit_s: float


@dataclass(frozen=True)
class Verdict:
    ops: SetCheck | None
    payments: SetCheck | None
    credit: CounterCheck | None
    strays: tuple[str, ...] | None
    """Keycodes nobody paid for, or held by a handset though the platform never issued them."""
    keycodes_twice: tuple[str, ...] | None
    undelivered: tuple[str, ...] | None
    pending: int | None
    escrow: EscrowCheck | None = None
    credited_unsold: tuple[str, ...] | None = None

    def figures(self) -> dict[str, int | None]:
        ops, pay = self.ops, self.payments
        sets = None if ops is None or pay is None else (ops, pay)
        strays = self.strays
        return {
            "lost_ops": None if sets is None else sum(len(s.lost) for s in sets),
            "duplicate_ops": None if sets is None else sum(len(s.duplicated) for s in sets),
            "unexpected_ops": None
            if sets is None or strays is None
            else sum(len(s.unexpected) + len(s.failed_but_applied) for s in sets) + len(strays),
            "overcredited_meters": None if self.credit is None else len(self.credit.over),
            "undercredited_meters": None if self.credit is None else len(self.credit.under),
            "duplicate_keycodes": _len(self.keycodes_twice),
            "undelivered_keycodes": _len(self.undelivered),
            "pending_ops": self.pending,
            "escrow_unaccounted": None if self.escrow is None else len(self.escrow.unaccounted),
            "escrow_accounted_twice": None if self.escrow is None else len(self.escrow.twice),
            "credited_unsold_meters": _len(self.credited_unsold),
        }

    def checks(self) -> dict[str, str]:
        """`checked` or `unchecked`, per figure."""
        return {k: "unchecked" if v is None else "checked" for k, v in self.figures().items()}

    @property
    def unchecked(self) -> tuple[str, ...]:
        return tuple(k for k, v in self.figures().items() if v is None)

    @property
    def valid(self) -> bool:
        """Every check had evidence and none found a violation."""
        return all(v == 0 for v in self.figures().values())

    def details(self) -> dict[str, object]:
        """The offending keys and devices (a handful each), for reports and failing tests."""

        def few(items: Sequence[object] | None) -> list[str] | None:
            return None if items is None else [str(i) for i in items[:10]]

        out: dict[str, object] = {}
        for name, check in (("ops", self.ops), ("payments", self.payments)):
            if check is not None:
                out[name] = {
                    "attempted": check.attempted,
                    "acknowledged": check.acknowledged,
                    "recovered_unknown": check.recovered,
                    "lost": few(check.lost),
                    "duplicated": few(check.duplicated),
                    "unexpected": few(check.unexpected),
                    "failed_but_applied": few(check.failed_but_applied),
                }
        if self.credit is not None:
            out["credit"] = {
                "meters": self.credit.checked,
                "over": few(
                    [
                        f"{r.name}: credited {r.observed:.0f} s, paid for at most {r.upper:.0f} s"
                        f" (over by {r.observed - r.upper:.0f} s)"
                        for r in self.credit.over
                    ]
                ),
                "under": few(
                    [
                        f"{r.name}: credited {r.observed:.0f} s, confirmed {r.lower:.0f} s"
                        f" (short by {r.lower - r.observed:.0f} s)"
                        for r in self.credit.under
                    ]
                ),
            }
        out["strays"] = few(self.strays)
        out["keycodes_twice"] = few(self.keycodes_twice)
        out["undelivered"] = few(self.undelivered)
        if self.escrow is not None:
            out["escrow"] = {
                "unaccounted": few(self.escrow.unaccounted),
                "twice": few(self.escrow.twice),
            }
        out["credited_unsold"] = few(self.credited_unsold)
        return out


def _len(items: Sequence[object] | None) -> int | None:
    return None if items is None else len(items)


def judge(
    history: History,
    claims: Mapping[str, Claim],
    *,
    platform: PlatformEvidence | None,
    handsets: Sequence[HandsetEvidence] | None,
    meters: Mapping[int, float] | None,
    credit_tolerance_s: float = 1.0,
) -> Verdict:
    """Judge one run. `claims` maps every attempted key that buys credit to what it buys;
    `meters` maps devices to the credit seconds their meters granted. A platform that serves
    others too is judged on this run's part of its audit only (see `in_scope`)."""
    ops = payments = None
    strays: list[str] | None = None
    twice: list[str] | None = None
    undelivered: list[str] | None = None
    if platform is not None:
        platform = in_scope(platform, history, handsets, meters, claims)
        ops, payments = _applied(history, platform)
        strays, twice = _keycodes(history, platform)
        if handsets is not None:
            undelivered = []
            sent_to = _sent_to(platform)
            for handset in handsets:
                sent = sent_to.get(handset.handset, set())
                missing, foreign, held_twice = _delivery(handset, sent)
                undelivered += missing
                strays += foreign
                twice += held_twice
    credit = None if meters is None else _credit(history, claims, meters, credit_tolerance_s)
    pending = None if handsets is None else sum(h.pending for h in handsets)
    escrow = unsold = None
    if platform is not None and handsets is not None:
        escrow = _escrow(platform, handsets)
    if platform is not None and meters is not None:
        applied = {o.key for o in platform.operations if o.outcome == APPLIED}
        sales = {k: c.device for k, c in claims.items() if history.kind(k) == RECORD_SALE}
        unsold = credited_unsold(sales, applied, meters, credit_tolerance_s)
    return Verdict(
        ops=ops,
        payments=payments,
        credit=credit,
        strays=None if strays is None else tuple(strays),
        keycodes_twice=None if twice is None else tuple(twice),
        undelivered=None if undelivered is None else tuple(undelivered),
        pending=pending,
        escrow=escrow,
        credited_unsold=unsold,
    )


def _escrow(platform: PlatformEvidence, handsets: Sequence[HandsetEvidence]) -> EscrowCheck | None:
    """Unchecked only when codes were released and the platform has no escrow feed."""
    releases = [r for h in handsets for r in h.released]
    if platform.escrow is None:
        return None if releases else EscrowCheck((), ())
    settled = {
        op_key(h.handset, seq)
        for h in handsets
        for seq, state in h.states.items()
        if state.value not in QUEUED
    }
    return check_escrow(releases, settled, platform.escrow)


def in_scope(
    platform: PlatformEvidence,
    history: History,
    handsets: Sequence[HandsetEvidence] | None,
    meters: Mapping[int, float] | None,
    claims: Mapping[str, Claim],
) -> PlatformEvidence:
    """This run's part of a platform's audit: operations of this run's handsets, and keycodes
    and payments for this run's devices or paid by its keys. Without handset evidence every
    operation is in scope; without meters every keycode and payment is."""
    attempted = set(history.keys())
    ours = None if handsets is None else {h.handset for h in handsets}
    devices = None if meters is None else set(meters) | {c.device for c in claims.values()}

    def for_us(key: str | None, device: int | None) -> bool:
        return key in attempted or devices is None or device in devices

    return PlatformEvidence(
        tuple(
            o
            for o in platform.operations
            if ours is None or o.handset in ours or o.key in attempted
        ),
        tuple(k for k in platform.keycodes if for_us(k.paid_by, k.device)),
        tuple(t for t in platform.payments if for_us(t.key, t.device)),
        None
        if platform.escrow is None
        else tuple(e for e in platform.escrow if for_us(e.sale, e.device)),
    )


def _applied(history: History, platform: PlatformEvidence) -> tuple[SetCheck, SetCheck]:
    """How often the platform applied each key: the times its audit lists it as applied, or
    the keycodes it paid for, whichever is more (one payment buys at most one keycode)."""
    listed: Counter[str] = Counter(op.key for op in platform.operations if op.outcome == APPLIED)
    listed.update(t.key for t in platform.payments if t.outcome == CONFIRMED)
    paid = Counter(k.paid_by for k in platform.keycodes if k.paid_by is not None)
    applied: list[str] = []
    for key in set(listed) | set(paid):
        applied += [key] * max(listed[key], paid[key])
    mobile = set(history.keys(MOBILE_MONEY))
    mobile |= {t.key for t in platform.payments}
    ops = check_applied(
        history, [k for k in applied if k not in mobile], where=lambda k: k not in mobile
    )
    payments = check_applied(
        history, [k for k in applied if k in mobile], where=mobile.__contains__
    )
    return ops, payments


def _keycodes(history: History, platform: PlatformEvidence) -> tuple[list[str], list[str]]:
    strays = [
        f"keycode {k.keycode} for device {k.device}: paid by nobody"
        for k in platform.keycodes
        if k.paid_by is None
    ]
    issued: defaultdict[tuple[int, str], list[int]] = defaultdict(list)
    for k in platform.keycodes:
        issued[(k.device, k.text)].append(k.message_id)
    twice = [
        f"device {d}: keycode {t} issued {len(ids)} times (message ids"
        f" {', '.join(str(i) for i in sorted(ids))})"
        for (d, t), ids in issued.items()
        if len(ids) > 1
    ]
    return strays, twice


def _sent_to(platform: PlatformEvidence) -> dict[int, set[tuple[int, str]]]:
    """The (device, text) of the keycodes the platform sent each handset: one pass over its
    keycodes (not one per handset: 10,000 handsets and 70,000 keycodes took half a minute)."""
    sent: dict[int, set[tuple[int, str]]] = {}
    for k in platform.keycodes:
        sent.setdefault(k.handset, set()).add((k.device, k.text))
    return sent


def _delivery(
    handset: HandsetEvidence, sent: set[tuple[int, str]]
) -> tuple[list[str], list[str], list[str]]:
    """Which keycodes the platform sent this handset (`sent`), against which it holds."""
    counts = Counter(handset.keycodes)
    held = set(counts)
    who = f"handset {handset.handset}"
    missing = [f"{who} lacks device {d} keycode {t}" for d, t in sorted(sent - held)]
    foreign = [f"{who} holds device {d} keycode {t} never issued" for d, t in sorted(held - sent)]
    twice = [
        f"{who} holds device {d} keycode {t} {n} times" for (d, t), n in counts.items() if n > 1
    ]
    return missing, foreign, twice


def _credit(
    history: History, claims: Mapping[str, Claim], meters: Mapping[int, float], tolerance: float
) -> CounterCheck:
    lower: defaultdict[int, float] = defaultdict(float)
    upper: defaultdict[int, float] = defaultdict(float)
    for key, claim in claims.items():
        status = history.final(key)
        if status is Status.OK:
            lower[claim.device] += claim.credit_s
        if status is not Status.FAIL:
            upper[claim.device] += claim.credit_s
    devices = sorted(set(meters) | {c.device for c in claims.values()})
    return check_bounds(
        (Bounded(f"device {d}", float(meters.get(d, 0.0)), lower[d], upper[d]) for d in devices),
        tolerance=tolerance,
    )
