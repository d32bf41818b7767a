"""The pytest plugin as a user meets it: a user's test file run by pytest (pytester) with all
five fixtures, markers and options, `pytest --fixtures` in a directory outside this repository,
and every control of `payg_link` shown acting on a real handset's sync."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent_client.agent import Agent
from agent_client.protocol.sync import SyncConfig
from agent_client.store import OpState
from field_lab.link import BUILTIN_PROFILES
from field_lab.testing.dut import Dut, SimulatorSpec, open_dut
from field_lab.testing.errors import DutTimeout, DutUnreachable, FixtureError
from field_lab.testing.link import LinkSpec, PaygLink
from field_lab.testing.platform import PaygPlatform, PlatformSpec
from meter_sim import Outcome
from meter_sim.line_client import Refused
from server_stub.faults import PlatformFaults

pytest_plugins = ["pytester"]

FIXTURES = ("payg_platform", "payg_agent", "payg_meter", "payg_link", "payg_dut")
QUICK = SyncConfig(backoff_base_s=0.05, backoff_cap_s=0.2)
"""Handsets in these tests retry after 25-50 ms instead of 1-2 s."""
RESETS_FAST = BUILTIN_PROFILES["perfect"].replace(name="resets-fast", reset_after_s=0.3)
DAY_S = 86_400

USER_INI = """
[pytest]
addopts = --strict-markers --strict-config -p no:cacheprovider
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""

USER_TESTS = """
import re

import pytest

from field_lab.testing.errors import DutTimeout, FixtureError

# pytest-asyncio's strict mode, as most projects run it: async tests say so


@pytest.mark.asyncio
async def test_a_sale_over_the_link_lights_the_meter(
    payg_platform, payg_agent, payg_link, payg_meter, payg_dut
):
    device = payg_platform.agents[0].devices[0]
    customer = await payg_agent.register_customer("Esi", "+233200000001")
    await payg_agent.record_sale(customer, device, payg_platform.plan,
                                 3 * payg_platform.price_per_day)
    report = await payg_agent.sync()
    assert (report.pending, report.rejected) == (0, [])
    assert payg_link.stats()["directions"]["up"]["payload_bytes"] > 0  # it went over the link
    (keycode,) = await payg_agent.keycodes_for(device)
    meter = payg_meter(device)
    assert meter.enter_keycode(keycode.text, 0.0).outcome.value == "applied"
    assert meter.credit_remaining(0.0) == 3 * 86400
    hello = payg_dut.command("HELLO")
    assert re.fullmatch(r"OK HELLO meter-sim line-protocol=1 protocol=nexus-full .*", hello)
    payg_dut.write("STATUS")
    status = payg_dut.expect(r"state=(\\w+) output=")  # the stream may stop mid-word
    assert status.group(1) == "disabled"
    assert payg_dut.command("TIME -1").startswith("ERR bad-argument")
    with pytest.raises(DutTimeout, match="(?s)expected 'never'.*OK HELLO"):
        payg_dut.expect("never", timeout=0.2)


@pytest.mark.asyncio
@pytest.mark.payg_platform(agents=3, devices=7, protocols={"openpaygo": 1}, price_per_day=100)
async def test_the_marker_sizes_the_platform(payg_platform, payg_meter):
    assert [len(a.devices) for a in payg_platform.agents] == [3, 2, 2]
    assert payg_platform.price_per_day == 100
    assert {s.format.name for s in payg_platform.fixture.secrets.values()} == {"OPENPAYGO"}
    with pytest.raises(FixtureError, match="device 1 is not on this platform"):
        payg_meter(1)
    txn = await payg_platform.pay(payg_platform.devices[0], 100)
    assert txn.final.value == "refused"  # no sale yet: unknown account


@pytest.mark.asyncio
@pytest.mark.parametrize("payg_platform", [{"agents": 1, "devices": 1}], indirect=True)
async def test_an_indirect_parameter_sizes_it_too(payg_platform):
    assert len(payg_platform.devices) == 1
    assert (await payg_platform.audit().evidence()).operations == ()


@pytest.mark.asyncio
@pytest.mark.payg_platform(agents=2, devices=1)
async def test_a_bad_marker_is_an_error_before_anything_runs(payg_platform):
    raise AssertionError("never reached")


@pytest.mark.payg_dut(pty=True, protocol="nexus-small")
def test_the_simulator_on_a_pty(payg_dut):
    assert payg_dut.name.startswith("/dev/pts/")
    assert "protocol=nexus-small" in payg_dut.command("HELLO")
"""

