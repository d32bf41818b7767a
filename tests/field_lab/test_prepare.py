"""Set-up in worker processes: the same handsets, history and verdicts as set-up in the lab's
own process; a worker's failure reaches the lab as the error it was."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_client.adapters import CompactAdapter
from agent_client.agent import NewSale
from agent_client.errors import ServerRefused
from agent_client.protocol.frames import Keycode
from agent_client.protocol.keycodes import KeycodeFormat
from field_lab.errors import ConfigError, HarnessError
from field_lab.lab.lab import Lab
from field_lab.testing.platform import PaygPlatform
from field_lab.world.fixture import AgentSpec
from field_lab.world.fleet import Fleet
from field_lab.world.prepare import Order, Prepared, Settings, prepare
from tests.field_lab.test_lab import TINY

SMALL = replace(TINY, fleet=replace(TINY.fleet, agents=6, devices=30), duration_s=1, settle_s=2)

ints = st.integers(min_value=0, max_value=2**53)
texts = st.text(max_size=12)
specs = st.builds(
    AgentSpec,
    texts,
    texts,
    st.lists(ints, max_size=4).map(tuple),
    st.none() | texts,
    st.none() | ints,
)
sales = st.builds(NewSale, texts, texts, ints, ints, ints)
keycodes = st.builds(Keycode, ints, ints, st.sampled_from(KeycodeFormat), ints, ints)


@given(ints, specs, texts, st.lists(sales, max_size=3).map(tuple))
def test_an_order_crosses_the_pipe_unchanged(
    index: int, spec: AgentSpec, profile: str, sold: tuple[NewSale, ...]
) -> None:
    order = Order(index, spec, profile, sold)
    assert Order.of(order.line()) == order


@given(
    ints,
    st.lists(st.tuples(ints, ints), max_size=3),
    st.lists(keycodes, max_size=3),
    st.tuples(ints, ints, ints),
)
def test_what_a_worker_reports_crosses_the_pipe_unchanged(
    index: int, made: list[tuple[int, int]], codes: list[Keycode], counters: tuple[int, int, int]
) -> None:
    done = Prepared(index, made, codes, counters)
    doc = json.loads(done.line())
    assert doc["t"] == "ready"
    assert Prepared.of(doc["h"]) == done


async def run(tmp_path: Path, workers: int) -> Lab:
    await asyncio.to_thread(tmp_path.mkdir)
    lab = Lab(SMALL, tmp_path, setup_workers=workers)
    await lab.run()
    return lab


async def test_set_up_in_workers_is_recorded_and_judged_as_set_up_here(tmp_path: Path) -> None:
    here = await run(tmp_path / "here", 0)
    there = await run(tmp_path / "there", 2)
    assert set(there.setup_s) == {"prepare", "typing", "to_field", "warm_up"}
    assert there.setup_workers_cpu_s > 0
    assert here.setup_workers_cpu_s == 0
    assert there.handsets == here.handsets == SMALL.fleet.agents
    # the same sales drawn and claimed, the same operations invoked, every keycode typed
    assert there.field is not None
    assert here.field is not None
    claimed = sorted((c.device, c.credit_s) for c in there.field.claims.values())
    assert claimed == sorted((c.device, c.credit_s) for c in here.field.claims.values())
    assert there.history.counts() == here.history.counts()
    assert there.paying == here.paying
    for serial in there.paying:
        assert there.sites[serial].sold
        assert there.sites[serial].granted > 0  # its installed base's keycode was typed
    assert there.verdict is not None
    assert here.verdict is not None
    assert there.verdict.figures() == here.verdict.figures()
    assert there.verdict.valid, there.verdict.details()


async def orders_against(
    platform: PaygPlatform, tmp_path: Path, code: str
) -> tuple[Settings, list[Order]]:
    await Fleet(tmp_path, CompactAdapter()).template()
    agent = platform.agents[0]
    spec = replace(agent, code=code)
    return Settings(platform.url, "compact", tmp_path, 4), [Order(0, spec, "gprs-typ", ())]


async def nobody(done: Prepared) -> None:
    raise AssertionError(f"nothing was set up, yet {done} was reported")


@pytest.mark.payg_platform(agents=1, devices=2)
async def test_a_workers_failure_is_raised_as_it_was_raised_there(
    payg_platform: PaygPlatform, tmp_path: Path
) -> None:
    settings, orders = await orders_against(payg_platform, tmp_path, "wrong")
    with pytest.raises(ServerRefused, match="bad_provisioning_code"):
        await prepare(settings, orders, 1, nobody)
    with pytest.raises(ConfigError, match="unknown adapter 'nope'"):
        await prepare(replace(settings, adapter="nope"), orders, 1, nobody)


async def test_a_worker_that_dies_is_a_harness_error_quoting_it(tmp_path: Path) -> None:
    dying = (sys.executable, "-c", "import sys; sys.stderr.write('out of memory'); sys.exit(3)")
    settings = Settings("http://127.0.0.1:9", "compact", tmp_path, 1)
    spec = AgentSpec("a", "b", ())
    with pytest.raises(HarnessError, match="exited with 3 before it was done: out of memory"):
        await prepare(settings, [Order(0, spec, "gprs-typ", ())], 1, nobody, command=dying)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_a_lab_refuses_a_number_of_set_up_workers_that_is_not_one(
    tmp_path: Path, bad: object
) -> None:
    with pytest.raises(ConfigError, match="setup_workers must be a whole number"):
        Lab(SMALL, tmp_path, setup_workers=bad)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []  # nothing written
