"""The fuzz campaign at a small size: every decoder survives mutations of its real seeds,
the seeds reach deep validation, signed sync frames over HTTP never earn a 5xx, and the
checker fails the campaign (and the reliability report) on an injected crash or 5xx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from field_lab.chaos.fuzz import SYNC, campaign, headline, mutation_run, passed, table
from field_lab.chaos.mutate import Mutator
from field_lab.chaos.report import verdicts
from field_lab.chaos.seeds import golden
from field_lab.chaos.syncfuzz import fuzz_sync, sync_campaign
from field_lab.chaos.tally import Tally
from field_lab.chaos.targets import Target, one_input, targets
from field_lab.chaos.world import CONFIG
from field_lab.net import LOOPBACK
from server_stub.app import create_app

TARGETS = targets()


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_decoder_survives_mutations_of_its_seeds(name: str) -> None:
    result = mutation_run(TARGETS[name], 300, seed=5)
    assert result["inputs"] == 300
    assert result["crashes"] == 0, result["crash_examples"]
    assert result["seeds"] > 0
    assert result["outcomes"] >= 2  # refusals and acceptances, not one answer to everything
    assert result["coverage"]["lines"] > 20


@pytest.mark.parametrize("name", ["nexus_full", "nexus_small", "openpaygo", "keypad"])
def test_the_golden_seeds_are_valid_codes_for_the_targets_devices(name: str) -> None:
    target = TARGETS[name]
    outcomes = [one_input(target, seed) for seed in target.seeds()]
    assert any("applied" in o for o in outcomes), outcomes


def test_the_keypad_target_gives_every_input_a_fresh_meter() -> None:
    """The same valid code typed 200 times is applied every time: never a duplicate of the
    previous input's, never stuck behind the previous inputs' rate limit."""
    keypad = TARGETS["keypad"]
    code = next(s for s in keypad.seeds() if s[:2] == b"\x00\x00" and b"\n" not in s)
    assert {one_input(keypad, code) for _ in range(200)} == {one_input(keypad, code)}
    assert "applied" in one_input(keypad, code)


def test_a_crash_is_counted_and_kept_and_fuzzing_goes_on() -> None:
    def decoder(data: bytes) -> str:
        if b"!" in data:
            raise IndexError("boom")
        if not data:
            raise ValueError("empty")
        return "ok"

    tally = Tally()
    target = Target(decoder, (ValueError,))
    for data in (b"a", b"", b"!x", b"b", b"!!"):
        tally.feed(target, data)
    assert tally.inputs == 5
    assert tally.crashes == 2
    assert [e["input"] for e in tally.examples] == [b"!x".hex(), b"!!".hex()]
    assert tally.examples[0]["error"] == "IndexError: boom"
    assert tally.outcomes["ok"] == 2
    assert tally.outcomes["refused ValueError: empty"] == 1


@given(seed=st.integers(0, 2**32), data=st.binary(max_size=64))
def test_the_mutator_stays_within_its_bound_and_is_seeded(seed: int, data: bytes) -> None:
    import random

    one = Mutator(random.Random(seed), max_len=80).mutate(data, [data, b"12345"])
    two = Mutator(random.Random(seed), max_len=80).mutate(data, [data, b"12345"])
    assert one == two
    assert len(one) <= 80


def _broken_nexus() -> Target:
    """The real Nexus full decoder with a bug: it raises on frames holding a `9`."""
    real = TARGETS["nexus_full"]

    def call(data: bytes) -> str:
        if b"9" in data[1:]:
            raise KeyError("a bug on 9")
        return real.call(data)

    return Target(call, real.refusals, real.seeds)


def _report_figures(section: dict[str, Any]) -> dict[str, Any]:
    """Every other section passing, so `fuzzing` alone decides."""
    return {
        "crash": {"valid": True},
        "tearing": [{"cuts": 1, "violations": 0}],
        "injected": {},
        "faults": [{"digest": "d", "valid": True}],
        "fuzz": section,
        "load": [{"largest_held": {"handsets": 1}}],
    }


async def test_an_injected_decoder_bug_fails_the_campaign_and_the_report() -> None:
    plan = {"nexus_full": 400, "nexus_small": 200}
    clean = await campaign(plan, in_process={n: TARGETS[n] for n in plan})
    assert passed(clean)
    assert verdicts(_report_figures(clean))["fuzzing"] is True

    broken = {"nexus_full": _broken_nexus(), "nexus_small": TARGETS["nexus_small"]}
    section = await campaign(plan, in_process=broken)
    assert section["inputs"] == 600
    assert section["crashes"] > 0
    assert not passed(section)
    assert verdicts(_report_figures(section))["fuzzing"] is False
    assert "targets short of plan or failing: nexus_full." in headline(section)
    assert any("KeyError: 'a bug on 9'" in line for line in table(section))


async def test_signed_mutated_sync_frames_reach_validation_and_never_a_5xx() -> None:
    tally = await fuzz_sync(160, seed_=3)
    assert tally.inputs == 160
    assert tally.crashes == tally.server_errors == 0, tally.examples
    statuses = {o.split(" ", 1)[0] for o in tally.outcomes}
    assert "401" not in statuses  # every signature held: validation beyond it was reached
    assert {"200", "400"} <= statuses
    assert any("rejected" in o and "none" not in o for o in tally.outcomes), tally.outcomes
    assert any(o.startswith("400 bad_field") for o in tally.outcomes)


@asynccontextmanager
async def _platform_with_a_500(db: Path) -> AsyncIterator[str]:
    """The real platform with one bug built in: a batch of 30+ operations crashes the handler."""

    @web.middleware
    async def bug(request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        if request.path == "/v1/sync" and len(body) > 600:
            raise RuntimeError("a bug on big batches")
        return await handler(request)

    app = create_app(db, platform=CONFIG)
    app.middlewares.append(bug)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, LOOPBACK, 0)
        await site.start()
        yield f"http://{LOOPBACK}:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_an_injected_server_error_fails_the_campaign() -> None:
    async def broken(runs: int, seed: int) -> dict[str, Any]:
        return await sync_campaign(runs, seed, serve=_platform_with_a_500)

    section = await campaign({SYNC: 120}, in_process={}, sync=broken)
    (sync,) = section["targets"]
    assert sync["server_errors"] > 0
    assert sync["by_status"]["500"] == sync["server_errors"]
    assert not passed(section)
    assert verdicts(_report_figures(section))["fuzzing"] is False


@pytest.mark.timeout(180)
async def test_the_campaign_runs_targets_in_child_processes() -> None:
    """The production path: each target fuzzed in its own process (atheris when installed),
    its corpus replayed for coverage."""
    section = await campaign({"report_query": 300}, jobs=1)
    assert passed(section), section
    assert section["inputs"] == 300
    for result in section["targets"]:
        assert result["coverage"]["lines"] > 10
        assert result["seeds"] > 0
        if section["atheris"]:
            assert result["edges"] > 0


def test_the_seeds_come_from_the_golden_traces() -> None:
    g = golden()
    assert {d.protocol for d in g.devices} == {
        "nexus-full",
        "nexus-small",
        "openpaygo",
        "openpaygo-restricted",
    }
    assert all(g.codes(p) for p in ("nexus-full", "nexus-small", "openpaygo"))
