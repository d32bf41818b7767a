from __future__ import annotations

import pytest
import siphash as reference
from hypothesis import given
from hypothesis import strategies as st

from meter_sim import siphash as module
from meter_sim.siphash import IMPLEMENTATION, siphash24, siphash24_python

BOTH = pytest.mark.parametrize("fn", [siphash24, siphash24_python], ids=["default", "python"])


@BOTH
def test_paper_vector(fn) -> None:  # type: ignore[no-untyped-def]
    # Aumasson & Bernstein, appendix A: key 00..0f, message 00..0e.
    key = bytes(range(16))
    assert fn(key, bytes(range(15))) == 0xA129CA6149BE45E5


@BOTH
def test_a_key_of_the_wrong_length_is_refused(fn) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        fn(bytes(15), b"x")


def test_the_c_implementation_is_the_default_where_installed() -> None:
    pytest.importorskip("siphashc")
    assert IMPLEMENTATION == "siphashc"
    assert siphash24 is not siphash24_python


def test_without_siphashc_the_python_one_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_siphashc(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "siphashc":
            raise ImportError("not installed")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_siphashc)
    assert module._native() == ("python", siphash24_python)


@given(st.binary(min_size=16, max_size=16), st.binary(max_size=40))
def test_both_implementations_match_the_reference_library(key: bytes, data: bytes) -> None:
    expected = reference.SipHash_2_4(key, data).hash()
    assert siphash24(key, data) == expected
    assert siphash24_python(key, data) == expected
