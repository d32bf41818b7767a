"""A short demonstration: reference-encoder keycodes typed into simulated meters.

The keycodes come from the backends' own libraries (`nexus-keycode`, `openpaygo`); the meters
validate them independently, as firmware would. `make run` shows this until the lab exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from meter_sim.line_protocol import format_seconds
from meter_sim.meter import Meter

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
    from nexus_keycode.protocols.full import FullMessage

    add = FullMessage.add_credit(id_=1, hours=24, secret_key=KEY).to_keycode()
    tampered = add[:-3] + ("0" if add[-3] != "0" else "1") + add[-2:]
    return [
        Step("add 24 h (id 1)", add),
        Step("same code again", add, wait=720),
        Step("one digit changed", tampered, wait=720),
        Step("add 48 h (id 2), a day later", FullMessage.add_credit(2, 48, KEY).to_keycode(), DAY),
        Step("unlock (id 3)", FullMessage.unlock(3, KEY).to_keycode(), wait=720),
        Step("set 12 h relocks (id 4)", FullMessage.set_credit(4, 12, KEY).to_keycode(), 720),
    ]


def _nexus_small_steps() -> list[Step]:
    from nexus_keycode.protocols.small import AddCreditSmallMessage, SetCreditSmallMessage

    return [
        Step("add 7 days (id 1)", AddCreditSmallMessage(1, 7, KEY).to_keycode()),
        Step("set 30 days (id 2)", SetCreditSmallMessage(2, 30, KEY).to_keycode(), wait=720),
        Step("add 7 days (id 1) again", AddCreditSmallMessage(1, 7, KEY).to_keycode(), 720),
    ]


def _openpaygo_steps() -> list[Step]:
    from openpaygo import TokenType, generate_token

    def token(count: int, value: int | None, kind: TokenType) -> tuple[int, str]:
        new_count, text = generate_token(
            secret_key=OPENPAYGO_KEY,
            count=count,
            value=value,
            token_type=kind,
            starting_code=OPENPAYGO_STARTING_CODE,
        )
        return int(new_count), str(text)

    count, add7 = token(1, 7, TokenType.ADD_TIME)
    count, set30 = token(count, 30, TokenType.SET_TIME)
    count, disable = token(count, None, TokenType.DISABLE_PAYG)
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
    out("meter-sim demo: keycodes from the reference encoders, validated by simulated meters")
    _play("Nexus full (keypad 0-9*#)", Meter.nexus(KEY), _nexus_full_steps(), out)
    _play("Nexus small (keypad 1-5)", Meter.nexus(KEY, "small"), _nexus_small_steps(), out)
    meter = Meter.openpaygo(bytes.fromhex(OPENPAYGO_KEY), OPENPAYGO_STARTING_CODE)
    _play("OpenPAYGO Token (keypad 0-9)", meter, _openpaygo_steps(), out)
    return 0