IN_PROCESS = ("-W", "ignore::pytest.PytestAssertRewriteWarning")
"""Run in this process, the user's session finds the package's modules imported already (by
this session), so it cannot rewrite their asserts and says so; a user's own session does not."""

USER_BENCH = """
def test_a_device_given_on_the_command_line(payg_dut):
    assert payg_dut.name == "loop://"
    payg_dut.write("HELLO")  # a loop:// port echoes: the line comes straight back
    assert payg_dut.expect(["nope", r"^HE(L+)O$"]).group(1) == "LL"
"""


def test_a_users_test_file_runs_with_every_fixture(pytester: pytest.Pytester) -> None:
    pytester.makeini(USER_INI)
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_inprocess(*IN_PROCESS)
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.re_match_lines(
        [r".*FixtureError: payg_platform: devices must be 2\.\.100000 \(at least one per agent\).*"]
    )


def test_the_command_line_picks_the_device(pytester: pytest.Pytester) -> None:
    pytester.makeini(USER_INI)
    pytester.makepyfile(test_bench=USER_BENCH)
    result = pytester.runpytest_inprocess(
        *IN_PROCESS, "--payg-dut-url", "loop://", "--payg-baud", "9600"
    )
    result.assert_outcomes(passed=1)
    bad = pytester.runpytest_inprocess(*IN_PROCESS, "--payg-baud", "0")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.re_match_lines([r".*--payg-baud: expected a positive integer, got '0'.*"])


UNRELATED = ("-p", "no:schemathesis", "-p", "no:hypothesispytest", "-p", "no:anyio")
"""Other plugins of this environment that take seconds to import and have nothing to show."""


def test_pytest_fixtures_lists_them_outside_this_repository(tmp_path: Path) -> None:
    listing = subprocess.run(
        [sys.executable, "-m", "pytest", "--fixtures", "-p", "no:cacheprovider", *UNRELATED],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listing.returncode == 0, listing.stderr
    shown = re.findall(r"^(payg_\w+) -- ", listing.stdout, re.MULTILINE)
    assert shown == list(FIXTURES)
    assert "A seeded platform stand-in (server_stub) on 127.0.0.1" in listing.stdout


# -- what each fixture refuses, at once and by name -------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"agents": 0}, r"agents must be 1\.\.10000, got 0"),
        ({"agents": True}, "agents must be an int"),
        ({"devices": 1}, r"devices must be 2\.\.100000"),
        ({"protocols": {}}, "protocols must be a non-empty mapping"),
        ({"protocols": {"nexus-huge": 1}}, "unknown protocol 'nexus-huge'; known: nexus-full"),
        ({"protocols": {"openpaygo-restricted": 1}}, "unknown protocol 'openpaygo-restricted'"),
        ({"protocols": {"nexus-full": float("nan")}}, "protocol 'nexus-full': weight must be a"),
        ({"price_per_day": 0}, "price_per_day must be >= 1"),
        ({"faults": {"lose_ack_every": 1}}, "faults must be a server_stub.faults.PlatformFaults"),
        ({"mm_secret": b""}, "mm_secret must be non-empty"),
        ({"mm_secret": "s", "mobile_money": False}, "mm_secret given with mobile_money=False"),
        ({"audit_token": "has space"}, "audit_token must be non-empty visible ASCII"),
        ({"audit": "yes"}, "audit must be True or False"),
        ({"agent": 1}, r"unknown argument\(s\) \['agent'\]; known: \['agents'"),
    ],
)
def test_a_bad_platform_spec_names_what_to_fix(options: dict[str, object], message: str) -> None:
    with pytest.raises(FixtureError, match=f"^payg_platform: {message}"):
        PlatformSpec.of(options)


