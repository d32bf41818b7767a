"""Distributor reports: figures that add up to what was sold and paid, keyset pages that
together give exactly the full listing at any page size, filters, and coded refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_client.protocol.auth import Claim
from agent_client.protocol.ops import Kind, Operation
from server_stub.callbacks import MoneyCallback
from server_stub.errors import RequestError
from server_stub.migrations import DEFAULT_DISTRIBUTOR
from server_stub.reports import (
    DAY_MS,
    KEYS,
    REPORTS,
    Query,
    Reports,
    decode_cursor,
    encode_cursor,
    parse_query,
    percentile,
)
from server_stub.store import Store

from .fixtures import PRICE_PER_DAY, seed_platform

DAY0 = 1_790_000_000  # 2026-09-21 (UTC), seconds
NOW_MS = (DAY0 + 10 * 86_400) * 1000


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two agents selling over four days, cash and mobile-money payments."""
    path = tmp_path_factory.mktemp("reports") / "server.db"
    seeded = seed_platform(path, per_format=4)
    store = Store.open(path)
    try:
        for a, name in enumerate(("ama", "kofi")):
            handset = store.provision(name, f"code-{name}-7f3a9c", bytes([a]) * 32, 1)
            ops = [Operation.make(1, Kind.REGISTER_CUSTOMER, DAY0, "Esi", "+233200000001")]
            for i, device in enumerate(seeded.stock[name][: 6 + 2 * a]):
                at = DAY0 + (i % 4) * 86_400
                ops.append(
                    Operation.make(
                        2 + 2 * i, Kind.RECORD_SALE, at, 1, device, seeded.plan, 2 * PRICE_PER_DAY
                    )
                )
                ops.append(Operation.make(3 + 2 * i, Kind.RECORD_PAYMENT, at, device, 150))
            reply = store.exchange(Claim(handset, 10, b""), ops, 0, (DAY0 + 5 * 86_400) * 1000)
            assert not reply.rejected
        for i, device in enumerate(seeded.stock["ama"][:6]):
            paid = (DAY0 + i * 3600) * 1000
            cb = MoneyCallback(f"T{i}", str(device), 300, "+233200000001", "success", paid)
            store.mobile_money(cb, paid + 1000 * (i + 1))
    finally:
        store.close()
    return path


def walk(reports: Reports, name: str, limit: int, **filters: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    query = Query(limit=limit, **filters)
    for _ in range(1000):
        page = getattr(reports, name)(query, NOW_MS, DEFAULT_DISTRIBUTOR)
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        after = decode_cursor(name, page["next_cursor"], KEYS[name])
        query = Query(limit=limit, after=after, **filters)
    raise AssertionError("pages never ended")


def test_figures_add_up(busy: Path) -> None:
    reports = Reports.open(busy)
    try:
        sales = walk(reports, "sales", 500)
        assert sum(r["sales"] for r in sales) == 6 + 8
        assert sum(r["down_payments"] for r in sales) == 14 * 2 * PRICE_PER_DAY
        assert {r["agent_name"] for r in sales} == {"ama", "kofi"}
        assert [r["day"] for r in sales] == sorted(r["day"] for r in sales)
        collections = walk(reports, "collections", 500)
        assert sum(r["agent_cash"] for r in collections) == 14 * 150
        assert sum(r["mobile_money"] for r in collections) == 6 * 300
        assert all(r["amount"] == r["agent_cash"] + r["mobile_money"] for r in collections)
        # the rollups the reports read agree with the rows they sum
        db = reports.db
        assert [(r["day"], r["agent"], r["sales"], r["down_payments"]) for r in sales] == (
            db.execute(
                "SELECT day, agent, count(*), sum(down_payment) FROM sales"
                " GROUP BY day, agent ORDER BY day, agent"
            ).fetchall()
        )
        assert [(r["day"], r["agent"], r["payments"], r["amount"]) for r in collections] == (
            db.execute(
                "SELECT day, agent, count(*), sum(amount) FROM payments"
                " GROUP BY day, agent ORDER BY day, agent"
            ).fetchall()
        )
        devices = walk(reports, "devices", 500)
        assert len(devices) == 14
        assert all(r["days_since_last_payment"] == 5 for r in devices if r["agent"] == 2)
        paid_up = [r for r in devices if r["credit_remaining_s"] > 0]
        assert paid_up  # the platform's view of credit, counted down to NOW
        activation = walk(reports, "activation", 500)
        assert [r["day"] for r in activation] == ["2026-09-21"]
        issued = activation[0]["issued"]
        assert issued["count"] == 6
        assert issued["p50_s"] == 3.0
        assert issued["max_s"] == 6.0
        assert activation[0]["sms_delivered"]["count"] == 0  # no gateway here
    finally:
        reports.close()


@settings(max_examples=30)
@given(name=st.sampled_from(REPORTS), limit=st.integers(1, 20), agent=st.sampled_from([None, 1]))
def test_pages_at_any_size_give_exactly_the_full_listing(
    busy: Path, name: str, limit: int, agent: int | None
) -> None:
    reports = Reports.open(busy)
    try:
        filters = {} if name == "activation" else {"agent": agent}
        full = walk(reports, name, 500, **filters)
        assert walk(reports, name, limit, **filters) == full
        if agent is not None and name != "activation":
            assert all(r["agent"] == agent for r in full)
    finally:
        reports.close()


def test_day_range_filters(busy: Path) -> None:
    reports = Reports.open(busy)
    try:
        rows = walk(reports, "sales", 500, day_from="2026-09-22", day_to="2026-09-23")
        assert {r["day"] for r in rows} == {"2026-09-22", "2026-09-23"}
    finally:
        reports.close()


@given(name=st.sampled_from(REPORTS), key=st.data())
def test_cursor_round_trip_and_foreign_cursors_refused(name: str, key: st.DataObject) -> None:
    types = KEYS[name]
    values = tuple(
        key.draw(st.text(max_size=12) if t is str else st.integers(0, 2**62)) for t in types
    )
    token = encode_cursor(name, values)
    assert decode_cursor(name, token, types) == values
    other = next(r for r in REPORTS if KEYS[r] != types)
    with pytest.raises(RequestError) as refused:
        decode_cursor(other, token, KEYS[other])
    assert refused.value.code == "bad_cursor"


@pytest.mark.parametrize("key", [2**63, 10**30, -1])
def test_a_forged_cursor_key_beyond_sqlite_ids_is_refused(key: int) -> None:
    """Keys the server never issues; past SQLite's integers the page query would fail (a 5xx)."""
    with pytest.raises(RequestError) as refused:
        parse_query("devices", {"cursor": encode_cursor("devices", (key,))})
    assert refused.value.code == "bad_cursor"


@given(token=st.text(max_size=60))
def test_any_cursor_text_is_decoded_or_refused_with_a_code(token: str) -> None:
    for name in REPORTS:
        try:
            decode_cursor(name, token, KEYS[name])
        except RequestError as exc:
            assert exc.code == "bad_cursor"  # noqa: PT017 (any refusal must carry this code)


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "501"}, {"limit": "x"}, {"from": "21-09-2026"}, {"agent": "-1"}],
)
def test_bad_parameters_are_refused(params: dict[str, str]) -> None:
    with pytest.raises(RequestError) as refused:
        parse_query("sales", params)
    assert (refused.value.status, refused.value.code) == (400, "bad_parameter")


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 100)) == (
        50.0,
        95.0,
        100.0,
    )
    assert percentile([7.0], 99) == 7.0
    assert DAY_MS == 86_400_000
