"""An agent who records sales offline all day and syncs only when back in town at night.

The kind of habit the lab exists to measure: every sale is recorded, nothing is lost, but no
customer sees their light come on while the agent is still there.

    field-lab run --behaviour examples.behaviours.end_of_day:EndOfDayAgent
"""

from __future__ import annotations

import random

from field_lab.scenario import Scenario
from field_lab.workload.behaviour import FieldAgent


class EndOfDayAgent:
    """Visits like the built-in agent (same pace, same down payments), but never syncs in the
    field: the lab's end-of-day sync is the first time the platform hears of the sales."""

    sync_on_record = False
    sync_every_s: float | None = None

    def __init__(self, *, scenario: Scenario) -> None:
        self._field = FieldAgent(scenario=scenario)  # composition: reuse its visit plan
        self.visit_s = self._field.visit_s

    def visits(self, rng: random.Random, duration_s: float) -> list[float]:
        return self._field.visits(rng, duration_s)

    def down_payment_days(self, rng: random.Random) -> int:
        return self._field.down_payment_days(rng)
