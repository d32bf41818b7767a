"""Make the golden traces: scripted keypad sessions recorded from the simulator.

Run once, then commit the files: `.venv/bin/python -m tests.meter_sim.golden.make_golden`.
The keycodes come from the reference encoders (`nexus-keycode`, `openpaygo`); every step states
the outcome the protocol specifies, and generation fails if the meter disagrees, so a golden
trace is checked against intent, not merely whatever the simulator did that day.
The keys are the public sample keys of the Nexus desktop program and the OpenPAYGO docs.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path

from meter_sim.trace import DeviceConfig, Header, TraceRecorder, TraceWriter

from ..helpers import (
    DAY,
    HOUR,
    KEY,
    OPAYGO_KEY,
    OPAYGO_SC,
    full_add,
    full_set,
    full_unlock,
    opaygo_token,
    small_add,
    small_set,
)

HERE = Path(__file__).parent
TICK = 0.05
"""Seconds between recorded events: replaying a trace at recorded speed takes len * TICK."""


@dataclass(frozen=True)
class Step:
    op: str
    """`code`, `keys` (typed one by one), `wait`, `power` or `status`."""
    arg: str | float | None = None
    expect: str | None = None
    """The outcome the protocol specifies for a code (or the last key of `keys`)."""


def tamper(code: str, symbols: str = "0123456789") -> str:
    """Change one digit of a code's MAC part to another key of the same keypad."""
    body = code.rstrip("#")
    other = next(s for s in symbols if s != body[-2])
    return body[:-2] + other + body[-1:] + code[len(body) :]


def _play(config: DeviceConfig, steps: list[Step]) -> str:
    out = io.StringIO()
    header = Header(
        config,
        firmware="meter-sim golden",
        recorder="tests/meter_sim/golden/make_golden.py",
        origin="2026-11-26T00:00:00.000Z",
        timebase="wall",
    )
    writer = TraceWriter(out, header, include_secret=True)
    ticks = iter(range(10**6))
    meter = TraceRecorder(config.build(), writer.write, stamp=lambda: next(ticks) * TICK)
    now = 0.0
    for number, step in enumerate(steps):
        outcome: str | None = None
        if step.op == "wait":
            assert isinstance(step.arg, int | float)
            now += step.arg
            meter.advance(now)
        elif step.op == "power":
            meter.power_cycle(now)
        elif step.op == "status":
            meter.status(now)
        elif step.op == "code":
            outcome = meter.enter_keycode(str(step.arg), now).outcome.value
        elif step.op == "keys":
            for key in str(step.arg).replace(" ", ""):
                reply = meter.press_key(key, now)
                outcome = reply.result.outcome.value if reply.result else reply.feedback.value
        else:
            raise ValueError(step.op)
        if step.expect is not None and outcome != step.expect:
            raise AssertionError(f"step {number} {step}: the meter said {outcome}")
    return out.getvalue()


def nexus_full_credit() -> str:
    add1 = full_add(1, 24)
    return _play(
        DeviceConfig("nexus-full", KEY, payg_id="123456"),
        [
            Step("code", add1, "applied"),
            Step("status"),
            Step("wait", 720),
            Step("code", add1, "duplicate"),
            Step("wait", 720),
            Step("code", tamper(add1), "invalid"),
            Step("wait", 720),
            Step("keys", full_add(2, 48), "applied"),
            Step("status"),
            Step("wait", DAY),
            Step("code", full_unlock(3), "applied"),
            Step("status"),
            Step("wait", 720),
            Step("code", full_set(4, 12), "applied"),
            Step("wait", 13 * HOUR),
            Step("status"),
            Step("code", full_add(5, 24), "applied"),
            Step("code", full_add(2, 48), "duplicate"),
            Step("status"),
        ],
    )


def nexus_full_rate_limit_and_power() -> str:
    bad = tamper(full_add(1, 24))
    return _play(
        DeviceConfig("nexus-full", KEY),
        [
            *[Step("code", bad, "invalid") for _ in range(6)],
            Step("code", full_add(1, 24), "rate_limited"),
            Step("keys", "*", "rejected"),
            Step("status"),
            Step("wait", 720),
            Step("code", full_add(1, 24), "applied"),
            Step("code", full_add(2, 24), "rate_limited"),
            Step("power"),
            Step("status"),
            Step("wait", HOUR),
            Step("code", full_add(2, 24), "applied"),
            Step("power"),
            Step("code", full_add(2, 24), "duplicate"),
            Step("wait", 30),
            Step("keys", "*12"),
            Step("wait", 20),
            Step("keys", full_add(3, 1), "applied"),
            Step("power"),
            Step("status"),
        ],
    )


def nexus_small() -> str:
    add1 = small_add(1, 7)
    return _play(
        DeviceConfig("nexus-small", KEY),
        [
            Step("code", add1, "applied"),
            Step("wait", 720),
            Step("code", add1, "duplicate"),
            Step("wait", 720),
            Step("code", small_set(2, 30), "applied"),
            Step("status"),
            Step("wait", 720),
            Step("keys", small_add(3, 1), "applied"),
            Step("wait", 720),
            Step("code", tamper(small_add(4, 2), "2345"), "invalid"),
            Step("power"),
            Step("wait", DAY),
            Step("status"),
            Step("code", small_add(4, 2), "applied"),
            Step("status"),
        ],
    )


def openpaygo() -> str:
    count, add7 = opaygo_token(1, 7)
    count, set30 = opaygo_token(count, 30, "SET_TIME")
    count, unlock = opaygo_token(count, None, "DISABLE_PAYG")
    return _play(
        DeviceConfig("openpaygo", OPAYGO_KEY, starting_code=OPAYGO_SC),
        [
            Step("code", add7, "applied"),
            Step("code", add7, "duplicate"),
            Step("status"),
            Step("wait", DAY),
            Step("keys", f"*{set30}#", "applied"),
            Step("code", add7, "duplicate"),
            Step("power"),
            Step("status"),
            Step("code", "123456780", "invalid"),
            Step("code", "123456781", "rate_limited"),
            Step("wait", 61),
            Step("code", "123456781", "invalid"),
            Step("code", unlock, "rate_limited"),
            Step("wait", 121),
            Step("code", unlock, "applied"),
            Step("power"),
            Step("status"),
        ],
    )


GOLDEN = {
    "nexus_full_credit.jsonl": nexus_full_credit,
    "nexus_full_rate_limit_power.jsonl": nexus_full_rate_limit_and_power,
    "nexus_small.jsonl": nexus_small,
    "openpaygo.jsonl": openpaygo,
}


def build() -> dict[str, str]:
    return {name: make() for name, make in GOLDEN.items()}


def main() -> int:
    for name, text in build().items():
        (HERE / name).write_text(text, encoding="utf-8")
        print(f"{name}: {text.count(chr(10)) - 1} events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
