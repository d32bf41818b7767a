"""`--ray` without the extra, or with an address that is none, fails in one line (exit 2):
no traceback, no Ray started."""

from __future__ import annotations

import sys

import pytest

from field_lab.cli import main
from field_lab.lab.ray_launch import EXTRA


@pytest.fixture
def without_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """`import ray` fails, as where the extra is not installed."""
    monkeypatch.setitem(sys.modules, "ray", None)


@pytest.mark.usefixtures("without_ray")
def test_ray_without_the_extra_names_the_extra_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--ray", "auto", "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("field-lab run: --ray needs Ray, an optional extra")
    assert EXTRA in lines[0]


@pytest.mark.usefixtures("without_ray")
def test_a_ray_address_that_is_none_is_refused_before_ray_is_imported(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--ray", "head-node", "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "field-lab run: --ray 'head-node': expected auto or the head node's HOST:PORT"
        " (ray start --head prints it)"
    ]
