"""Network faults and clock skew: every faulty run ends in the clean run's business state."""

from __future__ import annotations

from pathlib import Path

import pytest

from field_lab.chaos.faults import Fault, catalogue, converge, run_fault
from field_lab.chaos.proxy import UP


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_every_fault_converges_to_the_clean_state() -> None:
    outcomes = await converge(catalogue(outage_s=1.0))
    clean, *faulty = outcomes
    assert clean.fault == "none"
    assert clean.faults_fired == 0
    assert clean.valid, clean
    for outcome in faulty:
        assert outcome.digest == clean.digest, outcome
        assert outcome.valid, outcome
        if not outcome.fault.startswith("skew"):
            assert outcome.faults_fired > 0, f"{outcome.fault} never struck"


async def test_the_digest_tells_different_states_apart(tmp_path: Path) -> None:
    """A run that did something else (another seed) must not share the clean digest."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = await run_fault(Fault("none"), tmp_path / "a", seed_=3)
    other = await run_fault(Fault("cut", (UP, 10), 1), tmp_path / "b", seed_=4)
    assert one.digest != other.digest
