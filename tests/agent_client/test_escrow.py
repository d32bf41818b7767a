"""The handset's sealed escrow: opens only with its key and handset id, releases each code once,
and follows the platform's grants and revocations (a state machine against a plain model)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

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


class VaultMachine(RuleBasedStateMachine):
    """Escrow entries (grant, revoke) and releases in any order, sealed at rest after every
    step as the handset store does: the vault agrees with a plain model, never releases a code
    twice, and never holds a code for a device it released."""

    def __init__(self) -> None:
        super().__init__()
        self.key = escrow_key(SECRET, 7)
        self.blob = seal(self.key, 7, [], nonce=bytes(12))
        self.held: dict[int, int] = {}
        self.released: set[tuple[int, int]] = set()
        self.nonce = 0

    def vault(self) -> HandsetEscrow:
        vault = HandsetEscrow.of(unseal(self.key, 7, self.blob))
        vault.released = {d: EscrowCode(d, r, 0, 0, 0) for d, r in self.released}
        return vault

    def keep(self, vault: HandsetEscrow) -> None:
        self.nonce += 1
        self.blob = seal(self.key, 7, vault.codes.values(), nonce=self.nonce.to_bytes(12, "big"))

    @rule(device=st.integers(1, 5), reserved=st.integers(0, 9))
    def grant(self, device: int, reserved: int) -> None:
        vault = self.vault()
        vault.grant(EscrowCode(device, reserved, 0, reserved, 86_400))
        if device not in {d for d, _ in self.released}:
            self.held[device] = reserved
        self.keep(vault)

    @rule(device=st.integers(1, 5), reserved=st.integers(0, 9))
    def revoke(self, device: int, reserved: int) -> None:
        vault = self.vault()
        vault.revoke(device, reserved)
        if self.held.get(device) == reserved:
            del self.held[device]
        self.keep(vault)

    @rule(device=st.integers(1, 5), in_stock=st.booleans())
    def release(self, device: int, in_stock: bool) -> None:
        vault = self.vault()
        expected = self.held.get(device) if in_stock else None
        if device in {d for d, _ in self.released}:
            expected = None
        try:
            code = vault.release(device, in_stock=in_stock)
        except EscrowRefused:
            assert expected is None
            return
        assert (code.device, code.reserved_id) == (device, expected)
        assert (device, code.reserved_id) not in self.released
        self.released.add((device, code.reserved_id))
        del self.held[device]
        self.keep(vault)

    @invariant()
    def agrees(self) -> None:
        codes = {c.device: c.reserved_id for c in unseal(self.key, 7, self.blob)}
        assert codes == self.held
        assert not set(codes) & {d for d, _ in self.released}


TestVault = VaultMachine.TestCase
TestVault.settings = settings(max_examples=20, stateful_step_count=15, deadline=None)
