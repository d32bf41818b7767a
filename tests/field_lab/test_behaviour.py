"""Behaviours by import path: every way to name one wrongly is a ConfigError that says what
is wrong, and the built-in field behaviour is what runs by default."""

from __future__ import annotations

import random

import pytest

from field_lab.errors import ConfigError
from field_lab.scenario import DEFAULT, ScenarioError, loads
from field_lab.workload.behaviour import (
    FieldAgent,
    FieldCustomer,
    agent_behaviour,
    customer_behaviour,
)
from field_lab.workload.plan import field_plan


class Lazy:
    """Has only part of an AgentBehaviour."""

    def __init__(self, *, scenario: object) -> None:
        self.visit_s = 1.0

    def visits(self, rng: random.Random, duration_s: float) -> list[float]:
        return [duration_s + 5]


class NoScenario:
    def __init__(self) -> None:
        pass


class Late(FieldAgent):
    def visits(self, rng: random.Random, duration_s: float) -> list[float]:
        return [duration_s + 5]


def test_the_built_in_behaviours_run_by_default() -> None:
    assert isinstance(agent_behaviour(DEFAULT), FieldAgent)
    assert isinstance(customer_behaviour(DEFAULT), FieldCustomer)
    night = agent_behaviour(DEFAULT, "examples.behaviours.end_of_day:EndOfDayAgent")
    assert night.sync_on_record is False
    assert night.sync_every_s is None


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("nocolon", "expected MODULE:CLASS"),
        ("no_such_module_xyz:Agent", "cannot import 'no_such_module_xyz'"),
        ("tests.field_lab.test_behaviour:Missing", "has no class 'Missing'"),
        ("tests.field_lab.test_behaviour:Lazy", "lacks down_payment_days, sync_every_s"),
        ("tests.field_lab.test_behaviour:NoScenario", "(*, scenario) failed"),
    ],
)
def test_a_wrong_behaviour_is_named_precisely(path: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        agent_behaviour(DEFAULT, path)


def test_a_behaviour_planning_outside_the_run_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"outside 0\.\.75 s"):
        field_plan(DEFAULT, Late(scenario=DEFAULT), FieldCustomer(scenario=DEFAULT), 2, [])


def test_scenario_files_name_behaviours_by_import_path() -> None:
    s = loads('[agents]\nbehaviour = "examples.behaviours.end_of_day:EndOfDayAgent"\n')
    assert s.agents.behaviour == "examples.behaviours.end_of_day:EndOfDayAgent"
    assert agent_behaviour(s).sync_on_record is False
    with pytest.raises(ScenarioError, match=r"agents\.behaviour: expected MODULE:CLASS"):
        loads('[agents]\nbehaviour = "not a path"\n')
    with pytest.raises(ScenarioError, match=r"customers\.behaviour"):
        loads("[customers]\nbehaviour = 3\n")


def test_the_plan_is_the_same_for_the_same_seed_whatever_the_order_of_agents() -> None:
    agent, customer = FieldAgent(scenario=DEFAULT), FieldCustomer(scenario=DEFAULT)
    one = field_plan(DEFAULT, agent, customer, 4, [1, 2, 3])
    two = field_plan(DEFAULT, agent, customer, 4, [3, 2, 1])
    assert one == two
    more = field_plan(DEFAULT, agent, customer, 5, [1, 2, 3])
    assert set(one.events) <= set(more.events)  # adding an agent does not move the others
