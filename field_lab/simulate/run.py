"""`simulate()`: one month on the virtual clock, then the judge, then the dark hours.

The judge reads the platform through its audit API, as it does after `field-lab run`: once the
simulated month is over, the same SQLite platform is served on 127.0.0.1 in real time for the
few audit reads, so the verdict comes from the same public evidence and the same checks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from field_lab.check.evidence import AuditClient, PlatformEvidence
from field_lab.check.judge import Verdict, judge
from field_lab.errors import ConfigError
from field_lab.scenario import Scenario
from field_lab.simulate import darkness, shards, vloop
from field_lab.simulate.engine import BASE, Engine, Evidence
from field_lab.simulate.findings import findings
from field_lab.simulate.month import Month
from field_lab.simulate.schedule import Schedule, schedule_of
from field_lab.workload.plan import Shard
from field_lab.world.fixture import Fixture, Stocking, seed
from field_lab.world.platform import serving
from server_stub.app import Platform as StubConfig
from server_stub.faults import PlatformFaults

WHOLE = Shard()


@dataclass(frozen=True)
class Outcome:
    scenario: Scenario
    month: Month
    fixture: Fixture
    evidence: Evidence
    verdict: Verdict
    dark: darkness.DarkHours
    wall_s: float
    """Wall-clock seconds of the whole run (set-up, month, judge)."""
    month_wall_s: float
    """Wall-clock seconds of the virtual phase alone."""
    findings: list[dict[str, Any]] = field(default_factory=list)
    """The evidence on each device a failed check names (`findings`)."""


def simulate(
    scenario: Scenario,
    month: Month,
    workdir: Path,
    *,
    faults: PlatformFaults | None = None,
    schedule: Schedule | None = None,
    progress: Callable[[str], None] | None = None,
    shard: Shard = WHOLE,
) -> Outcome:
    """Run the month in `workdir` (a fresh platform database and one file per handset).
    `faults` breaks the platform on purpose (tests of the judge only); `schedule` replaces
    the month's generated one (hand-checkable scenarios); `shard` runs only that shard's
    agents and households (`field_lab.simulate.shards`)."""
    began = time.perf_counter()
    db = workdir / "server.db"
    fixture = seed(db, Stocking.of(scenario))
    agents = fixture.agents[: scenario.fleet.agents]
    month = month.resolve_agents([a.name for a in agents])
    schedule = schedule or schedule_of(scenario, month, fixture)
    unknown = [c.serial for c in schedule.customers if c.serial not in fixture.secrets]
    if unknown or len(schedule.agents) > len(agents):
        raise ConfigError(
            f"the schedule names devices the fleet does not have ({unknown[:3]}) or more than"
            f" its {len(agents)} agents: build it from this scenario's fixture"
        )
    fixture, schedule = shards.part(fixture, schedule, shard)
    own = shards.seeded(scenario, shard)
    engine = Engine(own, month, fixture, schedule, db, workdir, faults, progress=progress)
    virtual = time.perf_counter()
    evidence, _ = vloop.run(engine.run())
    month_wall = time.perf_counter() - virtual
    if progress is not None:  # the quiet part of a big run: say it is not stuck
        progress("month settled: the judge reads the platform's audit")
    audited = asyncio.run(_audit(db, engine.audit_token))
    verdict = judge(
        evidence.history,
        evidence.claims,
        platform=audited,
        handsets=evidence.handsets,
        meters=evidence.meters,
    )
    named = findings(
        verdict.details(),
        audited,
        evidence.history,
        evidence.claims,
        evidence.meters,
        evidence.keyed,
        base=BASE,
    )
    dark = darkness.attribute(
        dark=evidence.dark,
        deliveries=evidence.deliveries,
        incidents=month.incidents,
        outages=evidence.outages,
        start=0.0,
        end=month.end,
    )
    return Outcome(
        scenario,
        month,
        fixture,
        evidence,
        verdict,
        dark,
        time.perf_counter() - began,
        month_wall,
        named,
    )


async def _audit(db: Path, token: str) -> PlatformEvidence:
    """The platform's audit, read over HTTP on 127.0.0.1 from the run's database."""
    async with serving(db, config=StubConfig(audit_token=token, synchronous="normal")) as url:
        return await AuditClient(url, token).evidence()
