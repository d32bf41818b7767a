"""Shards: the plan splits by handset index without loss; figures and evidence merge losslessly;
a sharded run acts on exactly the whole plan and is judged clean."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_client.store import OpState
from field_lab.check.evidence import HandsetEvidence
from field_lab.check.judge import Claim
from field_lab.check.keys import FIGURES
from field_lab.lab.lab import FieldEvidence
from field_lab.lab.stats import RunStats
from field_lab.lab.wire import evidence_to_wire, merged_evidence, merged_stats, stats_to_wire
from field_lab.measure.history import History
from field_lab.scenario import DEFAULT, load
from field_lab.workload import plan
from field_lab.workload.behaviour import agent_behaviour, customer_behaviour
from field_lab.world.fixture import Stocking, seed
from tests.field_lab.test_lab import lab_cli

SMALL = replace(
    DEFAULT.with_overrides(agents=12, devices=60, duration_s=600, seed=3),
    agents=replace(DEFAULT.agents, visits_per_hour=30),
)


def whole_plan() -> tuple[plan.Plan, dict[int, int]]:
    s = SMALL
    stock = [list(range(1000 + 5 * i, 1005 + 5 * i)) for i in range(s.fleet.agents)]
    base = plan.installed_base(s, stock)
    events = plan.field_plan(
        s, agent_behaviour(s), customer_behaviour(s), s.fleet.agents, sorted(x for _, x in base)
    )
    owner = {serial: i for i, devices in enumerate(stock) for serial in devices}
    return events, owner


@given(st.integers(1, 7))
@settings(max_examples=20, deadline=None)
def test_the_shards_parts_of_a_plan_are_disjoint_and_make_the_whole(count: int) -> None:
    whole, owner = whole_plan()
    parts = [plan.Shard(i, count).part(whole, owner) for i in range(count)]
    assert sum(len(p.events) for p in parts) == len(whole.events)
    assert sorted(e for p in parts for e in p.events) == sorted(whole.events)
    for index, part in enumerate(parts):
        for _, kind, target in part.events:
            handset = target if kind == plan.VISIT else owner[target]
            assert handset % count == index
    assert plan.digest([e for p in parts for e in p.events]) == plan.digest(list(whole.events))


def test_shard_seeds_derive_from_the_run_seed_and_the_shard() -> None:
    assert plan.Shard(0, 1).seed(7, "choices") == "7:choices"  # a single run keeps its seeds
    seeds = {plan.Shard(i, 3).seed(7, "choices") for i in range(3)}
    assert len(seeds) == 3
    assert plan.Shard(1, 3).seed(7, "choices") != plan.Shard(1, 3).seed(8, "choices")
    assert plan.Shard(1, 3).number(7, "op") == plan.Shard(1, 3).number(7, "op")


latencies = st.lists(st.floats(0.001, 5000.0), max_size=60)


@given(latencies, latencies, st.lists(st.booleans(), max_size=30), st.integers(0, 50))
@settings(max_examples=40, deadline=None)
def test_figures_merge_as_if_recorded_in_one_process(
    a: list[float], b: list[float], hits: list[bool], late: int
) -> None:
    one, left, right = RunStats(), RunStats(), RunStats()
    for values, stats in ((a, left), (b, right)):
        for v in values:
            stats.total.activation.record(v)
            stats.by_profile["gprs-typ"].sync.record(v)
            one.total.activation.record(v)
            one.by_profile["gprs-typ"].sync.record(v)
    for i, hit in enumerate(hits):
        (left if i % 2 else right).total.sale_failed.add(hit)
        one.total.sale_failed.add(hit)
        (left if i % 3 else right).read_report("d-1", None if hit else 0.5)
        one.read_report("d-1", None if hit else 0.5)
    left.late_starts, right.late_starts, one.late_starts = late, 1, late + 1
    wire = [json.loads(json.dumps(stats_to_wire(s))) for s in (left, right)]
    merged = merged_stats(wire)
    for p in (50, 95, 99, 100):
        assert merged.total.activation.percentile(p) == one.total.activation.percentile(p) or (
            one.total.activation.count == 0
        )
    assert merged.total.activation.count == one.total.activation.count
    assert merged.by_profile["gprs-typ"].sync.count == one.by_profile["gprs-typ"].sync.count
    assert merged.total.sale_failed.hits == one.total.sale_failed.hits
    assert merged.total.sale_failed.total == one.total.sale_failed.total
    assert merged.late_starts == one.late_starts
    mine, theirs = merged.by_distributor["d-1"], one.by_distributor["d-1"]
    assert (mine.report_failed.hits, mine.report_failed.total) == (
        theirs.report_failed.hits,
        theirs.report_failed.total,
    )
    assert mine.report.count == theirs.report.count == merged.report.count


def evidence(handset: int, ops: int) -> FieldEvidence:
    history = History()
    for seq in range(1, ops + 1):
        key = f"{handset}:{seq}"
        history.invoke(key, "record_payment", float(seq))
        if seq % 3 == 0:
            history.info(key, seq + 0.5, "timeout")
        if seq % 2 == 0:
            history.ok(key, seq + 1.0)
    return FieldEvidence(
        history,
        {f"{handset}:{seq}": Claim(100 + seq, 86_400.0) for seq in range(1, ops + 1)},
        [
            HandsetEvidence(
                handset,
                dict.fromkeys(range(1, ops + 1), OpState.ACKNOWLEDGED),
                ((100 + ops, "123 456"),),
            )
        ],
        {100 + seq: 3600.0 * seq for seq in range(1, ops + 1)},
    )


def test_evidence_merges_as_a_union_with_histories_replayed() -> None:
    parts = [evidence(7, 5), evidence(8, 4)]
    merged = merged_evidence([json.loads(json.dumps(evidence_to_wire(p))) for p in parts])
    assert len(merged.history.events) == sum(len(p.history.events) for p in parts)
    for part in parts:
        for key in part.history.keys(None):
            assert merged.history.final(key) == part.history.final(key)
        assert all(merged.claims[k] == c for k, c in part.claims.items())
    assert [h.handset for h in merged.handsets] == [7, 8]
    assert merged.handsets[0] == parts[0].handsets[0]
    assert merged.meters == {**parts[0].meters, **parts[1].meters}


def test_a_sharded_run_acts_on_the_whole_plan_and_is_judged_clean(tmp_path: Path) -> None:
    """`--shards 2` acts on exactly the plan a single process draws for the same seed (the
    digest of the fleet's whole plan, from the seeded fixture), and every check holds."""
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        "seed = 3\nduration_s = 6\nsettle_s = 10\n[fleet]\nagents = 4\ndevices = 16\n"
        "[agents]\nvisits_per_hour = 900\nsync_interval_s = 3\n"
        "[customers]\npayments_per_hour = 240\nseconds_per_key = 0.05\n"
    )
    out = tmp_path / "out"
    done = lab_cli("run", str(scenario), "--shards", "2", "--out", str(out), "--quiet")
    assert done.returncode in (0, 99), done.stderr.decode()[-2000:]
    doc = json.loads((out / "summary.json").read_text())
    s = load(scenario)
    fixture = seed(tmp_path / "again.db", Stocking.of(s))
    stock = [list(spec.devices) for spec in fixture.agents]
    paying = sorted(serial for _, serial in plan.installed_base(s, stock))
    expected = plan.field_plan(s, agent_behaviour(s), customer_behaviour(s), 4, paying)
    assert expected.events  # the scenario plans something to act on
    assert doc["shards"] == 2
    assert doc["plan"] == {
        "events": len(expected.events),
        "digest": plan.digest(list(expected.events)),
    }
    assert doc["handsets"] == 4
    assert doc["report_availability"] == 1.0  # the parent's readers hold a distributor's token
    assert set(doc["by_distributor"]) == {"distributor-1", "distributor-2", "distributor-3"}
    by = doc["by_distributor"].values()
    assert all(d["report_availability"] == 1.0 for d in by)  # each read with its own token
    assert sum(d["sale_attempts"] for d in by) == doc["sale_attempts"]  # shards merged them
    for name in FIGURES:
        assert doc[name] == 0, (name, doc["check_details"])
