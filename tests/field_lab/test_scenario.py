from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from field_lab.scenario import DEFAULT, ScenarioError, load, loads, parse, to_dict


def test_the_empty_file_is_the_built_in_default() -> None:
    assert loads("") == DEFAULT
    assert DEFAULT.fleet.agents >= 200
    assert DEFAULT.fleet.devices >= 2000
    assert {t.metric for t in DEFAULT.thresholds} >= {"activation_s", "sale_failed", "lost_ops"}


def test_a_full_file_round_trips() -> None:
    text = """
    name = "village"
    seed = 9
    duration_s = 30
    [fleet]
    agents = 10
    devices = 50
    links = { gprs-bad = 0.5, "3g" = 0.5 }
    outages = [ { at_s = 5, for_s = 3, share = 0.5 } ]
    [devices]
    protocols = { openpaygo = 1.0 }
    [slo]
    activation_s = "p(99)<60"
    """
    scenario = loads(text)
    assert scenario.fleet.links == {"gprs-bad": 0.5, "3g": 0.5}
    assert scenario.slo == {"activation_s": ["p(99)<60"]}
    assert parse(to_dict(scenario)) == scenario


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("seed = -1", "seed: expected a number from 0"),
        ("duration_s = 'long'", "duration_s: expected a number"),
        ("colour = 'red'", "colour: unknown field"),
        ("[fleet]\nagents = 2.5", "fleet.agents: expected a whole number"),
        ("[fleet]\nagents = true", "fleet.agents: expected a number"),
        ("[fleet]\nlinks = { gprs-typ = 0.5 }", "fleet.links: shares must add up to 1"),
        ("[fleet]\nlinks = { wifi = 1.0 }", "fleet.links.wifi: unknown"),
        ("[fleet]\nagents = 10\ndevices = 5", "must be at least fleet.agents"),
        ("[fleet]\noutages = [{ at_s = 1 }]", "missing for_s, share"),
        ("[customers]\ntypo_rate = 2", "customers.typo_rate: expected a number from 0 to 1"),
        ("[customers]\ntypos = 0.1", "customers.typos: unknown field"),
        ("[slo]\nactivation_s = ['p95<1']", "slo.activation_s: cannot read"),
        ("[slo]\nlatency = ['p(95)<1']", "no metric named"),
        ("fleet = 3", "fleet: expected a table"),
        ("this is not toml", "not valid TOML"),
        ("[checks]\nwaive = ['lost']", "checks.waive: 'lost' is not a check"),
        ("[checks]\nwaive = 'lost_ops'", "checks.waive: expected a list of check names"),
        (
            "[checks]\npass_without_samples = ['sales']",
            "checks.pass_without_samples: 'sales' is not a metric",
        ),
        ("[checks]\nignore = []", "checks.ignore: unknown field"),
    ],
)
def test_mistakes_are_named_precisely(text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message.replace("(", r"\(").replace(")", r"\)")):
        loads(text)


def test_overrides_are_validated() -> None:
    small = DEFAULT.with_overrides(agents=5, devices=20, duration_s=10, seed=3)
    assert (small.fleet.agents, small.fleet.devices, small.duration_s, small.seed) == (5, 20, 10, 3)
    with pytest.raises(ScenarioError):
        DEFAULT.with_overrides(agents=0)


def test_unreadable_file(tmp_path: pytest.TempPathFactory) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load(tmp_path / "missing.toml")  # type: ignore[operator]


@given(st.text(max_size=200))
def test_any_text_is_a_scenario_or_a_scenario_error(text: str) -> None:
    with contextlib.suppress(ScenarioError):
        loads(text)


def test_waived_checks_are_read() -> None:
    assert loads("[checks]\nwaive = ['lost_ops', 'pending_ops']").checks.waive == (
        "lost_ops",
        "pending_ops",
    )
    assert loads("").checks.waive == ()


def test_metrics_that_may_pass_without_samples_are_read() -> None:
    checks = loads("[checks]\npass_without_samples = ['sale_failed']").checks
    assert checks.pass_without_samples == ("sale_failed",)
