from __future__ import annotations

import siphash as reference
from hypothesis import given
from hypothesis import strategies as st

from meter_sim.siphash import siphash24


def test_paper_vector() -> None:
    # Aumasson & Bernstein, appendix A: key 00..0f, message 00..0e.
    key = bytes(range(16))
    assert siphash24(key, bytes(range(15))) == 0xA129CA6149BE45E5


@given(st.binary(min_size=16, max_size=16), st.binary(max_size=40))
def test_matches_reference_library(key: bytes, data: bytes) -> None:
    assert siphash24(key, data) == reference.SipHash_2_4(key, data).hash()
