"""The lab judges from public evidence only: no SQL into another package's database, and no
test switch read from the environment by production code."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SQL = re.compile(
    r"\b(import sqlite3|import aiosqlite|from sqlite3|from aiosqlite)\b"
    r"|\b(FROM|INTO|UPDATE|JOIN) +(ops|keycodes|payments|mm_txns|devices|sales|outbox|inbox"
    r"|customers|downlink|handsets|agents|sms|daily)\b",
)


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_field_lab_runs_no_sql_against_other_packages() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sources("field_lab")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if SQL.search(line)
    ]
    assert offenders == []


def test_the_checker_of_this_rule_can_fail() -> None:
    assert SQL.search('rows(db, "SELECT txn FROM mm_txns WHERE outcome = 1")')
    assert SQL.search("import sqlite3")
    assert not SQL.search("from field_lab.check.evidence import AuditClient")


def test_no_production_code_reads_a_test_switch() -> None:
    switch = re.compile(r"PAYG_TEST_[A-Z_]+")
    for package in ("meter_sim", "agent_client", "server_stub", "field_lab"):
        for path in sources(package):
            assert not switch.search(path.read_text()), path
