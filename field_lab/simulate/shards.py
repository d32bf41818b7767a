"""A month split over processes (`field-lab simulate --shards N`), merged into one result.

The split: shard i of N runs the agents whose fleet index is i modulo N (`Shard.owns`, as
`field-lab run --shards` splits handsets) with every household they sold to, so a household's
payments, visits and keycodes never leave its shard. The month's world (who pays when, each
village's coverage, the agents' working days) is drawn from the run's seed for the whole fleet
before the split, so it is the same whatever N; what a shard draws as it runs (operator,
SMS gateway, handsets' jitter) comes from a seed derived from (run seed, shard, N). One shard
keeps the run's own seeds, so `--shards 1` is the single-process run.

Each shard is its own world: its own virtual clock, platform (the whole fleet seeded, its
agents active), operator, SMS gateway and meters, and its own judge reading its own platform
through the audit API. The scenario's incidents apply in every shard at the same simulated
time: a platform outage is one outage of the operator's one platform, seen by every shard's
households; an agent's phone offline only matters in that agent's shard.

The merge: dark hours add up exactly (attribution is per meter, on integer milliseconds, so the
shards' sums are the whole fleet's); the summary's other figures merge field by field
(`merged_doc`): counts add, a check unchecked anywhere is unchecked, a flag holds only if it
holds in every shard. A shard that fails, dies or goes silent ends the run with one line.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from field_lab.errors import ConfigError, HarnessError
from field_lab.lab.launch import Launcher, Processes
from field_lab.lab.shards import default_shards, follow
from field_lab.scenario import Scenario, to_dict
from field_lab.simulate import month as months
from field_lab.simulate import postmortem
from field_lab.simulate.darkness import DarkHours, DayRow, IncidentHours
from field_lab.simulate.month import Incident, Month
from field_lab.simulate.schedule import Schedule
from field_lab.workload.plan import Shard
from field_lab.world.fixture import Fixture

SHARD_MODULE = "field_lab.simulate.shard"
SILENCE_S = 1800.0
"""A shard says a line every 250 handsets set up, every simulated day and when the month has
settled: at the full size a few tens of CPU seconds apart, a few minutes on a machine shared
ten ways; half an hour of silence means it is stuck."""
RUN_FIELDS = ("scenario", "seed", "days", "agents", "incidents")
"""summary.json fields that describe the whole run: the same in every shard, kept once."""
DARK_FIELDS = ("household_dark_hours", "postmortem")
"""summary.json fields recomputed from the merged dark hours."""
WALL = "wall"


def usable_cores() -> int:
    """The cores this process may run on (its affinity), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def count(scenario: Scenario, asked: int | None = None) -> int:
    """The shards to run: `asked` (`--shards`) if the fleet has an agent for each, else by
    default one per usable core, as `run --shards` picks, but none smaller than it allows."""
    agents = scenario.fleet.agents
    if asked is None:
        return default_shards(agents, usable_cores())
    if not 1 <= asked <= agents:
        raise ConfigError(
            f"--shards {asked}: expected 1 to the fleet's {agents} agents"
            " (each shard runs at least one agent)"
        )
    return asked


# -- the split -----------------------------------------------------------------------------


def part(fixture: Fixture, schedule: Schedule, shard: Shard) -> tuple[Fixture, Schedule]:
    """The fixture and schedule one shard runs: its agents (fleet index modulo the count) in
    fleet order, renumbered from 0, and their customers. Villages' outages stay whole."""
    if shard.count == 1:
        return fixture, schedule
    mine = [plan for plan in schedule.agents if shard.owns(plan.index)]
    local = {plan.index: i for i, plan in enumerate(mine)}
    agents = tuple(fixture.agents[plan.index] for plan in mine)
    return replace(fixture, agents=agents), Schedule(
        tuple(replace(c, agent=local[c.agent]) for c in schedule.customers if c.agent in local),
        tuple(replace(plan, index=local[plan.index]) for plan in mine),
        schedule.village_outages,
    )


def seeded(scenario: Scenario, shard: Shard) -> Scenario:
    """The scenario whose seed a shard's own draws use (one shard: the run's)."""
    if shard.count == 1:
        return scenario
    return scenario.with_overrides(seed=shard.number(scenario.seed, "simulate"))


# -- dark hours on the wire, and merged ---------------------------------------------------------


def dark_to_wire(dark: DarkHours) -> dict[str, Any]:
    """A shard's dark hours as JSON (integer milliseconds: nothing rounds on the way)."""
    return {
        "start": dark.start,
        "end": dark.end,
        "unpaid_ms": dark.unpaid_ms,
        "paid_waiting_ms": dark.paid_waiting_ms,
        "by_cause_ms": dark.by_cause_ms,
        "by_incident": [[i.name, i.ms, i.households] for i in dark.by_incident.values()],
        "days": [
            [
                r.day,
                r.unpaid_ms,
                r.paid_waiting_ms,
                r.by_cause_ms,
                r.dark_households,
                r.waiting_households,
            ]
            for r in dark.days
        ],
        "hourly_dark": list(dark.hourly_dark),
        "hourly_waiting": list(dark.hourly_waiting),
        "households": dark.households,
    }


