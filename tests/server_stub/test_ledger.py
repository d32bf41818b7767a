"""The platform's pure rules (server_stub.ledger): sales and payments decide effects or a
refusal, credit turns money into exactly the days it pays for, rollups count each event once,
and the package performs no I/O (a check proven to catch a module that does)."""

from __future__ import annotations

import itertools
import json
import pkgutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import server_stub.ledger
from agent_client.protocol.frames import Reason, Stock
from agent_client.protocol.keycodes import KeycodeFormat
from server_stub.callbacks import Outcome
from server_stub.keycodes import DAY_S, DeviceSecret, creditable_days
from server_stub.ledger import credit, replay, rollup, sales
from server_stub.ledger.credit import Account, Grant

ROOT = Path(__file__).resolve().parents[2]
IO_MODULES = ("sqlite3", "aiohttp", "asyncio", "socket", "http", "urllib.request", "ssl")
NOW_MS = 1_790_000_000_000

# -- sales ---------------------------------------------------------------------------------

IN_STOCK = sales.InStock(agent=7, customer=None, format=KeycodeFormat.NEXUS_SMALL)


def sell(**change: object) -> sales.Sale:
    args: dict[str, object] = {
        "agent": 7,
        "device": 10_000_001,
        "plan": 2,
        "down_payment": 300,
        "at_s": 1_790_000_000,
        "customer": 5,
        "price_per_day": 100,
        "stock": IN_STOCK,
    }
    return sales.sale(**{**args, **change})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"customer": None}, Reason.UNKNOWN_CUSTOMER),
        ({"price_per_day": None}, Reason.UNKNOWN_PLAN),
        ({"stock": None}, Reason.NOT_IN_STOCK),
        ({"stock": sales.InStock(8, None, KeycodeFormat.NEXUS_FULL)}, Reason.NOT_IN_STOCK),
        ({"stock": sales.InStock(None, None, KeycodeFormat.NEXUS_FULL)}, Reason.NOT_IN_STOCK),
        ({"stock": sales.InStock(7, 3, KeycodeFormat.NEXUS_FULL)}, Reason.ALREADY_SOLD),
        ({"down_payment": 99}, Reason.AMOUNT_TOO_LOW),
        # the first broken rule is the one named
        ({"customer": None, "price_per_day": None, "stock": None}, Reason.UNKNOWN_CUSTOMER),
        ({"stock": None, "down_payment": 1}, Reason.NOT_IN_STOCK),
    ],
)
def test_a_sale_is_refused_for_the_first_rule_it_breaks(
    change: dict[str, object], reason: Reason
) -> None:
    with pytest.raises(sales.Refused) as refused:
        sell(**change)
    assert refused.value.reason is reason


def test_a_sale_hands_the_device_over_and_counts_on_the_handsets_day() -> None:
    sale = sell(down_payment=100, at_s=1_790_035_199)  # 2026-09-21 23:59:59 UTC
    assert (sale.device, sale.customer, sale.plan, sale.balance) == (10_000_001, 5, 2, 100)
    assert sale.day == "2026-09-21"
    assert sale.rollup == {"sales": 1, "down_payments": 100}
    assert sale.gone == Stock(10_000_001, KeycodeFormat.NEXUS_SMALL, False)


def test_cash_is_taken_only_for_a_device_the_agent_sold_and_names_its_operation() -> None:
    with pytest.raises(sales.Refused) as refused:
        sales.cash_payment(False, 10_000_001, 7, 3, 9, 200, 1_790_000_000)
    assert refused.value.reason is Reason.UNKNOWN_ACCOUNT
    paid = sales.cash_payment(True, 10_000_001, 7, 3, 9, 200, 1_790_000_000)
    assert (paid.source, paid.ref, paid.amount) == (rollup.AGENT, "3:9", 200)
    assert paid.rollup == {"payments": 1, "amount": 200, "agent_cash": 200}


@pytest.mark.parametrize(
    ("status", "sold", "outcome"),
    [
        ("success", True, Outcome.CONFIRMED),
        ("success", False, Outcome.UNKNOWN_ACCOUNT),
        ("failed", True, Outcome.FAILED),
        ("failed", False, Outcome.FAILED),
    ],
)
def test_an_operator_callback_credits_only_a_successful_payment_for_a_sold_device(
    status: str, sold: bool, outcome: Outcome
) -> None:
    assert sales.mobile_money_outcome(status, sold) is outcome


def test_mobile_money_is_counted_on_its_own_channel_and_unknown_channels_are_refused() -> None:
    paid = sales.payment(10_000_001, 7, rollup.MM, "T1", 300, NOW_MS)
    assert paid.rollup == {"payments": 1, "amount": 300, "mobile_money": 300}
    with pytest.raises(ValueError, match="payment source"):
        rollup.payment_rollup("cheque", 300)


@given(st.integers(0, 2**42))
def test_day_of_is_the_utc_calendar_day(ms: int) -> None:
    day = datetime.fromisoformat(rollup.day_of(ms)).replace(tzinfo=UTC)
    assert 0 <= ms - day.timestamp() * 1000 < 86_400_000


ADDITIONS = st.lists(
    st.tuples(
        st.lists(  # one operation's additions: (day, agent, column, amount)
            st.tuples(
                st.sampled_from(["2026-11-29", "2026-11-30"]),
                st.integers(1, 3),
                st.sampled_from(["sales", "payments", "amount"]),
                st.integers(0, 1000),
            ),
            max_size=3,
        ),
        st.booleans(),  # applied (kept) or refused (dropped)
    ),
    max_size=20,
)


