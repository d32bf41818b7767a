"""The judge's escrow checks on hand-built evidence: correct accounting passes; a release
the platform never accounted, a code or sale accounted twice, an accounting with no release
and a meter credited with no sale are each caught; no escrow feed is unchecked, not passed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_client.store import OpState
from field_lab.check.escrow import EscrowEvent, Release, check_escrow, credited_unsold
from field_lab.check.evidence import AppliedOp, HandsetEvidence, PlatformEvidence
from field_lab.check.judge import Claim, judge
from field_lab.check.keys import op_key
from field_lab.measure.history import History

HANDSET = 7
RELEASES = st.lists(st.integers(1, 40), unique=True, min_size=1, max_size=10).map(
    lambda devices: [Release(op_key(HANDSET, 100 + d), d, 5 + d % 3) for d in devices]
)


def accounted(releases: list[Release]) -> list[EscrowEvent]:
    return [EscrowEvent("reconciled", r.device, r.reserved_id, r.key) for r in releases]


@settings(max_examples=50, deadline=None)
@given(RELEASES, st.data())
def test_each_accounting_fault_is_caught(releases: list[Release], data: st.DataObject) -> None:
    settled = {r.key for r in releases}
    events = accounted(releases)
    granted = [EscrowEvent("granted", r.device, r.reserved_id, None) for r in releases]
    good = check_escrow(releases, settled, granted + events)
    assert (good.unaccounted, good.twice) == ((), ())
    i = data.draw(st.integers(0, len(events) - 1))
    dropped = check_escrow(releases, settled, events[:i] + events[i + 1 :])
    assert len(dropped.unaccounted) == 1
    assert dropped.twice == ()
    assert check_escrow(releases, settled - {releases[i].key}, events[:i] + events[i + 1 :]) == (
        check_escrow(releases, settled, events)
    )  # a sale still queued is not yet the platform's to account
    again = check_escrow(releases, settled, [*events, events[i]])
    assert len(again.twice) == 2  # the code twice, and its sale twice
    phantom = EscrowEvent("reconciled", 99, 1, op_key(HANDSET, 999))
    assert len(check_escrow(releases, settled, [*events, phantom]).twice) == 1


def test_a_meter_credited_with_no_sale_is_caught() -> None:
    sales = {op_key(HANDSET, 1): 11, op_key(HANDSET, 2): 12}
    meters = {11: 86_400.0, 12: 86_400.0, 13: 0.0}
    assert credited_unsold(sales, set(sales), meters, 1.0) == ()
    refused = credited_unsold(sales, {op_key(HANDSET, 1)}, meters, 1.0)
    assert refused == ("device 12: meter granted 86400 s, no sale recorded",)


def test_the_judge_reports_escrow_figures_and_unchecked_without_a_feed() -> None:
    history = History()
    key = op_key(HANDSET, 2)
    history.invoke(key, "record_sale", 0.0)
    history.ok(key, 1.0)
    release = Release(key, 11, 6)
    handset = HandsetEvidence(HANDSET, {2: OpState.ACKNOWLEDGED}, (), (release,))
    ops = (AppliedOp(key, HANDSET, "record_sale", "applied"),)
    claims = {key: Claim(11, 86_400.0)}
    meters = {11: 86_400.0}

    def figures(escrow: tuple[EscrowEvent, ...] | None) -> dict[str, int | None]:
        platform = PlatformEvidence(ops, (), (), escrow)
        verdict = judge(history, claims, platform=platform, handsets=[handset], meters=meters)
        names = ("escrow_unaccounted", "escrow_accounted_twice", "credited_unsold_meters")
        return {n: verdict.figures()[n] for n in names}

    ok = figures(tuple(accounted([release])))
    assert ok == dict.fromkeys(ok, 0)
    assert figures(())["escrow_unaccounted"] == 1
    assert figures(None)["escrow_unaccounted"] is None  # released, and no feed to judge by
