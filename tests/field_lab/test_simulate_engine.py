"""The simulation engine end to end, on small fleets (a few seconds each): a hand-checkable
outage, the same seed giving the same figures, an injected platform bug turning a check red,
and the virtual clock itself."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_client.store import OpState
from field_lab.cli import main
from field_lab.scenario import Scenario
from field_lab.scenario import parse as parse_scenario
from field_lab.simulate import month as months
from field_lab.simulate import vloop
from field_lab.simulate.command import report_html, summary
from field_lab.simulate.findings import MAX_DEVICES, named
from field_lab.simulate.month import DAY, HOUR, Payment
from field_lab.simulate.run import simulate
from field_lab.simulate.schedule import AgentPlan, Customer, Schedule
from field_lab.simulate.wire import Windows
from field_lab.world.fixture import FIRST_SERIAL
from server_stub.faults import PlatformFaults

ONE_HOME = parse_scenario(
    {
        "seed": 3,
        "fleet": {"agents": 1, "devices": 1, "links": {"3g": 1.0}, "outages": []},
        "devices": {"protocols": {"nexus-full": 1.0}},
        "mobile_money": {
            "delay_s": [1.0, 1.0],
            "reorder_window_s": 0.0,
            "duplicate_rate": 0.0,
            "lost_answer_rate": 0.0,
            "failure_rate": 0.0,
        },
        "sms": {"delay_s": [5.0, 5.0], "loss_rate": 0.0},
    }
)


def one_payment() -> Schedule:
    """One home whose 2 days of credit from the sale run out at day 1 00:00; its customer
    pays a week by mobile money at day 0 23:30:10."""
    pay = Payment(at=23.5 * HOUR + 10, amount=500 * 7, days=7)
    home = Customer(FIRST_SERIAL, 0, 0, mobile=True, reads_sms=True, down_days=2, payments=(pay,))
    return Schedule((home,), (AgentPlan(0, 0, ((8 * HOUR, 17 * HOUR),)),), {0: ()})


def test_the_clock_jumps_and_nothing_waits_in_real_time() -> None:
    async def main_() -> float:
        await asyncio.gather(*(asyncio.sleep(h * HOUR) for h in range(1, 25)))
        return asyncio.get_running_loop().time()

    began = time.perf_counter()
    ended, loop = vloop.run(main_())
    assert ended == pytest.approx(24 * HOUR)
    assert loop.jumps == 24
    assert time.perf_counter() - began < 60  # a day of timers, not a day of waiting


def test_real_io_is_seen_while_callbacks_keep_the_loop_busy() -> None:
    """The loop polls real descriptors only every few busy turns, but it does poll them: a
    byte on a socket is read while another task never lets the loop idle."""

    async def main_() -> int:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        heard = asyncio.Event()
        loop.add_reader(ours, heard.set)
        theirs.send(b"x")
        turns = 0
        try:
            while not heard.is_set() and turns < 100 * vloop.REAL_POLL_EVERY:
                await asyncio.sleep(0)  # always a callback ready: the clock never jumps
                turns += 1
        finally:
            loop.remove_reader(ours)
            ours.close()
            theirs.close()
        return turns

    turns, loop = vloop.run(main_())
    assert turns <= vloop.REAL_POLL_EVERY
    assert loop.time() == 0.0


def test_a_two_hour_outage_at_payment_time_is_charged_to_it(tmp_path: Path) -> None:
    """Credit (2 days from the sale) runs out at day 1 00:00; the customer pays by mobile money
    at day 0 23:30, just as the platform goes down until day 1 01:30. The meter is dark from
    00:00 until the code lands: 1.5 h of it inside the outage (2 h minus the half hour the
    remaining credit covered), the rest the operator's retry spacing, the SMS and typing."""
    month = months.parse(
        {
            "simulate": {"days": 2, "villages": 1},
            "incident": [{"kind": "platform_down", "day": 0, "at": "23:30", "hours": 2}],
        }
    )
    schedule = one_payment()

    outcome = simulate(ONE_HOME, month, tmp_path, schedule=schedule)

    dark = outcome.dark
    name = month.incidents[0].name
    charged = dark.by_incident[name].ms / 3_600_000
    assert charged == pytest.approx(1.5, abs=0.01)
    assert dark.by_incident[name].households == 1
    waited = dark.paid_waiting_ms / 3_600_000
    assert 1.5 < waited < 1.5 + 1.0  # after the outage: the next retry, the SMS, the typing
    assert dark.unpaid_ms < 60_000  # set-up and paying took seconds; the customer had paid
    assert outcome.verdict.figures()["overcredited_meters"] == 0
    assert all(v == 0 for v in outcome.verdict.figures().values())
    assert outcome.evidence.counters["platform_refused"] >= 5  # callbacks knocked on a shut door


def test_an_operator_delay_holds_the_callback_back(tmp_path: Path) -> None:
    """The same payment while the operator holds callbacks 6 h: dark from 00:00 until the
    callback lands at about 05:30, all of it charged to the delay."""
    month = months.parse(
        {
            "simulate": {"days": 2, "villages": 1},
            "incident": [
                {"kind": "operator_delay", "day": 0, "at": "23:00", "hours": 2, "delay_hours": 6}
            ],
        }
    )
    schedule = one_payment()

    outcome = simulate(ONE_HOME, month, tmp_path, schedule=schedule)

    charged = outcome.dark.by_incident[month.incidents[0].name].ms / 3_600_000
    assert charged == pytest.approx(5.5, abs=0.01)
    assert outcome.dark.paid_waiting_ms / 3_600_000 == pytest.approx(5.5, abs=0.02)