@given(ADDITIONS)
def test_a_tally_sums_exactly_the_additions_of_operations_that_applied(
    ops: list[tuple[list[tuple[str, int, str, int]], bool]],
) -> None:
    tally = rollup.Tally()
    want: dict[tuple[str, int], dict[str, int]] = {}
    for additions, applied in ops:
        for day, agent, column, amount in additions:
            tally.add(day, agent, {column: amount})
            if applied:
                sums = want.setdefault((day, agent), {})
                sums[column] = sums.get(column, 0) + amount
        tally.keep() if applied else tally.drop()
    assert tally.kept == want


# -- credit --------------------------------------------------------------------------------

FORMATS = st.sampled_from(list(KeycodeFormat))


@st.composite
def accounts(draw: st.DrawFn) -> Account:
    fmt = draw(FORMATS)
    opaygo = fmt in (KeycodeFormat.OPENPAYGO, KeycodeFormat.OPENPAYGO_RESTRICTED)
    secret = DeviceSecret(
        fmt,
        draw(st.binary(min_size=16, max_size=16)),
        draw(st.integers(1, 10**9 - 1)) if opaygo else 0,
        draw(st.sampled_from([1, 2, 4, 24])) if opaygo else 1,
    )
    return Account(
        10_000_001,
        secret,
        draw(st.integers(0, 200) if opaygo else st.integers(0, 2**20)),
        draw(st.integers(0, 10**6)),
        draw(st.integers(1, 1000)),
        draw(st.integers(NOW_MS - 10**10, NOW_MS + 10**10)),
    )


@given(accounts())
def test_a_grant_spends_exactly_the_days_it_grants_the_most_one_keycode_can_say(
    account: Account,
) -> None:
    fmt, divider = account.secret.format, account.secret.time_divider
    given_ = credit.grant(account)
    affordable = account.balance // account.price_per_day
    if given_ is None:
        assert creditable_days(fmt, affordable, divider) == 0
        return
    assert given_.spent == given_.days * account.price_per_day <= account.balance
    assert given_.days == creditable_days(fmt, given_.days, divider)  # one keycode says it
    # the most one keycode can say of what the balance affords, and never more
    assert given_.days == creditable_days(fmt, affordable, divider) <= affordable
    if given_.days == affordable:
        assert account.balance - given_.spent < account.price_per_day


@given(accounts(), st.integers(2, 9))
def test_the_credit_factor_fault_grants_more_days_but_spends_only_what_was_paid(
    account: Account, factor: int
) -> None:
    honest, faulty = credit.grant(account), credit.grant(account, factor)
    assert (honest is None) == (faulty is None)
    if honest is not None and faulty is not None:
        assert faulty.spent == honest.spent
        assert faulty.days >= honest.days


@given(accounts(), st.integers(1, 3), st.integers(NOW_MS - 10**10, NOW_MS + 10**10))
def test_credit_issues_strictly_increasing_ids_and_stacks_paid_up_time(
    account: Account, copies: int, now_ms: int
) -> None:
    given_ = credit.grant(account)
    if given_ is None:
        return
    done = credit.credit(account, given_, now_ms, copies)
    ids = [message_id for message_id, _ in done.codes] + [done.next_id]
    assert ids[0] == account.next_id
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert all(issued.days == given_.days for _, issued in done.codes)
    assert len({issued.text for _, issued in done.codes}) == copies
    assert done.balance == account.balance - given_.spent  # one payment, whatever the copies
    start = max(account.credit_until_ms, now_ms)
    assert done.credit_until_ms == start + copies * given_.days * DAY_S * 1000
    _, first = done.codes[0]
    entry = done.entry(first, 4, account)
    assert (entry.op_seq, entry.device, entry.credit_s) == (4, account.device, first.credit_s)


def test_credit_refuses_nonsense_it_could_only_get_from_a_bug() -> None:
    account = Account(1, DeviceSecret(KeycodeFormat.NEXUS_FULL, bytes(16)), 0, 500, 100, 0)
    with pytest.raises(ValueError, match="copies"):
        credit.credit(account, Grant(5, 500), NOW_MS, 0)
    with pytest.raises(ValueError, match="price per day"):
        credit.grant(Account(1, account.secret, 0, 500, 0, 0))


# -- idempotency ---------------------------------------------------------------------------


@given(st.binary(max_size=64), st.binary(max_size=64), st.integers(0, 9))
def test_a_replay_gets_its_stored_answer_and_other_content_a_conflict(
    a: bytes, b: bytes, stored: int
) -> None:
    expected = stored if a == b else int(Reason.CONFLICT)
    assert replay.answer(replay.digest(a), replay.digest(b), stored) == expected


# -- no I/O --------------------------------------------------------------------------------


def io_imported(modules: list[str]) -> set[str]:
    """The I/O modules importing `modules` loads, in a fresh interpreter (this one has them)."""
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(json.dumps(sorted(set(sys.modules) & set({list(IO_MODULES)!r}))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout))


def assert_pure(modules: list[str]) -> None:
    loaded = io_imported(modules)
    assert not loaded, f"{modules} import I/O modules {sorted(loaded)}"


def ledger_modules() -> list[str]:
    path = server_stub.ledger.__path__
    return [f"server_stub.ledger.{m.name}" for m in pkgutil.iter_modules(path)]


def test_the_ledger_package_imports_no_io() -> None:
    modules = ledger_modules()
    assert {"server_stub.ledger.sales", "server_stub.ledger.credit"} <= set(modules)
    assert_pure(modules)


def test_the_purity_check_catches_a_module_that_does_io() -> None:
    with pytest.raises(AssertionError, match="sqlite3"):
        assert_pure([*ledger_modules(), "server_stub.store"])
