"""The judge: every check catches the fault it names, says `unchecked` without evidence, and a
correct run (any shape Hypothesis picks) passes every check."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_client.protocol.keycodes import KeycodeFormat
from agent_client.store import OpState
from field_lab.check.evidence import (
    AppliedOp,
    AuditClient,
    HandsetEvidence,
    IssuedKeycode,
    OperatorTxn,
    PlatformEvidence,
)
from field_lab.check.judge import Claim, Verdict, judge
from field_lab.check.keys import FIGURES, MOBILE_MONEY, mm_key, op_key
from field_lab.errors import AuditError
from field_lab.measure.history import History

DAY = 86_400.0


@dataclass
class World:
    """A correct run, built by hand: what the harness saw and what the evidence says."""

    history: History
    claims: dict[str, Claim]
    platform: PlatformEvidence
    handsets: list[HandsetEvidence]
    meters: dict[int, float]

    def verdict(self, **changes: object) -> Verdict:
        kw: dict[str, object] = {
            "platform": self.platform,
            "handsets": self.handsets,
            "meters": self.meters,
        }
        kw.update(changes)
        return judge(self.history, self.claims, **kw)  # type: ignore[arg-type]


def world(payments: list[tuple[bool, int, int]], handset: int = 7) -> World:
    """One handset; each payment is (by operator?, device, days); every one confirmed,
    applied once, its keycode issued, delivered and typed."""
    history, claims = History(), {}
    ops, codes, txns, held = [], [], [], []
    meters: dict[int, float] = {}
    next_id: dict[int, int] = {}
    for n, (mobile, device, days) in enumerate(payments, start=1):
        key = mm_key(f"T{n}") if mobile else op_key(handset, n)
        history.invoke(key, MOBILE_MONEY if mobile else "record_payment", 0.0)
        history.ok(key, 1.0)
        claims[key] = Claim(device, days * DAY)
        if mobile:
            txns.append(OperatorTxn(key, "confirmed", device, days * 100))
        else:
            ops.append(AppliedOp(key, handset, "record_payment", "applied"))
        message = next_id.get(device, 0)
        next_id[device] = message + 1
        text = f"*{device % 1000:03d}{message:011d}#"
        codes.append(
            IssuedKeycode(
                n, device, handset, KeycodeFormat.NEXUS_FULL, message, text, int(days * DAY), key
            )
        )
        held.append((device, text))
        meters[device] = meters.get(device, 0.0) + days * DAY
    states = {n: OpState.ACKNOWLEDGED for n, (mobile, _, _) in enumerate(payments, 1) if not mobile}
    for device in sorted(meters):  # each device was sold (its down payment bought nothing here)
        seq = 1000 + device
        key = op_key(handset, seq)
        history.invoke(key, "record_sale", 0.0)
        history.ok(key, 1.0)
        claims[key] = Claim(device, 0.0)
        ops.append(AppliedOp(key, handset, "record_sale", "applied"))
        states[seq] = OpState.ACKNOWLEDGED
    return World(
        history,
        claims,
        PlatformEvidence(tuple(ops), tuple(codes), tuple(txns)),
        [HandsetEvidence(handset, states, tuple(held))],
        meters,
    )


PAYMENTS = st.lists(
    st.tuples(st.booleans(), st.integers(1, 4), st.integers(1, 3)), min_size=1, max_size=12
)


@settings(max_examples=60, deadline=None)
@given(PAYMENTS)
def test_a_correct_run_passes_every_check(payments: list[tuple[bool, int, int]]) -> None:
    verdict = world(payments).verdict()
    assert set(verdict.figures()) == set(FIGURES)
    assert verdict.valid, verdict.details()


@settings(max_examples=60, deadline=None)
@given(PAYMENTS, st.data())
def test_each_injected_fault_is_caught_by_its_check(
    payments: list[tuple[bool, int, int]], data: st.DataObject
) -> None:
    w = world(payments)
    codes = list(w.platform.keycodes)
    victim = data.draw(st.sampled_from(codes))
    key = victim.paid_by
    assert key is not None

    # lost: the platform forgot an acknowledged payment (no op/txn, no keycode)
    lost = PlatformEvidence(
        tuple(o for o in w.platform.operations if o.key != key),
        tuple(k for k in codes if k is not victim),
        tuple(t for t in w.platform.payments if t.key != key),
    )
    assert w.verdict(platform=lost).figures()["lost_ops"] == 1

    # duplicated: one payment bought a second keycode
    again = replace(victim, keycode=999, message_id=victim.message_id + 100, text=victim.text + "x")
    twice = replace(w.platform, keycodes=(*codes, again))
    assert w.verdict(platform=twice).figures()["duplicate_ops"] == 1

    # the same keycode issued twice
    same = replace(w.platform, keycodes=(*codes, replace(victim, keycode=999)))
    assert w.verdict(platform=same).figures()["duplicate_keycodes"] >= 1

    # a keycode nobody paid for
    stray = replace(victim, keycode=998, text="*stray#", paid_by=None)
    unpaid = replace(w.platform, keycodes=(*codes, stray))
    assert w.verdict(platform=unpaid).figures()["unexpected_ops"] == 1

    # a meter granting more than was paid; another granting less
    over = dict(w.meters)
    over[victim.device] += DAY
    assert w.verdict(meters=over).figures()["overcredited_meters"] == 1
    under = dict(w.meters)
    under[victim.device] -= DAY
    assert w.verdict(meters=under).figures()["undercredited_meters"] == 1

    # a keycode sent down that the handset lacks
    (handset,) = w.handsets
    missing = replace(handset, keycodes=tuple(k for k in handset.keycodes if k[1] != victim.text))
    assert w.verdict(handsets=[missing]).figures()["undelivered_keycodes"] == 1

    # an operation still queued on the handset
    if handset.states:
        seq = next(iter(handset.states))
        queued = replace(handset, states={**handset.states, seq: OpState.IN_FLIGHT})
        assert w.verdict(handsets=[queued]).figures()["pending_ops"] == 1


def test_without_evidence_a_check_is_unchecked_never_passed() -> None:
    w = world([(False, 1, 2), (True, 2, 1)])
    verdict = w.verdict(platform=None)
    figures = verdict.figures()
    for name in ("lost_ops", "duplicate_ops", "unexpected_ops", "duplicate_keycodes"):
        assert figures[name] is None
        assert verdict.checks()[name] == "unchecked"
    assert figures["undelivered_keycodes"] is None
    assert figures["overcredited_meters"] == 0  # the meters are still evidence
    assert not verdict.valid
    assert w.verdict(meters=None).figures()["overcredited_meters"] is None
    assert w.verdict(handsets=None).figures()["pending_ops"] is None


def test_an_unknown_outcome_bounds_credit_without_requiring_it() -> None:
    history = History()
    history.invoke("1:1", "record_payment", 0.0)
    history.info("1:1", 1.0, "timed out")
    claims = {"1:1": Claim(5, DAY)}
    for granted in (0.0, DAY):
        verdict = judge(history, claims, platform=None, handsets=None, meters={5: granted})
        assert verdict.figures()["overcredited_meters"] == 0
        assert verdict.figures()["undercredited_meters"] == 0
    verdict = judge(history, claims, platform=None, handsets=None, meters={5: 2 * DAY})
    assert verdict.figures()["overcredited_meters"] == 1


# -- the audit client against the contract ----------------------------------------------------


@pytest.fixture
async def audit_server() -> AsyncIterator[tuple[str, dict[str, object]]]:
    """A platform whose audit answers are whatever the test puts in `answers`."""
    answers: dict[str, object] = {}

    async def handler(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer good":
            return web.json_response({"error": "unauthorized"}, status=401)
        answer = answers.get(request.match_info["name"], {"items": [], "next_cursor": None})
        if isinstance(answer, bytes):
            return web.Response(body=answer)
        return web.json_response(answer)

    app = web.Application()
    app.router.add_get("/v1/audit/{name}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", answers
    finally:
        await runner.cleanup()


async def test_the_audit_client_reads_pages_and_refuses_what_breaks_the_contract(
    audit_server: tuple[str, dict[str, object]],
) -> None:
    url, answers = audit_server
    evidence = await AuditClient(url, "good").evidence()
    assert evidence == PlatformEvidence((), (), ())
    with pytest.raises(AuditError, match="401"):
        await AuditClient(url, "bad").evidence()
    bad_answers: list[object] = [
        b"not json",
        {"items": "no"},
        {
            "items": [{"handset": "1", "seq": 2, "kind": "x", "outcome": "applied"}],
            "next_cursor": None,
        },
        {
            "items": [{"handset": True, "seq": 2, "kind": "x", "outcome": "applied"}],
            "next_cursor": None,
        },
        {"items": [], "next_cursor": 5},
    ]
    for answer in bad_answers:
        answers["operations"] = answer
        with pytest.raises(AuditError):
            await AuditClient(url, "good").evidence()
    answers["operations"] = {"items": [], "next_cursor": None}
    keycode = {
        "keycode": 1,
        "device": 5,
        "handset": 1,
        "format": "nexus_full",
        "message_id": 0,
        "text": "*1#",
        "credit_s": 86400,
        "paid_by": "1:2",
    }
    answers["keycodes"] = {"items": [keycode], "next_cursor": None}
    with pytest.raises(AuditError, match="paid_by"):
        await AuditClient(url, "good").evidence()
    answers["keycodes"] = {
        "items": [{**keycode, "format": "morse", "paid_by": {"txn": "T1"}}],
        "next_cursor": None,
    }
    with pytest.raises(AuditError, match="morse"):
        await AuditClient(url, "good").evidence()


def test_a_shared_platform_is_judged_on_this_runs_part_only() -> None:
    """Another run's handsets and devices on the same platform are not this run's violations;
    a stray keycode for one of this run's devices still is."""
    w = world([(False, 1, 2), (True, 2, 1)])
    other_op = AppliedOp("99:1", 99, "record_payment", "applied")
    other_code = IssuedKeycode(50, 77, 99, KeycodeFormat.NEXUS_FULL, 0, "*77#", 86_400, "99:1")
    other_txn = OperatorTxn(mm_key("ELSEWHERE"), "confirmed", 77, 100)
    shared = PlatformEvidence(
        (*w.platform.operations, other_op),
        (*w.platform.keycodes, other_code),
        (*w.platform.payments, other_txn),
    )
    assert w.verdict(platform=shared).valid
    stray = IssuedKeycode(51, 1, 99, KeycodeFormat.NEXUS_FULL, 9, "*1#", 86_400, None)
    ours = replace(shared, keycodes=(*shared.keycodes, stray))
    assert w.verdict(platform=ours).figures()["unexpected_ops"] == 1
    # without handset evidence every operation is in scope: the other run's op is unexpected
    assert w.verdict(platform=shared, handsets=None).figures()["unexpected_ops"] == 1
