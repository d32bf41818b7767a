"""`field-lab simulate --shards N`: the split loses and repeats no household, the dark hours
merge exactly, the summary merges field by field, a sharded run adds up to its shards and
repeats itself, and a shard that dies or goes silent ends the run at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from field_lab.cli import main
from field_lab.errors import ConfigError, HarnessError, PlatformGone
from field_lab.lab.launch import Processes, ProcessShard, ShardLink
from field_lab.lab.shards import follow
from field_lab.scenario import DEFAULT
from field_lab.simulate import month as months
from field_lab.simulate.schedule import schedule_of
from field_lab.simulate.shards import (
    SHARD_MODULE,
    ShardedMonth,
    dark_from_wire,
    dark_to_wire,
    merged_dark,
    merged_doc,
    part,
)
from field_lab.workload.plan import Shard
from field_lab.world.fixture import FIRST_SERIAL, AgentSpec, Fixture
from tests.field_lab.test_simulate_darkness import Case, cases, run

TINY = ["--days", "2", "--agents", "4", "--devices", "16", "--seed", "5", "--shards", "2"]


# -- the split ----------------------------------------------------------------------------------


def _fixture(agents: int, per_agent: int) -> Fixture:
    specs = tuple(
        AgentSpec(
            f"agent-{i:05d}",
            f"code-{i}",
            tuple(range(FIRST_SERIAL + i * per_agent, FIRST_SERIAL + (i + 1) * per_agent)),
        )
        for i in range(agents)
    )
    return Fixture(1, 500, specs, {})


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 9), st.integers(1, 4), st.integers(1, 5), st.integers(0, 99))
def test_every_household_lands_in_exactly_one_shard_with_its_own_agent(
    agents: int, per_agent: int, count: int, seed: int
) -> None:
    scenario = DEFAULT.with_overrides(agents=agents, devices=agents * per_agent, seed=seed)
    month = months.parse({"simulate": {"days": 3, "villages": 2}})
    fixture = _fixture(agents, per_agent)
    whole = schedule_of(scenario, month, fixture)
    by_serial = {c.serial: c for c in whole.customers}
    seen: list[int] = []
    for index in range(count):
        mine, schedule = part(fixture, whole, Shard(index, count))
        assert [p.index for p in schedule.agents] == list(range(len(schedule.agents)))
        for plan in schedule.agents:
            spec = mine.agents[plan.index]
            fleet_index = fixture.agents.index(spec)
            assert fleet_index % count == index
            assert replace(plan, index=fleet_index) == whole.agents[fleet_index]
        for c in schedule.customers:
            fleet_index = fixture.agents.index(mine.agents[c.agent])
            assert replace(c, agent=fleet_index) == by_serial[c.serial]  # same month, same agent
            seen.append(c.serial)
        assert schedule.village_outages == whole.village_outages
    assert sorted(seen) == sorted(by_serial)  # none lost, none twice


# -- the merge ----------------------------------------------------------------------------------


def _split(case: Case, count: int) -> list[Case]:
    """The case's meters dealt to `count` shards, as the agents' households are."""
    meters = sorted({d.meter for d in case.dark} | {d.meter for d in case.deliveries})
    shard_of = {m: i % count for i, m in enumerate(meters)}
    return [
        replace(
            case,
            dark=[d for d in case.dark if shard_of[d.meter] == i],
            deliveries=[d for d in case.deliveries if shard_of[d.meter] == i],
        )
        for i in range(count)
    ]


@settings(max_examples=50)
@given(cases(), st.integers(1, 4))
def test_the_shards_dark_hours_merge_into_the_whole_fleets(case: Case, count: int) -> None:
    assert merged_dark([run(p) for p in _split(case, count)]) == run(case)


@settings(max_examples=50)
@given(cases())
def test_dark_hours_survive_the_wire(case: Case) -> None:
    dark = run(case)
    wire = json.loads(json.dumps(dark_to_wire(dark)))
    assert dark_from_wire(wire, case.incidents) == dark


def test_a_malformed_dark_hours_line_is_the_harness_fault() -> None:
    with pytest.raises(HarnessError, match="malformed"):
        dark_from_wire({"start": 0}, [])


def test_summary_fields_merge_by_their_kind() -> None:
    docs = [
        {"checks": {"lost": 0, "pending": 2}, "ok": True, "keys": ["a"], "name": "x", "n": 1.5},
        {"checks": {"lost": 1, "pending": None, "new": 3}, "ok": False, "keys": ["b"], "name": "x"},
    ]
    assert merged_doc(docs) == {
        "checks": {"lost": 1, "pending": None, "new": 3},  # unchecked anywhere: unchecked
        "ok": False,
        "keys": ["a", "b"],
        "name": "x",
        "n": 1.5,
    }
    with pytest.raises(HarnessError, match="disagree"):
        merged_doc(["x", "y"])


@settings(max_examples=50)
@given(st.lists(st.dictionaries(st.sampled_from("abcd"), st.integers(0, 10**6)), min_size=1))
def test_counts_add_up_key_by_key(counts: list[dict[str, int]]) -> None:
    merged = merged_doc(counts)
    for key in {k for c in counts for k in c}:
        assert merged[key] == sum(c.get(key, 0) for c in counts)


# -- sharded runs ------------------------------------------------------------------------------


INCIDENTS = """
name = "tiny-incidents"

