"""Splitting a device's bytes into answer lines, whatever the chunking or the noise."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from meter_sim.trace.lines import Garbage, Line, LineSplitter


def split_all(chunks: list[bytes], limit: int = 64) -> list[Line | Garbage]:
    splitter = LineSplitter(limit)
    return [item for chunk in chunks for item in splitter.feed(chunk)]


def test_lines_partial_crlf_blank() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"OK KEY acc") == []
    assert splitter.pending == b"OK KEY acc"
    assert splitter.feed(b"epted\r\n\r\n  \nOK") == [Line("OK KEY accepted")]
    assert splitter.clear() == b"OK"
    assert splitter.feed(b"\n") == []


def test_noise_is_set_aside_with_the_reason() -> None:
    out = split_all([b"\x00\xffBOOT\r\nOK TIME 1\n", b"x" * 100, b"y\nOK TIME 2\n", b"a\x07b\n"])
    assert out[0] == Garbage(b"\x00\xffBOOT", "bytes outside ASCII")
    assert out[1] == Line("OK TIME 1")
    assert isinstance(out[2], Garbage)
    assert out[2].why == "line longer than 64 bytes"
    assert out[3] == Line("OK TIME 2")
    assert out[4] == Garbage(b"a\x07b", "control characters in a line")
    assert len(out) == 5


def test_tabs_are_word_separators() -> None:
    assert split_all([b"KEY\t5\n"]) == [Line("KEY 5")]


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=10))
def test_chunking_never_changes_the_result(data: bytes, cuts: list[int]) -> None:
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    assert split_all(chunks) == split_all([data])


@given(st.binary(max_size=2000))
def test_memory_is_bounded(data: bytes) -> None:
    splitter = LineSplitter(32)
    splitter.feed(data)
    assert len(splitter.pending) <= 32
