"""Golden vectors: upstream's 80 test tokens, the docs quick test, the reference's §3 run.

`test_tokens.jsonl` is a verbatim copy of `test/test_tokens.jsonl` from
EnAccess/OpenPAYGO-python (MIT; commit b6c9ef55dbeac8a92c2d2c9785d1c8a69926fd32, generated
upstream by `utils/generate_test_tokens.py`), read with the read_file tool and stored as
data. Each row is a token issued from `count` to `new_count`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openpaygo import generate_token

from meter_sim.actions import AddCredit, SetCredit, Unlock
from meter_sim.openpaygo import Kind, TokenState, derive_starting_code, process_token
from meter_sim.outcomes import Outcome
from tests.meter_sim.openpaygo.encoder import (
    DOCS_KEY,
    DOCS_STARTING_CODE,
    MODE,
    RAW_VALUE,
    action_for,
)

VECTORS: list[dict[str, Any]] = [
    json.loads(line)
    for line in (Path(__file__).parent / "test_tokens.jsonl").read_text().splitlines()
]
KIND = {
    "ADD_TIME": Kind.ADD,
    "SET_TIME": Kind.SET,
    "DISABLE_PAYG": Kind.DISABLE,
    "COUNTER_SYNC": Kind.SYNC,
}


def _row_id(row: dict[str, Any]) -> str:
    return f"{row['serial_number']}-{row['token_type']}-{row['value_raw']}-{row['token']}"


def test_the_vector_file_is_complete() -> None:
    # 2 devices x ({ADD, SET} x 4 values + DISABLE + SYNC) x restricted x extended.
    assert len(VECTORS) == 80
    assert sorted({len(r["token"]) for r in VECTORS}) == [9, 12, 15, 20]


@pytest.mark.parametrize("row", VECTORS, ids=_row_id)
def test_upstream_vector_decodes(row: dict[str, Any]) -> None:
    kind = KIND[row["token_type"]]
    value = row["value_raw"] if row["value_raw"] is not None else RAW_VALUE[kind]
    if row["extended_token"]:
        # Extended tokens have no DISABLE or SYNC: the kind is the count's parity.
        kind = Kind.SET if row["new_count"] % 2 else Kind.ADD
    state = TokenState.initial(row["count"])
    decision = process_token(
        row["token"],
        secret_key=bytes.fromhex(row["key"]),
        starting_code=row["starting_code"],
        state=state,
        restricted_digits=row["restricted_digit_set"],
    )
    assert decision.outcome is Outcome.APPLIED, decision.reason
    assert decision.state.count == row["new_count"]
    assert decision.action == action_for(kind, value)
    # Entering it again changes nothing.
    again = process_token(
        row["token"],
        secret_key=bytes.fromhex(row["key"]),
        starting_code=row["starting_code"],
        state=decision.state,
        restricted_digits=row["restricted_digit_set"],
    )
    assert again.outcome is Outcome.DUPLICATE
    assert again.state == decision.state


@pytest.mark.parametrize("row", VECTORS, ids=_row_id)
def test_the_reference_encoder_reproduces_the_vector(row: dict[str, Any]) -> None:
    # Guards the stored copy and the encoder the other tests rely on.
    kind = KIND[row["token_type"]]
    assert generate_token(
        secret_key=row["key"],
        count=row["count"],
        value=row["value_raw"],
        token_type=MODE[kind],
        starting_code=row["starting_code"],
        restricted_digit_set=row["restricted_digit_set"],
        extended_token=row["extended_token"],
    ) == (row["new_count"], row["token"])


DOCS_QUICK_TEST = [
    ("662486790", 2, AddCredit(1 * 86_400)),
    ("927706818", 4, AddCredit(29 * 86_400)),
    ("942433796", 5, SetCredit(7 * 86_400)),
    ("650975787", 7, Unlock()),
    ("592185789", 9, SetCredit(0)),
]


@pytest.mark.parametrize("initial", [0, 1])
def test_docs_quick_test(initial: int) -> None:
    state = TokenState.initial(initial)
    first = process_token("123456789", secret_key=DOCS_KEY, starting_code=123456789, state=state)
    assert first.outcome is Outcome.INVALID  # the starting code itself: the docs say invalid
    assert first.state == state
    for token, count, action in DOCS_QUICK_TEST:
        decision = process_token(
            token, secret_key=DOCS_KEY, starting_code=DOCS_STARTING_CODE, state=state
        )
        assert (decision.outcome, decision.state.count, decision.action) == (
            Outcome.APPLIED,
            count,
            action,
        ), decision.reason
        state = decision.state


# The reference's §3 run on the docs key: (token, outcome, count after, action).
# 123456789 differs from the library on purpose: it matches count 0 only, which is INVALID
# here (as in the C code) where the library says ALREADY_USED.
SECTION_3 = [
    ("016609796", Outcome.APPLIED, 2, AddCredit(7 * 86_400)),
    ("016609796", Outcome.DUPLICATE, 2, None),
    ("586541819", Outcome.APPLIED, 3, SetCredit(30 * 86_400)),
    ("129635787", Outcome.APPLIED, 5, Unlock()),
    ("123456789", Outcome.INVALID, 5, None),
    ("962558788", Outcome.APPLIED, 7, None),
]


def test_section_3_sequence() -> None:
    state = TokenState.initial(1)
    for token, outcome, count, action in SECTION_3:
        decision = process_token(
            token, secret_key=DOCS_KEY, starting_code=DOCS_STARTING_CODE, state=state
        )
        assert (decision.outcome, decision.state.count, decision.action) == (
            outcome,
            count,
            action,
        ), f"{token}: {decision.reason}"
        state = decision.state
    assert state.used == frozenset(range(8))


@pytest.mark.parametrize(
    ("token", "restricted", "action"),
    [
        ("111444224131121", True, AddCredit(7 * 86_400)),
        ("963686580245", False, AddCredit(123_456 * 86_400)),
        ("324244134441123", True, AddCredit(1 * 86_400)),  # §2.6: 662486790 on keys 1-4
    ],
)
def test_section_3_restricted_and_extended(token: str, restricted: bool, action: object) -> None:
    decision = process_token(
        token,
        secret_key=DOCS_KEY,
        starting_code=DOCS_STARTING_CODE,
        state=TokenState.initial(1),
        restricted_digits=restricted,
    )
    assert (decision.outcome, decision.state.count, decision.action) == (
        Outcome.APPLIED,
        2,
        action,
    )


def test_starting_code_derived_from_the_key() -> None:
    assert derive_starting_code(DOCS_KEY) == 573664003
