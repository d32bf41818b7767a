"""The mobile-money operator on the simulated clock: `field_lab.world.mno`'s `MnoSimulator`
itself (its seeded decisions, signing, delivery and retries), with a `CallbackSender` that
carries each callback into the platform through its `Door` instead of a socket.

Incidents enter here: a payment made while an `operator_delay` incident lasts has its callback
held back `delay_hours` more; while the platform is down every attempt is refused and the
operator retries on its ladder (hours long, as real operators do), never giving up in minutes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from field_lab.simulate.month import HOUR, Incident
from field_lab.simulate.wire import Door, PlatformDown
from field_lab.world.mno import MnoConfig, MnoSimulator, NoReply, Reply

CALLBACK_PATH = "/v1/mm/callback"
RETRY_S = (30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 1800.0) + (3600.0,) * 12
"""Waits between callback attempts: about 17 hours in all before the operator gives up."""


class DoorCallbacks:
    """Callbacks through the platform's door: no socket, no timeout (the in-process dispatch
    takes no simulated time); a platform_down incident is an attempt nobody answered."""

    def __init__(self, door: Door) -> None:
        self.door = door

    async def open(self) -> None:
        return None

    async def send(self, body: bytes, headers: dict[str, str], timeout_s: float) -> Reply:
        try:
            answer = await self.door("POST", CALLBACK_PATH, headers, body)
        except PlatformDown:
            raise NoReply("refused") from None
        try:
            doc = json.loads(answer.body)
        except ValueError:
            doc = None
        return Reply(answer.status, doc if isinstance(doc, dict) else None)

    async def close(self) -> None:
        return None


class Operator(MnoSimulator):
    """`MnoSimulator` on the simulated clock, its callbacks through the door, payments made
    during an operator_delay incident called back later."""

    def __init__(
        self,
        door: Door,
        secret: bytes,
        config: MnoConfig,
        *,
        clock: Callable[[], float],
        epoch: float,
        delays: Sequence[Incident] = (),
        base: float = 0.0,
    ) -> None:
        """`clock`: simulated seconds; `epoch`: the Unix time of simulated second 0 (what the
        callback's `paid_ms` says); `delays`: operator_delay incidents, their times relative
        to `base` on the clock."""
        super().__init__(DoorCallbacks(door), secret, config, clock=clock, epoch=epoch)
        self.door = door
        self.delays = [(base + d.start, base + d.end, d.delay_hours * HOUR) for d in delays]

    def extra_delay(self, t: float) -> float:
        """How much later than usual a payment made at `t` is called back."""
        return sum(extra for start, end, extra in self.delays if start <= t < end)

    def pay(self, account: int | str, amount: int, msisdn: str, *, hold_s: float = 0.0) -> str:
        return super().pay(account, amount, msisdn, hold_s=hold_s + self.extra_delay(self.clock()))


def operator_config(scenario_mm: Any, seed: int) -> MnoConfig:
    """The scenario's operator habits with the simulation's retry ladder."""
    return MnoConfig(
        delay_s=tuple(scenario_mm.delay_s),
        reorder_window_s=scenario_mm.reorder_window_s,
        duplicate_rate=scenario_mm.duplicate_rate,
        lost_answer_rate=scenario_mm.lost_answer_rate,
        failure_rate=scenario_mm.failure_rate,
        retry_s=RETRY_S,
        seed=seed,
    )
