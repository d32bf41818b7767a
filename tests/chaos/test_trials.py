"""A big crash plan as pieces: the split keeps every count and derives seeds that do not
depend on the number of workers; merged summaries add up and fail when any piece fails;
the lab's CLIs start as children of a warm forkserver."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from field_lab.chaos import ChaosError
from field_lab.chaos.children import spawn
from field_lab.chaos.crash import CrashPlan
from field_lab.chaos.trials import COUNTED, merge, run_pieces, split
from field_lab.errors import ConfigError

counts = st.integers(0, 20_000)
pieces_of = st.integers(50, 5_000)


@given(cut=counts, server=counts, handset=counts, piece=pieces_of)
def test_split_keeps_every_count_and_bounds_each_piece(
    cut: int, server: int, handset: int, piece: int
) -> None:
    plan = CrashPlan(cut=cut, server_kills=server, handset_kills=handset, seed=5)
    pieces = split(plan, piece)
    assert len(pieces) == max(1, -(-plan.trials // piece))
    assert sum(p.cut for p in pieces) == cut
    assert sum(p.server_kills for p in pieces) == server
    assert sum(p.handset_kills for p in pieces) == handset
    assert all(p.trials <= piece + 2 for p in pieces)  # each kind rounds up by at most one
    assert len({p.seed for p in pieces}) == len(pieces)
    assert split(plan, piece) == pieces  # the same seeds every time, whatever runs them


def test_a_piece_size_below_one_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 1 trial"):
        split(CrashPlan(), 0)


def _summary(seed: int, *, valid: bool = True, lost: int | None = 0) -> dict[str, Any]:
    return {
        **dict.fromkeys(COUNTED, 1),
        "lost_ops": lost,
        "by_kind": {"cut-sync": 2},
        "faults_landed": {"cut-sync": 1},
        "valid": valid,
        "unchecked": [] if lost is not None else ["lost_ops"],
        "seconds": 2.0,
        "digest": f"d{seed}",
        "details": {"ops": {"lost": ["1:7"] if not valid else []}},
        "seed": seed,
    }


def test_merged_figures_add_up_and_one_failed_piece_fails_the_whole() -> None:
    merged = merge([_summary(1), _summary(2, valid=False, lost=3)])
    assert merged["trials"] == 2
    assert merged["lost_ops"] == 3
    assert merged["by_kind"] == {"cut-sync": 4}
    assert merged["faults_landed"] == {"cut-sync": 2}
    assert merged["valid"] is False
    assert merged["pieces"] == 2
    assert merged["details"]["failed_pieces"] == [{"seed": 2, "ops": {"lost": ["1:7"]}}]
    assert merge([_summary(1), _summary(2)])["valid"] is True


def test_a_figure_unchecked_in_one_piece_is_unchecked_in_the_whole() -> None:
    merged = merge([_summary(1), _summary(2, lost=None)])
    assert merged["lost_ops"] is None
    assert merged["unchecked"] == ["lost_ops"]


@pytest.mark.timeout(300)
def test_pieces_on_two_workers_are_judged_and_merged() -> None:
    plan = CrashPlan(cut=8, server_kills=0, handset_kills=0, seed=11)
    heard: list[tuple[int, int]] = []
    merged = run_pieces(plan, workers=2, piece=4, progress=lambda d, n, _: heard.append((d, n)))
    assert heard == [(1, 2), (2, 2)]
    assert merged["pieces"] == 2
    assert merged["workers"] == 2
    assert merged["trials"] == 8
    assert merged["valid"] is True, merged["details"]
    assert merged["meters"] == 2 * plan.devices


async def test_a_child_runs_the_cli_and_reports_its_exit_status() -> None:
    child = spawn("agent-client", ["--help"])
    assert await child.wait() == 0
    refused = spawn("agent-client", ["--no-such-flag"])
    assert await refused.wait() == 2


def test_only_the_labs_own_clis_are_spawned() -> None:
    with pytest.raises(ChaosError, match="not one of the lab's CLIs"):
        spawn("rm", ["-rf", "/"])
