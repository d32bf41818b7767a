"""Meters with their own 2G link in a lab run: tokens by the Metrics answer and by keypad,
credited once, bytes per device-month set beside the budget."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest

from agent_client.protocol.keycodes import KeycodeFormat
from field_lab.lab.lab import Lab
from field_lab.scenario import Metering, ScenarioError, loads
from field_lab.world.clock import LabClock
from field_lab.world.sites import Site, meter_for
from meter_sim import Outcome
from server_stub.keycodes import DeviceSecret, issue
from tests.field_lab.test_lab import TINY

METERED = replace(
    TINY,
    devices=replace(TINY.devices, protocols={"openpaygo": 0.5, "nexus-full": 0.5}),
    customers=replace(TINY.customers, payments_per_hour=900),
    metering=Metering(metered_share=1.0, report_every_h=0.25, link="3g"),
)


async def test_metered_meters_take_tokens_from_their_link_and_are_credited_once(
    tmp_path: Path,
) -> None:
    lab = Lab(METERED, tmp_path)
    await lab.run()
    m = lab.stats.sections["metering"]
    assert m["meters"] == METERED.fleet.devices
    assert m["reports_acknowledged"] > 0
    assert m["tokens_by_link"] > 0  # payments reached meters through the answer
    assert m["bytes_up"] > 0
    assert m["bytes_down"] > 0
    # 96 reports a day of ~700 bytes (headers included): about 2 MB a month
    assert 500_000 < m["bytes_per_device_month"] < 5_000_000
    assert m["budget_share"] == round(m["bytes_per_device_month"] / 750_000, 4)
    assert lab.verdict is not None
    assert lab.verdict.valid, lab.verdict.details()  # credit counted once, none over or under
    figures = lab.verdict.figures()
    assert figures["overcredited_meters"] == 0


def test_the_metering_section_is_checked() -> None:
    assert loads("[metering]\nmetered_share = 0.25\n").metering.metered_share == 0.25
    with pytest.raises(ScenarioError, match=r"metering\.link"):
        loads('[metering]\nlink = "5g"\n')
    with pytest.raises(ScenarioError, match=r"metering\.report_every_h"):
        loads("[metering]\nreport_every_h = 0\n")


async def test_a_code_the_link_brought_settles_its_payment_when_it_reaches_the_customer() -> None:
    """The meter took the code from its answer: the same code by SMS or handset is not typed
    again (no second credit) and settles its operation at the time the link applied it."""
    clock = LabClock.start(1440.0)
    secret = DeviceSecret(KeycodeFormat.NEXUS_FULL, bytes(range(16)))
    site = Site(1, secret, 0, meter_for(secret, 0.0), random.Random(1), sold=True)
    code = issue(secret, 1, 2).text
    waiter = site.expect("h1:7", "payment", 0.0)
    # what Metering does with an answer's token: through the meter's validator, once
    now = clock.meter()
    before = site.meter.credit_remaining(now)
    assert site.meter.enter_keycode(code, now).outcome is Outcome.APPLIED
    site.granted += site.meter.credit_remaining(now) - before
    site.by_link[code] = 0.25
    granted = site.granted
    assert granted == pytest.approx(2 * 86_400, abs=2)
    await site.type_code(code, "h1:7", clock, seconds_per_key=0.0, typo_rate=0.0)
    assert waiter.applied_at == 0.25
    assert waiter.done.is_set()
    assert site.granted == granted  # not typed a second time
    # a code the link did not bring is typed as before
    other = issue(secret, 2, 1).text
    second = site.expect("h1:8", "payment", 0.0)
    await site.type_code(other, "h1:8", clock, seconds_per_key=0.0, typo_rate=0.0)
    assert second.applied_at is not None
    assert second.applied_at != 0.25
    assert site.granted == pytest.approx(granted + 86_400, abs=2)