def dark_from_wire(doc: Mapping[str, Any], incidents: Sequence[Incident]) -> DarkHours:
    """`dark_to_wire` read back; `incidents` are the month's (every shard has them all)."""
    try:
        ranked = tuple(sorted(incidents, key=lambda i: i.start))  # stable: as `attribute`
        known = {i.name: i for i in ranked}
        by_incident = {}
        for name, ms, households in doc["by_incident"]:
            inc = known[name]
            by_incident[name] = IncidentHours(name, inc.kind, inc.start, int(ms), int(households))
        return DarkHours(
            start=float(doc["start"]),
            end=float(doc["end"]),
            unpaid_ms=int(doc["unpaid_ms"]),
            paid_waiting_ms=int(doc["paid_waiting_ms"]),
            by_cause_ms={str(k): int(v) for k, v in doc["by_cause_ms"].items()},
            by_incident=by_incident,
            days=tuple(
                DayRow(int(d), int(u), int(w), {str(k): int(v) for k, v in c.items()}, dh, wh)
                for d, u, w, c, dh, wh in doc["days"]
            ),
            hourly_dark=tuple(int(n) for n in doc["hourly_dark"]),
            hourly_waiting=tuple(int(n) for n in doc["hourly_waiting"]),
            households=int(doc["households"]),
            incidents=ranked,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise HarnessError(
            f"a shard's dark hours are malformed: {type(exc).__name__}: {exc}"
        ) from exc


def resolved_incidents(finals: Sequence[Mapping[str, Any]]) -> tuple[Incident, ...]:
    """The month's incidents as the shards ran them: an `agent_offline` incident's agent index
    is named by the fleet's agent id in each shard (`Month.resolve_agents`), and so is the
    incident's name in its dark hours; every shard resolves them alike, from the same fleet."""
    try:
        each = [months.parse(f["month"]).incidents for f in finals]
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise HarnessError(f"a shard's month is malformed: {type(exc).__name__}: {exc}") from exc
    if any(e != each[0] for e in each):
        raise HarnessError(f"shards resolved the month's incidents differently: {each!r:.200}")
    return each[0]


def _added(counts: Sequence[Mapping[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    return dict(sorted(total.items()))


def merged_dark(parts: Sequence[DarkHours]) -> DarkHours:
    """The whole fleet's dark hours from its shards': every figure a sum (households are
    disjoint between shards, so the counts of households add too)."""
    first = parts[0]
    shape = (first.start, first.end, len(first.days), len(first.hourly_dark))
    for p in parts:
        if (p.start, p.end, len(p.days), len(p.hourly_dark)) != shape:
            raise HarnessError(f"shards attributed different windows: {shape} and {p.start}..")

    def total(values: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
        return tuple(sum(column) for column in zip(*values, strict=True))

    return DarkHours(
        start=first.start,
        end=first.end,
        unpaid_ms=sum(p.unpaid_ms for p in parts),
        paid_waiting_ms=sum(p.paid_waiting_ms for p in parts),
        by_cause_ms=_added([p.by_cause_ms for p in parts]),
        by_incident={
            name: replace(
                inc,
                ms=sum(p.by_incident[name].ms for p in parts),
                households=sum(p.by_incident[name].households for p in parts),
            )
            for name, inc in first.by_incident.items()
        },
        days=tuple(
            DayRow(
                rows[0].day,
                sum(r.unpaid_ms for r in rows),
                sum(r.paid_waiting_ms for r in rows),
                _added([r.by_cause_ms for r in rows]),
                sum(r.dark_households for r in rows),
                sum(r.waiting_households for r in rows),
            )
            for rows in zip(*(p.days for p in parts), strict=True)
        ),
        hourly_dark=total([p.hourly_dark for p in parts]),
        hourly_waiting=total([p.hourly_waiting for p in parts]),
        households=sum(p.households for p in parts),
        incidents=first.incidents,
    )


# -- the summary merged --------------------------------------------------------------------


def merged_doc(values: Sequence[Any]) -> Any:
    """The shards' values of one summary field as the whole run's, whatever the field: counts
    add; a None (a check without evidence) anywhere stays None; a flag holds only if it holds
    everywhere; objects merge key by key (a key some shards lack counts as absent there);
    lists concatenate in shard order; texts must agree."""
    if any(v is None for v in values):
        return None
    if all(isinstance(v, bool) for v in values):
        return all(values)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return sum(values)
    if all(isinstance(v, dict) for v in values):
        keys = dict.fromkeys(k for v in values for k in v)
        return {k: merged_doc([v[k] for v in values if k in v]) for k in keys}
    if all(isinstance(v, list) for v in values):
        return [x for v in values for x in v]
    if all(v == values[0] for v in values):
        return values[0]
    raise HarnessError(f"shards disagree on a figure: {values!r:.200}")


def merged_summary(docs: Sequence[Mapping[str, Any]], dark: DarkHours) -> dict[str, Any]:
    """One summary.json from the shards' own, in their field order: the run's fields once,
    the dark hours from `dark`, every other field by `merged_doc`; no `wall` (the caller's)."""
    out: dict[str, Any] = {}
    for key in dict.fromkeys(k for d in docs for k in d):
        values = [d[key] for d in docs if key in d]
        if key in RUN_FIELDS:
            if any(v != values[0] for v in values):
                raise HarnessError(f"shards disagree on the run's {key}: {values!r:.200}")
            out[key] = values[0]
        elif key in DARK_FIELDS:
            out[key] = postmortem.summary(dark) if key == DARK_FIELDS[0] else postmortem.lines(dark)
        elif key != WALL:
            out[key] = merged_doc(values)
    return out


# -- the parent ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Merged:
    doc: dict[str, Any]
    """summary.json, `wall` included."""
    dark: DarkHours
    shards: tuple[dict[str, Any], ...]
    """Each shard's own summary.json."""
    parts: tuple[DarkHours, ...]
    """Each shard's own dark hours."""


class ShardedMonth:
    """Runs the month as N shard processes (`field_lab.simulate.shard`) and merges them.

    `launcher` starts the shards (default: processes on this machine; a test's launcher may
    break one on purpose); `progress` is told each shard's lines as they come."""

    def __init__(
        self,
        scenario: Scenario,
        month: Month,
        shards: int,
        workdir: Path,
        *,
        launcher: Launcher | None = None,
        progress: Callable[[str], None] | None = None,
        silence_s: float = SILENCE_S,
    ) -> None:
        self.scenario = scenario
        self.month = month
        self.shards = count(scenario, shards)
        self.workdir = workdir
        self.launcher: Launcher = launcher or Processes(SHARD_MODULE, own_session=True)
        self.progress = progress
        self.silence_s = silence_s

    def run(self) -> Merged:
        return asyncio.run(self._run())

    async def _run(self) -> Merged:
        began = time.perf_counter()
        orders = [
            {
                "scenario": to_dict(self.scenario),
                "month": months.to_dict(self.month),
                "shard": index,
                "shards": self.shards,
                "workdir": str(self.workdir / f"shard-{index}"),
            }
            for index in range(self.shards)
        ]
        async with self.launcher.started(orders) as links:
            tasks = [
                asyncio.create_task(follow(i, link, self._reporter(i), silence_s=self.silence_s))
                for i, link in enumerate(links)
            ]
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in pending:  # one shard failed: the others are stopped with the run
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in tasks:
                error = task.exception() if task in done else None
                if error is not None:
                    raise error
            finals = [task.result() for task in tasks]
        return self._merged(finals, time.perf_counter() - began)

    def _reporter(self, index: int) -> Callable[[dict[str, Any]], None]:
        def reported(doc: dict[str, Any]) -> None:
            if self.progress is not None:
                self.progress(
                    f"shard {index} of {self.shards}: {doc['line']} (cpu {doc['cpu']:.1f} s)"
                )

        return reported

    def _merged(self, finals: list[dict[str, Any]], wall_s: float) -> Merged:
        incidents = resolved_incidents(finals)
        parts = tuple(dark_from_wire(f["dark"], incidents) for f in finals)
        dark = merged_dark(parts)
        docs = tuple(dict(f["summary"]) for f in finals)
        doc = merged_summary(docs, dark)
        doc[WALL] = {
            "seconds": round(wall_s, 3),
            "month_seconds": max(float(d[WALL]["month_seconds"]) for d in docs),
            "sim_seconds_per_wall_second": round(self.month.end / max(wall_s, 1e-9), 1),
            "shard_cpu_seconds": [round(float(f["cpu"]), 1) for f in finals],
        }
        doc["shards"] = self.shards
        return Merged(doc, dark, docs, parts)


Write = Callable[[Path, dict[str, Any], DarkHours], dict[str, Any]]


def write(out: Path, merged: Merged, write_doc: Write) -> dict[str, Any]:
    """The run's files by `write_doc` (the command's), and each shard's own summary.json in
    `shards/<i>/`, to check a merged figure against."""
    for index, doc in enumerate(merged.shards):
        folder = out / "shards" / str(index)
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")
    return write_doc(out, merged.doc, merged.dark)


__all__ = [
    "Merged",
    "ShardedMonth",
    "count",
    "merged_dark",
    "merged_doc",
    "part",
    "write",
]