def test_link_and_device_specs_are_checked_when_made() -> None:
    with pytest.raises(FixtureError, match="unknown profile 'gprs-great'; known: 3g"):
        LinkSpec(profile="gprs-great")
    with pytest.raises(FixtureError, match="seed must be an int"):
        LinkSpec(seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(FixtureError, match="protocol must be one of"):
        SimulatorSpec(protocol="openpaygo-restricted")
    with pytest.raises(FixtureError, match="key must be 16 bytes or 32 hex digits"):
        SimulatorSpec(key="abc")
    with pytest.raises(FixtureError, match="starting_code is for the openpaygo protocol only"):
        SimulatorSpec(starting_code=5)
    assert SimulatorSpec(protocol="openpaygo", key=b"k" * 16, starting_code=7).argv()[-5:] == [
        "6b" * 16,
        "--starting-code",
        "7",
        "--tcp",
        "127.0.0.1:0",
    ]
    with pytest.raises(DutUnreachable, match="cannot open /nonexistent/tty"):
        open_dut("/nonexistent/tty")
    with pytest.raises(FixtureError, match="baud must be a positive int"):
        open_dut("loop://", baud=0)


def test_expect_takes_the_earliest_of_several_patterns_and_consumes_to_it() -> None:
    dut = open_dut("loop://", timeout_s=1.0)
    try:
        dut.write("OK ONE")
        dut.write("OK TWO")
        assert dut.expect([r"TWO", r"OK (\w+)"]).group(0) == "OK ONE"
        assert dut.expect(r"OK (\w+)").group(1) == "TWO"
        assert dut.lines == ["OK ONE", "OK TWO"]
        with pytest.raises(DutTimeout, match=r"expected 'OK' within 0\.1 s; last lines seen"):
            dut.expect("OK", timeout=0.1)  # consumed already
        with pytest.raises(FixtureError, match="ASCII only"):
            dut.write("CODE ½")
    finally:
        dut.close()


@pytest.mark.payg_dut(timeout=0.5)
def test_the_simulated_device_answers_the_line_protocol(payg_dut: Dut) -> None:
    assert payg_dut.command("WAIT 3600") == "OK TIME 3600"
    assert payg_dut.command("FLY").startswith("ERR unknown-command 'FLY' is not one of: CODE")
    assert payg_dut.command("CODE *123 456 789 012 34#").startswith("OK CODE invalid credit=0")
    assert payg_dut.name.startswith("tcp://127.0.0.1:")
    # the typed calls of meter_sim's LineClient, and RESET for the next test's isolation
    assert payg_dut.hello().protocol == "nexus-full"
    assert payg_dut.status().time == 3600.0
    assert payg_dut.reset() == 0.0
    assert payg_dut.status().credit == 0.0
    with pytest.raises(Refused) as refused:
        payg_dut.code("")
    assert refused.value.code == "bad-argument"
    with pytest.raises(FixtureError, match="seconds must be a number 0"):
        payg_dut.time(-1)  # the test's mistake: never sent


# -- payg_link's controls, each seen on a real handset's sync ----------------------------------


async def _sale(agent: Agent, platform: PaygPlatform, index: int = 0) -> int:
    device = platform.agents[0].devices[index]
    customer = await agent.register_customer(f"Customer {index}", "+233200000001")
    await agent.record_sale(customer, device, platform.plan, 2 * platform.price_per_day)
    return device


async def _applied(platform: PaygPlatform) -> list[tuple[str, str]]:
    evidence = await platform.audit().evidence()
    return sorted((o.key, o.outcome) for o in evidence.operations)


@pytest.mark.payg_agent(config=QUICK)
@pytest.mark.payg_link(profile=RESETS_FAST)
async def test_an_outage_fails_a_sync_transiently_and_the_next_one_succeeds(
    payg_platform: PaygPlatform, payg_agent: Agent, payg_link: PaygLink
) -> None:
    assert (await payg_agent.sync()).pending == 0  # the connection is up and warm
    device = await _sale(payg_agent, payg_platform)
    with payg_link.outage():
        assert payg_link.outage_active
        failed = await payg_agent.sync()  # the radio stays down past reset_after_s
    assert (failed.failures, failed.pending, failed.acked) == (1, 2, [])
    assert payg_link.stats()["resets"] == 1
    assert await _applied(payg_platform) == []
    done = await payg_agent.sync(max_wait_s=5.0)
    assert (done.pending, sorted(done.acked)) == (0, [1, 2])
    assert [k.device for k in await payg_agent.keycodes_for(device)] == [device]


@pytest.mark.payg_agent(config=QUICK)
async def test_a_cut_after_n_bytes_up_loses_the_exchange(
    payg_platform: PaygPlatform, payg_agent: Agent, payg_link: PaygLink
) -> None:
    await _sale(payg_agent, payg_platform)
    payg_link.cut("up", after=100)  # inside the request's headers
    failed = await payg_agent.sync()
    assert (failed.failures, failed.pending, payg_link.cuts) == (1, 2, 1)
    assert await _applied(payg_platform) == []  # the platform never had the whole request
    done = await payg_agent.sync(max_wait_s=5.0)
    assert (done.pending, sorted(done.acked)) == (0, [1, 2])
    assert [outcome for _, outcome in await _applied(payg_platform)] == ["applied"] * 2


@pytest.mark.payg_agent(config=QUICK)
async def test_a_cut_after_n_bytes_down_loses_the_answer_not_the_sale(
    payg_platform: PaygPlatform, payg_agent: Agent, payg_link: PaygLink
) -> None:
    device = await _sale(payg_agent, payg_platform)
    payg_link.cut("down", after=10)  # the platform committed; its answer dies on the way
    failed = await payg_agent.sync()
    assert (failed.failures, failed.pending) == (1, 2)
    assert len(await _applied(payg_platform)) == 2  # applied already
    done = await payg_agent.sync(max_wait_s=5.0)  # the replay is acknowledged, not re-applied
    assert (done.pending, sorted(done.acked)) == (0, [1, 2])
    assert len(await _applied(payg_platform)) == 2
    assert len(await payg_agent.keycodes_for(device)) == 1
    rows = await payg_agent.store.queue()
    assert {row.state for row in rows} == {OpState.ACKNOWLEDGED}


async def test_a_profile_change_changes_the_exchange_time(
    payg_platform: PaygPlatform, payg_agent: Agent, payg_link: PaygLink
) -> None:
    loop = asyncio.get_running_loop()

    async def timed_sale(index: int) -> float:
        await _sale(payg_agent, payg_platform, index)
        began = loop.time()
        assert (await payg_agent.sync()).pending == 0
        return loop.time() - began

    await payg_agent.sync()  # connect first: both measured exchanges run on a warm connection
    quick = await timed_sale(0)
    payg_link.set_profile(BUILTIN_PROFILES["perfect"].replace(name="far", rtt_s=0.5))
    assert payg_link.profile.name == "far"
    far = await timed_sale(1)
    assert quick < 0.5 <= far  # on the far link one exchange is at least one round trip
    with pytest.raises(FixtureError, match="offline"):
        payg_link.set_profile("offline")
    with pytest.raises(FixtureError, match="direction must be 'up' or 'down'"):
        payg_link.cut("sideways", after=1)
    assert not payg_link.uncut()


@pytest.mark.payg_platform(faults=PlatformFaults(credit_factor=2), mobile_money=False)
async def test_faults_and_a_platform_without_mobile_money(
    payg_platform: PaygPlatform, payg_agent: Agent, payg_meter: object
) -> None:
    device = await _sale(payg_agent, payg_platform)
    await payg_agent.sync()
    (keycode,) = await payg_agent.keycodes_for(device)
    meter = payg_platform.meter(device)
    assert meter.enter_keycode(keycode.text, 0.0).outcome is Outcome.APPLIED
    assert meter.credit_remaining(0.0) == 4 * DAY_S  # twice the two days paid: the bug shows
    assert payg_platform.mm_secret is None
    with pytest.raises(FixtureError, match="takes no mobile money"):
        await payg_platform.pay(device, 100)