[[incident]]
kind = "platform_down"
day = 0
at = "10:00"
hours = 2

[[incident]]
kind = "agent_offline"
day = 0
at = "08:00"
hours = 24
agent = 1
"""
"""Two incidents, one of them an agent named by index (each shard names it by the agent's id)."""


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    scenario = tmp_path_factory.mktemp("scenario") / "incidents.toml"
    scenario.write_text(INCIDENTS)
    outs = []
    for name in ("a", "b"):
        out = tmp_path_factory.mktemp("sharded") / name
        assert main(["simulate", str(scenario), *TINY, "--out", str(out)]) == 0
        outs.append(out)
    return outs


def _figures(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    doc.pop("wall")
    return dict(doc)


def test_a_sharded_month_adds_up_to_its_shards(two_runs: list[Path]) -> None:
    out = two_runs[0]
    whole = _figures(out / "summary.json")
    own = [_figures(out / "shards" / str(i) / "summary.json") for i in range(2)]
    assert whole["shards"] == 2
    assert whole["all_checks_verified"] is True
    assert all(o["all_checks_verified"] for o in own)
    assert whole["devices"] == 16 == sum(o["devices"] for o in own)
    assert all(o["devices"] > 0 for o in own)
    assert whole["agents"] == 4
    counters = whole["counters"]
    assert counters["exchanges"] > counters["visits"] > 0  # set-up and visits: the whole month
    for name in ("checks", "counters"):
        for key, value in whole[name].items():
            assert value == sum(o[name].get(key, 0) for o in own), (name, key)
    dark = whole["household_dark_hours"]
    parts = [o["household_dark_hours"] for o in own]
    assert dark["households"] == sum(p["households"] for p in parts)
    assert dark["unpaid"] > 0
    for key in ("unpaid", "paid_waiting"):
        assert dark[key] == pytest.approx(sum(p[key] for p in parts), abs=1e-6)
    for cause, hours in dark["by_cause"].items():
        assert hours == pytest.approx(sum(p["by_cause"].get(cause, 0) for p in parts), abs=1e-6)
    names = [i["name"] for i in whole["incidents"]]
    assert names[1].startswith("agent-00001 phone offline")  # the index named by its id
    assert sorted(dark["by_incident"]) == sorted(names)
    for name, inc in dark["by_incident"].items():
        assert inc["hours"] == pytest.approx(
            sum(p["by_incident"][name]["hours"] for p in parts), abs=1e-6
        )
    rows = (out / "dark_hours_by_day.csv").read_text().splitlines()
    assert len(rows) == 1 + 2  # a header and one row a day
    assert whole["postmortem"][-1].endswith(f"{dark['households']} households")


def test_the_same_seed_and_shard_count_give_the_same_summary(two_runs: list[Path]) -> None:
    a, b = (out / "summary.json" for out in two_runs)
    assert json.dumps(_figures(a)) == json.dumps(_figures(b))  # the same bytes, in order
    for name in ("dark_hours_by_day.csv", "dark_households.svg"):
        assert (two_runs[0] / name).read_bytes() == (two_runs[1] / name).read_bytes()
    assert json.loads(a.read_text())["wall"]["shard_cpu_seconds"]  # wall fields are there


class KilledAfterFirstLine:
    """A real shard process killed (SIGKILL) once it has said its first line: a crash."""

    def __init__(self, inner: ProcessShard) -> None:
        self.inner = inner

    def tell(self, line: bytes) -> None:
        self.inner.tell(line)

    async def readline(self) -> bytes:
        line = await self.inner.readline()
        if line:
            self.inner.proc.kill()
        return line

    async def death(self) -> str:
        return await self.inner.death()


class Crashing(Processes):
    """Shard processes on this machine, one of which crashes mid-run."""

    def __init__(self, victim: int) -> None:
        super().__init__(SHARD_MODULE)
        self.victim = victim
        self.links: list[ShardLink] = []

    @asynccontextmanager
    async def started(self, orders: list[dict[str, Any]]) -> AsyncIterator[list[ShardLink]]:
        async with super().started(orders) as links:
            self.links = [
                KilledAfterFirstLine(link)
                if i == self.victim and isinstance(link, ProcessShard)
                else link
                for i, link in enumerate(links)
            ]
            yield self.links


def test_a_shard_that_dies_ends_the_run_with_its_reason(tmp_path: Path) -> None:
    scenario = DEFAULT.with_overrides(agents=2, devices=4, seed=5)
    month = months.parse({"simulate": {"days": 2}})  # its first line: "day 1 of 2"
    launcher = Crashing(victim=1)
    with pytest.raises(PlatformGone, match=r"shard 1 died \(exit -9\)"):
        ShardedMonth(scenario, month, 2, tmp_path, launcher=launcher).run()
    assert len(launcher.links) == 2
    assert all(_ended(link) for link in launcher.links)  # the healthy one stopped with the run


def _ended(link: ShardLink) -> bool:
    inner = link.inner if isinstance(link, KilledAfterFirstLine) else link
    assert isinstance(inner, ProcessShard)
    return inner.proc.returncode is not None


class Silent:
    """A shard that never says anything (stuck)."""

    def tell(self, line: bytes) -> None:
        pass

    async def readline(self) -> bytes:
        await asyncio.Event().wait()
        return b""

    async def death(self) -> str:
        return "never"


def test_a_silent_shard_is_given_up_on() -> None:
    with pytest.raises(PlatformGone, match="said nothing for 0 s"):
        asyncio.run(follow(3, Silent(), lambda doc: None, silence_s=0.05))


class Saying:
    """A shard that says the given lines and nothing more."""

    def __init__(self, *docs: dict[str, Any]) -> None:
        self.lines = [json.dumps(d).encode() + b"\n" for d in docs]

    def tell(self, line: bytes) -> None:
        pass

    async def readline(self) -> bytes:
        return self.lines.pop(0) if self.lines else b""

    async def death(self) -> str:
        return "died (exit 3): boom"


def test_a_shards_last_word_decides_how_the_run_ends() -> None:
    seen: list[dict[str, Any]] = []
    report = {"t": "report", "line": "day 1 of 2", "cpu": 1.0}
    done = {"t": "done", "summary": {}}
    assert asyncio.run(follow(0, Saying(report, done), seen.append, silence_s=1)) == done
    assert seen == [report]
    refused = {"t": "error", "code": 2, "message": "incident[0].agent: no such agent"}
    with pytest.raises(ConfigError, match=r"^shard 1: incident\[0\]\.agent"):
        asyncio.run(follow(1, Saying(refused), seen.append, silence_s=1))
    with pytest.raises(PlatformGone, match=r"^shard 2 died \(exit 3\): boom"):
        asyncio.run(follow(2, Saying(report), seen.append, silence_s=1))


def test_more_shards_than_agents_is_refused(tmp_path: Path) -> None:
    scenario = DEFAULT.with_overrides(agents=2, devices=4)
    with pytest.raises(ConfigError, match="--shards 3"):
        ShardedMonth(scenario, months.parse({}), 3, tmp_path)
