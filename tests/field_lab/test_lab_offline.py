"""Villages without coverage in the lab: agents there sell from the escrow, their sales
succeed at least as often as everywhere else, and the judge accounts every released code; a
platform that does not account them (a built-in fault) is caught."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from field_lab.lab.lab import Lab
from field_lab.lab.output import sale_success
from field_lab.lab.stats import NO_COVERAGE
from field_lab.scenario import Scenario
from server_stub.faults import PlatformFaults

from .test_lab import TINY

SMALL = TINY.with_overrides(agents=4, devices=20, duration_s=3)
OFFLINE = replace(
    SMALL,
    settle_s=3,
    agents=replace(SMALL.agents, visits_per_hour=1800),
    fleet=replace(SMALL.fleet, offline_share=0.3, outages=()),
)
"""Four agents, one of them (round(0.3 x 4)) in a village without coverage; a short settle
(cash payments in that village wait for the end of the day whatever it is)."""


async def run(tmp_path: Path, scenario: Scenario, **kw: object) -> Lab:
    lab = Lab(scenario, tmp_path, **kw)  # type: ignore[arg-type]
    await lab.run()
    return lab


async def test_offline_villages_sell_from_the_escrow_and_every_code_is_accounted(
    tmp_path: Path,
) -> None:
    lab = await run(tmp_path, OFFLINE)
    assert lab.verdict is not None
    assert lab.verdict.valid, lab.verdict.details()
    figures = lab.verdict.figures()
    for name in ("escrow_unaccounted", "escrow_accounted_twice", "credited_unsold_meters"):
        assert figures[name] == 0, name
    assert lab.field is not None
    sold_offline = lab.field.counters["offline_sales"]
    assert sold_offline > 0
    assert lab.evidence is not None
    released = [r for h in lab.evidence.handsets for r in h.released]
    assert len(released) == sold_offline
    success = sale_success(lab.stats)
    assert success["offline_sales"] == lab.stats.by_profile[NO_COVERAGE].sale_failed.total
    assert success["offline"] >= success["online"], success


async def test_the_judge_catches_released_codes_the_platform_never_accounted(
    tmp_path: Path,
) -> None:
    lab = await run(tmp_path, OFFLINE, faults=PlatformFaults(escrow_unaccounted=True))
    assert lab.verdict is not None
    figures = lab.verdict.figures()
    assert lab.field is not None
    assert figures["escrow_unaccounted"] == lab.field.counters["offline_sales"] > 0
    assert not lab.verdict.valid
