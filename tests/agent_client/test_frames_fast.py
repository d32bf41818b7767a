"""The codecs' fast paths (no field names built for well-formed input) agree with the slow,
naming paths they short-cut: same values for what both accept, and a refusal left to the slow
path, which names the field."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_client.protocol import frames
from agent_client.protocol.errors import FrameError
from agent_client.protocol.frames import Entry, EntryKind, entry_from_row_slowly, entry_to_row
from agent_client.protocol.keycodes import LAYOUTS
from agent_client.protocol.ops import (
    MAX_SEQ,
    MAX_TIME,
    U32,
    Kind,
    check_fields,
    check_fields_slowly,
    schema,
)
from agent_client.strategies import entries, fields_for

# values at and around every bound the checks use, and values of the wrong type
BOUNDS = [U32, MAX_SEQ, MAX_TIME, *(layout.limit for layout in LAYOUTS.values())]
odd = st.one_of(
    st.sampled_from([-1, 0, 1, 2, 3, 4, 5, True, False, None]),
    st.sampled_from([b + d for b in BOUNDS for d in (-1, 0, 1)]),
    st.integers(),
    st.text(max_size=70),
    st.floats(allow_nan=False),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=2),
)


def wire(entry: Entry) -> list[object]:
    """The entry's row as a handset receives it (plain ints, not enum members)."""
    row = msgpack.unpackb(msgpack.packb(entry_to_row(entry)))
    assert isinstance(row, list)
    return row


@st.composite
def rows(draw: st.DrawFn) -> list[object]:
    """A valid entry's row, often with one item replaced, cut short or lengthened."""
    row = wire(draw(entries))
    choice = draw(st.integers(0, 3))
    if choice == 1:
        row[draw(st.integers(0, len(row) - 1))] = draw(odd)
    elif choice == 2:
        row = row[: draw(st.integers(0, len(row)))]
    elif choice == 3:
        row += draw(st.lists(odd, max_size=3))
    return row


def decoded(decode: object, *args: object) -> object:
    """What `decode(*args)` returns, or the FrameError's detail it raises."""
    assert callable(decode)
    try:
        return decode(*args)
    except FrameError as exc:
        return ("refused", exc.detail)


@given(rows())
def test_fast_entries_are_what_the_slow_path_decodes(row: list[object]) -> None:
    fast = frames._entry_fast(row)
    if fast is not None:
        assert fast == entry_from_row_slowly(row)


@given(entries)
def test_the_usual_entries_take_the_fast_path(entry: Entry) -> None:
    row = wire(entry)
    usual = row[0] in (EntryKind.KEYCODE, EntryKind.PAYMENT, EntryKind.STOCK, EntryKind.PLAN)
    assert (frames._entry_fast(row) is not None) == usual


@st.composite
def field_values(draw: st.DrawFn) -> tuple[Kind, list[object]]:
    kind = draw(st.sampled_from(Kind))
    values = list(draw(fields_for(kind)))
    choice = draw(st.integers(0, 3))
    if choice == 1 and values:
        values[draw(st.integers(0, len(values) - 1))] = draw(odd)
    elif choice == 2:
        values = values[: draw(st.integers(0, len(values)))]
    elif choice == 3:
        values += draw(st.lists(odd, max_size=3))
    return kind, values


@given(field_values())
def test_fast_field_checks_agree_with_the_slow_ones(case: tuple[Kind, list[object]]) -> None:
    kind, values = case
    assert decoded(check_fields, kind, values) == decoded(check_fields_slowly, kind, values)


def test_a_refused_field_is_named() -> None:
    kind = Kind.RECORD_PAYMENT
    with pytest.raises(FrameError, match=r"record_payment\.amount"):
        check_fields(kind, [10_000_001, -5])
    assert len(schema(kind)) == 2


EDGES = [
    *(b + d for b in [0, 1, *BOUNDS] for d in (-1, 0, 1)),
    *("x" * n for n in (0, 1, 20, 40, 41, 64, 65)),
    True,
    None,
    1.0,
    b"1",
]
"""Every bound the checks use, one either side, and values of the wrong type."""

TEMPLATES = [
    [EntryKind.KEYCODE, 7, 10_000_001, 0, 12345, 86_400],
    [EntryKind.KEYCODE, 7, 10_000_001, 2, 12345, 86_400],
    [EntryKind.PAYMENT, 10_000_001, 300, "MM00000001"],
    [EntryKind.STOCK, 10_000_001, 1, 1],
    [EntryKind.PLAN, 1, "solar-home", 100],
]


@pytest.mark.parametrize("template", TEMPLATES)
def test_each_field_at_each_edge_decodes_the_same_both_ways(template: list[object]) -> None:
    for position in range(1, len(template)):
        for value in EDGES:
            row = [int(template[0]), *template[1:]]  # type: ignore[call-overload]
            row[position] = value
            fast = frames._entry_fast(row)
            slow = decoded(entry_from_row_slowly, row)
            assert fast is None or fast == slow, (row, fast, slow)
            if not isinstance(slow, tuple):  # the slow path took it: so does the fast one
                assert fast == slow, (row, slow)


@pytest.mark.parametrize("kind", list(Kind))
def test_each_operation_field_at_each_edge_is_checked_the_same_both_ways(kind: Kind) -> None:
    template: list[object] = {
        Kind.REGISTER_CUSTOMER: ["Esi", "+233200000001"],
        Kind.RECORD_SALE: [5, 10_000_001, 1, 700, 3],
        Kind.RECORD_PAYMENT: [10_000_001, 300],
    }[kind]
    for position in range(len(template)):
        for value in EDGES:
            values = [*template]
            values[position] = value
            assert decoded(check_fields, kind, values) == decoded(check_fields_slowly, kind, values)
