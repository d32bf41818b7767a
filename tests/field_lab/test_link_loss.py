"""Gilbert-Elliott loss: parameters, the exact expectations, and the running chain."""

from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from field_lab.link.loss import BAD, GOOD, GilbertElliott, LossChain

probabilities = st.floats(min_value=0.0, max_value=1.0)
chains = st.builds(
    GilbertElliott,
    p=st.floats(min_value=0.0, max_value=0.5),
    r=st.floats(min_value=0.05, max_value=1.0),
    loss_bad=st.floats(min_value=0.0, max_value=1.0),
    loss_good=st.floats(min_value=0.0, max_value=0.5),
)


def test_from_mean_gives_the_mean_loss_and_burst() -> None:
    ge = GilbertElliott.from_mean(0.01, 3.3)
    assert ge.mean_loss == pytest.approx(0.01)
    assert ge.r == pytest.approx(1 / 3.3)


def test_reference_example_netem_gemodel() -> None:
    """§C.1: `loss gemodel 1% 30% 100% 0%` gives about 3.2 % loss."""
    assert GilbertElliott(p=0.01, r=0.30).mean_loss == pytest.approx(0.032, abs=0.001)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"p": -0.1, "r": 0.5},
        {"p": 0.1, "r": 0.0},
        {"p": 0.1, "r": 1.5},
        {"p": 0.1, "r": 0.5, "loss_good": 1.0},
        {"p": 0.1, "r": 0.5, "loss_bad": 2.0},
    ],
)
def test_invalid_parameters_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        GilbertElliott(**kwargs)


@given(chains)
def test_success_distribution_is_a_distribution(ge: GilbertElliott) -> None:
    good, bad = ge.success_distribution
    assert good >= -1e-12
    assert bad >= -1e-12
    assert good + bad == pytest.approx(1.0)


@given(chains)
def test_expected_losses_match_the_long_run_loss_rate(ge: GilbertElliott) -> None:
    """Renewal-reward: lost attempts per delivered packet = L / (1 - L) in the long run, and a
    chain started in the success distribution has exactly that expectation per packet."""
    loss = ge.mean_loss
    assert ge.expected_losses_per_packet == pytest.approx(loss / (1 - loss), rel=1e-6, abs=1e-12)


@pytest.mark.parametrize(
    "ge", [GilbertElliott.from_mean(0.03, 3.3), GilbertElliott(0.05, 0.4, 0.8, 0.02)]
)
def test_monte_carlo_matches_the_expectation(ge: GilbertElliott) -> None:
    chain = LossChain(ge, random.Random(7))
    losses = [chain.losses_before_success() for _ in range(100_000)]
    assert statistics.mean(losses) == pytest.approx(ge.expected_losses_per_packet, rel=0.05)


def test_losses_come_in_bursts_of_the_mean_length() -> None:
    ge = GilbertElliott.from_mean(0.02, 4.0)
    chain = LossChain(ge, random.Random(3))
    bursts = [n for n in (chain.losses_before_success() for _ in range(200_000)) if n]
    assert statistics.mean(bursts) == pytest.approx(4.0, rel=0.08)


def test_lossless_chain_never_loses() -> None:
    chain = LossChain(None, random.Random(1))
    assert all(chain.losses_before_success() == 0 for _ in range(1000))


def test_same_seed_same_losses() -> None:
    ge = GilbertElliott.from_mean(0.1, 2.0)
    a = LossChain(ge, random.Random(11))
    b = LossChain(ge, random.Random(11))
    assert [a.losses_before_success() for _ in range(500)] == [
        b.losses_before_success() for _ in range(500)
    ]
    assert a.state in (GOOD, BAD)
