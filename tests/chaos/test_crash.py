"""Crash consistency at the suite's bounded size (>= 200 trials), and the injected-bug check:
with idempotency disabled in a test build, the same harness must find duplicates."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from field_lab.chaos.crash import CrashPlan, run_crash
from server_stub.store import DISABLE_IDEMPOTENCY_ENV, Store

SUITE = CrashPlan(cut=180, server_kills=10, handset_kills=12)


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_killed_handsets_and_platform_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    report = await run_crash(SUITE, tmp_path)
    summary = report.summary()
    print(json.dumps(summary))
    assert summary["trials"] == SUITE.trials >= 200
    assert report.verdict is not None
    assert report.verdict.valid, summary
    assert summary["lost"] == summary["duplicated"] == summary["pending"] == 0
    assert report.verdict.ops.acknowledged == report.verdict.ops.attempted
    for kind in ("cut-sync", "cut-callback", "server-kill", "handset-kill"):
        assert report.landed[kind] > 0, f"no {kind} fault landed mid-exchange"


@pytest.mark.timeout(120)
async def test_with_idempotency_disabled_the_suite_finds_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DISABLE_IDEMPOTENCY_ENV, "1")
    report = await run_crash(CrashPlan(cut=40, server_kills=1, handset_kills=0), tmp_path)
    assert report.verdict is not None
    assert not report.verdict.valid
    assert report.verdict.ops.duplicated
    assert report.verdict.payments.duplicated
    assert report.verdict.credit.over  # households were credited more than they paid


def test_idempotency_is_on_unless_a_test_build_turns_it_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert DISABLE_IDEMPOTENCY_ENV not in os.environ
    for value in (None, "0", "", "yes"):
        if value is None:
            monkeypatch.delenv(DISABLE_IDEMPOTENCY_ENV, raising=False)
        else:
            monkeypatch.setenv(DISABLE_IDEMPOTENCY_ENV, value)
        store = Store.open(tmp_path / "s.db")
        assert store.idempotent
        store.close()
    monkeypatch.setenv(DISABLE_IDEMPOTENCY_ENV, "1")
    store = Store.open(tmp_path / "s.db")
    assert not store.idempotent
    store.close()
