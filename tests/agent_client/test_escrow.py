"""The handset's sealed escrow: opens only with its key and handset id, releases each code once."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_client.escrow import (
    EscrowCode,
    EscrowError,
    EscrowRefused,
    HandsetEscrow,
    escrow_key,
    seal,
    unseal,
)

codes = st.lists(
    st.builds(
        EscrowCode,
        st.integers(1, 2**32 - 1),
        st.integers(0, 2**32),
        st.integers(0, 3),
        st.integers(0, 10**15),
        st.integers(0, 10**8),
    ),
    max_size=20,
)
SECRET = bytes(range(32))


@given(codes, st.binary(min_size=12, max_size=12), st.integers(1, 2**32 - 1))
def test_sealed_codes_open_as_they_went_in(items: list[EscrowCode], nonce: bytes, hs: int) -> None:
    key = escrow_key(SECRET, hs)
    assert unseal(key, hs, seal(key, hs, items, nonce=nonce)) == items


@given(codes, st.data())
def test_any_damage_other_handset_or_other_key_does_not_open(
    items: list[EscrowCode], data: st.DataObject
) -> None:
    key = escrow_key(SECRET, 7)
    blob = seal(key, 7, items, nonce=bytes(12))
    i = data.draw(st.integers(0, len(blob) - 1))
    flipped = blob[:i] + bytes([blob[i] ^ data.draw(st.integers(1, 255))]) + blob[i + 1 :]
    for k, hs, b in ((key, 7, flipped), (key, 8, blob), (escrow_key(SECRET, 8), 7, blob)):
        with pytest.raises(EscrowError):
            unseal(k, hs, b)
    with pytest.raises(EscrowError, match="too short"):
        unseal(key, 7, blob[:20])


def test_a_code_is_released_once_only_for_a_device_in_stock_and_never_after_revocation() -> None:
    a, b, c = (EscrowCode(d, 5, 0, 123, 86_400) for d in (1, 2, 3))
    vault = HandsetEscrow.of([a, b, c])
    with pytest.raises(EscrowRefused, match="not in this agent's stock"):
        vault.release(1, in_stock=False)
    assert vault.release(1, in_stock=True) == a
    with pytest.raises(EscrowRefused, match="released already"):
        vault.release(1, in_stock=True)
    vault.refresh([a, c])  # the platform revoked 2 (moved to another agent); 1 is still released
    with pytest.raises(EscrowRefused, match="released already"):
        vault.release(1, in_stock=True)
    with pytest.raises(EscrowRefused, match="no escrowed code"):
        vault.release(2, in_stock=True)
    vault.reconciled(1)
    assert vault.release(3, in_stock=True) == c
    assert set(vault.released) == {3}
