"""A custom behaviour changes the measured figures the way it should: an agent who syncs only
at the end of the day activates almost no sale within the visit, yet nothing is lost."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from field_lab.lab.lab import Lab
from field_lab.scenario import DEFAULT

SCENARIO = replace(
    DEFAULT.with_overrides(agents=3, devices=18, duration_s=8, seed=11),
    settle_s=5,
    agents=replace(DEFAULT.agents, visits_per_hour=900, sync_interval_s=2, visit_s=6),
    customers=replace(DEFAULT.customers, payments_per_hour=0, seconds_per_key=0.02),
    reports=replace(DEFAULT.reports, readers=0),
)


def success(lab: Lab) -> float:
    sales = lab.stats.total.sale_failed
    assert sales.total > 0
    return (sales.total - sales.hits) / sales.total


async def test_an_agent_who_syncs_at_night_activates_no_sale_in_the_visit(tmp_path: Path) -> None:
    (tmp_path / "field").mkdir()
    (tmp_path / "night").mkdir()
    field = Lab(SCENARIO, tmp_path / "field")
    await field.run()
    night = Lab(
        SCENARIO, tmp_path / "night", behaviour="examples.behaviours.end_of_day:EndOfDayAgent"
    )
    await night.run()
    assert success(field) >= 0.8
    assert success(night) <= 0.1
    assert night.verdict is not None
    assert night.verdict.valid, night.verdict.details()  # late, but nothing lost or twice
    assert night.stats.total.sale_failed.total == field.stats.total.sale_failed.total
