"""The fuzz targets: every decoder survives random bytes, and a crash is not swallowed."""

from __future__ import annotations

import pytest

from field_lab.chaos.fuzz import TARGETS, Target, one_input, random_inputs


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_decoder_survives_random_bytes(name: str) -> None:
    assert random_inputs(name, 300, seed=5) == 300


def test_only_the_targets_own_refusals_are_tolerated() -> None:
    def refuse(data: bytes) -> None:
        raise ValueError(data)

    one_input(Target(refuse, (ValueError,)), b"x")
    with pytest.raises(ValueError):
        one_input(Target(refuse, (KeyError,)), b"x")
