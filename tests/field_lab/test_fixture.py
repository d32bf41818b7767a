"""The lab's fixture names the platform's distributors: seeding spreads agents over them with a
plan and a report token each, the JSON file keeps them, and report readers read as each."""

from __future__ import annotations

from pathlib import Path

import pytest

from field_lab.world.fixture import DistributorSpec, Fixture, FixtureError, Stocking, seed
from server_stub.reports import Reports
from server_stub.store import Store


def test_seeding_spreads_agents_over_distributors_each_with_its_plan_and_token(
    tmp_path: Path,
) -> None:
    db = tmp_path / "server.db"
    fixture = seed(db, Stocking(agents=5, devices=10, distributors=2))
    names = [d.name for d in fixture.distributors]
    assert names == ["distributor-1", "distributor-2"]
    assert [a.distributor for a in fixture.agents] == [names[i % 2] for i in range(5)]
    plans = {a.distributor: fixture.plan_of(a) for a in fixture.agents}
    assert len(set(plans.values())) == 2  # a plan per distributor: sales need their own
    assert fixture.plan == plans["distributor-1"]
    store, reports = Store.open(db), Reports.open(db)
    try:
        for d in fixture.distributors:  # each token is its distributor's, and no other's
            owner = reports.tenant(d.token)
            assert owner == store.distributor_id(d.name)
            mine = {a.name for a in fixture.agents if a.distributor == d.name}
            rows = store.db.execute(
                "SELECT name FROM agents WHERE distributor = ?", (owner,)
            ).fetchall()
            assert {name for (name,) in rows} == mine
    finally:
        store.close()
        reports.close()
    assert Fixture.from_json(fixture.to_json()) == fixture


def test_one_distributor_is_the_databases_default_and_never_more_than_one_per_agent(
    tmp_path: Path,
) -> None:
    one = seed(tmp_path / "one.db", Stocking(agents=2, devices=2))
    assert [d.name for d in one.distributors] == ["default"]
    capped = seed(tmp_path / "capped.db", Stocking(agents=2, devices=2, distributors=9))
    assert len(capped.distributors) == 2


def test_readers_read_as_every_distributor_and_without_any_send_the_given_token() -> None:
    ds = (DistributorSpec("a", "ta"), DistributorSpec("b", "tb"), DistributorSpec("c", "tc"))
    fixture = Fixture(1, 100, (), {}, ds)
    assert fixture.readers(4) == [("a", "ta"), ("b", "tb"), ("c", "tc"), ("a", "ta")]
    assert fixture.readers(1) == [("a", "ta"), ("b", "tb"), ("c", "tc")]  # one each at least
    assert fixture.readers(0) == []
    bare = Fixture(1, 100, (), {})
    assert bare.readers(2, "tok") == [(None, "tok"), (None, "tok")]
    assert bare.readers(1) == [(None, None)]


def test_a_fixture_naming_an_unknown_distributor_is_refused(tmp_path: Path) -> None:
    fixture = seed(tmp_path / "s.db", Stocking(agents=2, devices=2, distributors=2))
    text = fixture.to_json().replace('"distributor": "distributor-2"', '"distributor": "nobody"')
    with pytest.raises(FixtureError, match="nobody"):
        Fixture.from_json(text)
