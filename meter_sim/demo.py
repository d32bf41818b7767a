"""A short demonstration: issued keycodes typed into simulated meters.

The keycodes come from the encoders the platform issues with (`meter_sim.nexus.encode`,
`meter_sim.openpaygo.encode`, proven identical to the backends' own libraries by
`make equivalence`); the meters validate them as firmware would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from meter_sim.line_protocol import format_seconds
from meter_sim.meter import Meter
from meter_sim.nexus import encode
from meter_sim.openpaygo.encode import Kind, issue_token

KEY = bytes.fromhex("deadbeef1020304004030201feebdaed")
OPENPAYGO_KEY = "a29ab82edc5fbbc41ec9530f6dac86b1"
OPENPAYGO_STARTING_CODE = 123456789
HOUR = 3600.0
DAY = 86400.0


@dataclass
class Step:
    label: str
    code: str
    wait: float = 0.0


def _nexus_full_steps() -> list[Step]:
    add = encode.full_add_credit(KEY, 1, 24)
    tampered = add[:-3] + ("0" if add[-3] != "0" else "1") + add[-2:]
    return [
        Step("add 24 h (id 1)", add),
        Step("same code again", add, wait=720),
        Step("one digit changed", tampered, wait=720),
        Step("add 48 h (id 2), a day later", encode.full_add_credit(KEY, 2, 48), DAY),
        Step("unlock (id 3)", encode.full_unlock(KEY, 3), wait=720),
        Step("set 12 h relocks (id 4)", encode.full_set_credit(KEY, 4, 12), 720),
    ]


def _nexus_small_steps() -> list[Step]:
    return [
        Step("add 7 days (id 1)", encode.small_add_credit(KEY, 1, 7)),
        Step("set 30 days (id 2)", encode.small_set_credit(KEY, 2, 30), wait=720),
        Step("add 7 days (id 1) again", encode.small_add_credit(KEY, 1, 7), 720),
    ]


def _openpaygo_steps() -> list[Step]:
    key = bytes.fromhex(OPENPAYGO_KEY)
    count, add7 = issue_token(key, OPENPAYGO_STARTING_CODE, 1, Kind.ADD, 7)
    count, set30 = issue_token(key, OPENPAYGO_STARTING_CODE, count, Kind.SET, 30)
    count, disable = issue_token(key, OPENPAYGO_STARTING_CODE, count, Kind.DISABLE)
    return [
        Step("add 7 days", add7),
        Step("same token again", add7),
        Step("set 30 days", set30, wait=DAY),
        Step("older add after a set", add7),
        Step("disable PAYG (unlock)", disable),
        Step("garbage", "123456780"),
    ]


def _play(title: str, meter: Meter, steps: list[Step], out: Callable[[str], None]) -> None:
    out(f"\n{title}")
    now = 0.0
    for item in steps:
        now += item.wait
        result = meter.enter_keycode(item.code, now)
        credit = format_seconds(result.credit_remaining / HOUR)
        out(
            f"  t={now / HOUR:7.2f} h  {item.label:<30} {item.code:<22}"
            f" {result.outcome.value:<10} credit={credit} h  {result.state.value}"
        )


def run_demo(out: Callable[[str], None] = print) -> int:
    out("meter-sim demo: issued keycodes, validated by simulated meters")
    _play("Nexus full (keypad 0-9*#)", Meter.nexus(KEY), _nexus_full_steps(), out)
    _play("Nexus small (keypad 1-5)", Meter.nexus(KEY, "small"), _nexus_small_steps(), out)
    meter = Meter.openpaygo(bytes.fromhex(OPENPAYGO_KEY), OPENPAYGO_STARTING_CODE)
    _play("OpenPAYGO Token (keypad 0-9)", meter, _openpaygo_steps(), out)
    return 0
