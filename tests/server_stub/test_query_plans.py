"""The platform's frequent statements search an index: none reads a whole table that grows with
the fleet or the month. A month's simulation at 20,000 meters showed both kinds: an exchange
that scanned every mobile-money transaction so far (the cost per day grew all month), and a
provisioning that read every device (the set-up grew with the fleet squared)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from agent_client.protocol.auth import Claim
from server_stub.callbacks import MoneyCallback
from server_stub.reports import Reports, parse_query
from server_stub.store import DeviceRecord, Store

from .fixtures import PRICE_PER_DAY, seed_platform
from .platform import copy_db, sold_platform

NOW = 1_790_000_100_000
GROWING = {
    "agents",
    "handsets",
    "devices",
    "customers",
    "ops",
    "keycodes",
    "downlink",
    "sales",
    "payments",
    "mm_txns",
    "sms",
}
"""Tables that grow with the fleet or the month (the plans of a catalog do not)."""


def traced(db: sqlite3.Connection) -> list[str]:
    """Every statement `db` runs from now on (until the trace is turned off)."""
    statements: list[str] = []
    db.set_trace_callback(statements.append)
    return statements


def full_scans(db: sqlite3.Connection, statements: list[str]) -> list[tuple[str, str]]:
    """(statement, plan step) for each step that reads the whole of a growing table."""
    db.set_trace_callback(None)
    found = []
    for sql in statements:
        if not sql.lstrip().upper().startswith(("SELECT", "UPDATE", "INSERT", "DELETE")):
            continue
        named = {}  # alias or name -> table
        for table, alias in re.findall(r"(?:FROM|JOIN|UPDATE)\s+(\w+)(?:\s+(?:AS\s+)?(\w+))?", sql):
            named[table] = named[alias or table] = table
        for *_, detail in db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall():
            scanned = re.fullmatch(r"SCAN (\w+)", detail)
            if scanned and named.get(scanned[1], scanned[1]) in GROWING:
                found.append((sql, detail))
    return found


def test_a_sync_exchange_stamps_mobile_money_keycodes_with_index_searches_only(
    tmp_path: Path,
) -> None:
    """Each exchange of a handset with mobile-money keycodes on their way stamps them
    downlinked, then synced: a search of the unsynced keycodes, not of the month's payments."""
    sold = sold_platform(tmp_path / "template.db")
    store = Store.open(copy_db(tmp_path / "template.db", tmp_path / "s.db"))
    try:
        for i, device in enumerate(sold.devices[:3]):
            cb = MoneyCallback(f"T{i}", str(device), PRICE_PER_DAY, "+233200000001", "success", NOW)
            assert store.mobile_money(cb, NOW + i).keycode
        statements = traced(store.db)
        page = store.exchange(Claim(sold.handset, 3_000, b""), [], 0, NOW + 10)
        assert not page.more  # the whole downlink went down in this page
        last = page.first_entry + len(page.entries) - 1
        stamps = "SELECT downlinked_ms, synced_ms FROM mm_txns ORDER BY txn"
        assert store.db.execute(stamps).fetchall() == [(NOW + 10, None)] * 3
        store.exchange(Claim(sold.handset, 4_000, b""), [], last, NOW + 20)  # it has them all
        assert store.db.execute(stamps).fetchall() == [(NOW + 10, NOW + 20)] * 3
        assert any("mm_txns" in sql for sql in statements)
        assert full_scans(store.db, statements) == []
    finally:
        store.close()


def test_provisioning_reads_the_agents_stock_by_index(tmp_path: Path) -> None:
    seeded = seed_platform(tmp_path / "s.db")
    store = Store.open(tmp_path / "s.db")
    try:
        statements = traced(store.db)
        handset = store.provision("ama", "code-ama-7f3a9c", bytes(range(32)), 1_000)
        stock = store.db.execute(
            "SELECT count(*) FROM downlink WHERE handset = ?", (handset,)
        ).fetchone()
        assert stock == (len(seeded.stock["ama"]) + 1,)  # its stock and the one plan
        assert any("FROM devices" in sql for sql in statements)
        assert full_scans(store.db, statements) == []
    finally:
        store.close()


def test_the_devices_report_reads_sold_devices_by_index(tmp_path: Path) -> None:
    """A page of sold devices costs the same however much unsold stock sorts before them:
    stepping over every unsold device cost ~1 ms a page while a fleet's stock was being sold
    (a search of the primary key, so no SCAN shows in the plan; the work is counted instead)."""
    sold = sold_platform(tmp_path / "s.db")
    store = Store.open(tmp_path / "s.db")
    try:  # unsold stock below every sold device
        unsold = [DeviceRecord(d, sold.seeded.secrets[sold.devices[0]]) for d in range(1, 2001)]
        store.add_devices(None, unsold)
    finally:
        store.close()
    reports = Reports.open(tmp_path / "s.db")
    try:
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        reports.db.set_progress_handler(count, 100)  # every 100 virtual machine instructions
        page = reports.devices(parse_query("devices", {}), NOW, None)
        assert [item["device"] for item in page["items"]] == sorted(sold.devices)
        assert steps[0] * 100 < len(unsold), f"{steps[0] * 100} instructions for a page"
    finally:
        reports.close()