def test_without_the_outage_the_code_lands_in_seconds(tmp_path: Path) -> None:
    month = months.parse({"simulate": {"days": 2, "villages": 1}})
    schedule = one_payment()

    outcome = simulate(ONE_HOME, month, tmp_path, schedule=schedule)

    assert outcome.dark.paid_waiting_ms == 0  # applied before the credit ran out
    assert outcome.evidence.meters[FIRST_SERIAL] == pytest.approx((2 + 7) * DAY, abs=60)


def _small(seed: int) -> tuple[Scenario, months.Month]:
    scenario = ONE_HOME.with_overrides(agents=3, devices=24, seed=seed)
    month = months.parse(
        {
            "simulate": {"days": 2, "villages": 2},
            "incident": [
                {"kind": "platform_down", "day": 0, "at": "10:00", "hours": 2},
                {"kind": "agent_offline", "day": 0, "at": "09:00", "hours": 12, "agent": 1},
            ],
        }
    )
    return scenario, month


def test_the_same_seed_gives_the_same_figures(tmp_path: Path) -> None:
    scenario, month = _small(7)
    docs = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        doc = summary(simulate(scenario, month, tmp_path / run))
        doc.pop("wall")
        docs.append(doc)
    assert docs[0] == docs[1]
    assert docs[0]["all_checks_verified"] is True
    assert docs[0]["household_dark_hours"]["unpaid"] > 0


def test_every_agent_sells_on_its_own_distributors_plan(tmp_path: Path) -> None:
    """Agents of several distributors: a sale on another tenant's plan would be refused, its
    device never sold, and that household's mobile-money payments answered unknown_account."""
    scenario, month = _small(7)
    outcome = simulate(scenario, month, tmp_path)
    assert len({a.distributor for a in outcome.fixture.agents}) > 1
    states = [s for h in outcome.evidence.handsets for s in h.states.values()]
    assert OpState.REJECTED not in states


def test_an_over_crediting_platform_turns_the_credit_check_red(tmp_path: Path) -> None:
    scenario, month = _small(7)
    outcome = simulate(
        scenario,
        month,
        tmp_path,
        faults=PlatformFaults(credit_factor=2),
    )
    figures = outcome.verdict.figures()
    over = figures["overcredited_meters"]
    assert over is not None
    assert over > 0
    doc = summary(outcome)
    assert doc["all_checks_verified"] is False
    # the output names the meters, and puts the keycodes and the keypad beside each
    named = doc["check_details"]["credit"]["over"]
    found = doc["findings"]
    assert len(found) == min(len(named), MAX_DEVICES)
    first = found[0]
    assert named[0].startswith(f"device {first['device']}: credited ")
    assert sum(e["credit_s"] for e in first["keypad"]) == pytest.approx(first["credited_s"])
    paid = sum(p["credit_s"] for p in first["paid"] if p["status"] == "ok")
    assert sum(k["credit_s"] for k in first["issued"]) == 2 * paid  # the fault's double credit
    assert f"device {first['device']}: credited" in report_html(doc, "<svg></svg>")


def test_the_command_writes_its_files_and_refuses_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(["simulate", "--days", "1", "--agents", "2", "--devices", "6", "--out", str(out)])
    assert code == 0
    for name in ("summary.json", "dark_hours_by_day.csv", "dark_households.svg", "report.html"):
        assert (out / name).stat().st_size > 0
    assert main(["simulate", "--days", "1", "--out", str(out)]) == 2  # not empty
    assert "not empty" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('[[incident]]\nkind = "meteor"\nday = 0\nat = "10:00"\nhours = 1\n')
    assert main(["simulate", str(bad), "--out", str(tmp_path / "o2")]) == 2
    assert "incident[0].kind" in capsys.readouterr().err


def test_the_devices_a_verdict_names_are_found_wherever_it_names_them() -> None:
    details = {
        "credit": {"meters": 3, "over": [], "under": ["device 7: credited 1 s, confirmed 2 s"]},
        "keycodes_twice": ["device 12: keycode 123 issued 2 times (message ids 8, 10)"],
        "undelivered": ["handset 3 lacks device 7 keycode 555"],
        "strays": None,
    }
    assert named(details) == {
        7: [
            "credit.under: device 7: credited 1 s, confirmed 2 s",
            "undelivered: handset 3 lacks device 7 keycode 555",
        ],
        12: ["keycodes_twice: device 12: keycode 123 issued 2 times (message ids 8, 10)"],
    }


@given(
    st.lists(
        st.tuples(st.floats(0, 1e6), st.floats(0, 1e4)).map(lambda p: (p[0], p[0] + p[1])),
        max_size=20,
    ),
    st.floats(0, 1.1e6),
)
def test_windows_cover_exactly_the_moments_some_window_covers(
    spans: list[tuple[float, float]], t: float
) -> None:
    windows = Windows(spans)
    inside = any(s <= t < e for s, e in spans)
    found = windows.covering(t)
    assert (found is not None) == inside
    if found is not None:
        assert found[0] <= t < found[1]
    merged = list(windows)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(merged))  # disjoint, sorted
