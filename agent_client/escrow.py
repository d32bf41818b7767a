"""The handset's escrow of activation codes for offline sales: sealed at rest, released once.

The platform hands a handset, at sync, one add-credit code per device in its agent's stock (at
most the agent's bound). The handset keeps them sealed (AES-256-GCM, the key derived with
HKDF-SHA256 from its provisioning secret, the handset id as associated data), so a copied
database alone gives no code away; an agent who sells with no link releases the device's code
at once, and the release travels up with the sale at the next sync.

    key = escrow_key(private_key_bytes, handset_id)
    blob = seal(key, handset_id, codes, nonce=os.urandom(12))
    vault = HandsetEscrow(unseal(key, handset_id, blob))
    code = vault.release(device, in_stock=device in unsold)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from agent_client.errors import AgentError

NONCE_BYTES = 12
INFO = b"payg-field-lab escrow v1"
U32 = 2**32
U53 = 2**53


class EscrowError(AgentError):
    """The sealed escrow does not open: wrong key, another handset's, or damaged."""


class EscrowRefused(AgentError):
    """A release the handset will not make (no code, not in stock, released already)."""

    def __init__(self, reason: str, device: int) -> None:
        super().__init__(f"device {device}: {reason}")
        self.reason = reason
        self.device = device


@dataclass(frozen=True, slots=True)
class EscrowCode:
    device: int
    reserved_id: int
    """The message id (Nexus) or count (OpenPAYGO) the platform reserved for this code."""
    format: int
    number: int
    """The keycode as its wire number (`agent_client.protocol.keycodes`)."""
    credit_s: int

    def fields(self) -> list[int]:
        return [self.device, self.reserved_id, self.format, self.number, self.credit_s]


def escrow_key(secret: bytes, handset: int) -> bytes:
    """The sealing key of `handset`, from its provisioning secret (32 bytes out)."""
    if len(secret) < 16:
        raise EscrowError("the provisioning secret is shorter than 16 bytes")
    hkdf = HKDF(hashes.SHA256(), 32, salt=None, info=INFO + handset.to_bytes(4, "big"))
    return hkdf.derive(secret)


def seal(key: bytes, handset: int, codes: Iterable[EscrowCode], *, nonce: bytes) -> bytes:
    """nonce || AES-GCM(codes); `nonce` must never repeat under one key (use os.urandom)."""
    if len(nonce) != NONCE_BYTES:
        raise EscrowError(f"nonce must be {NONCE_BYTES} bytes")
    plain = msgpack.packb([c.fields() for c in codes])
    return nonce + AESGCM(key).encrypt(nonce, plain, handset.to_bytes(4, "big"))


def unseal(key: bytes, handset: int, blob: bytes) -> list[EscrowCode]:
    """The codes in `blob`; EscrowError when it was not sealed by this key for this handset."""
    if len(blob) < NONCE_BYTES + 16:
        raise EscrowError("sealed escrow is too short")
    try:
        plain = AESGCM(key).decrypt(
            blob[:NONCE_BYTES], blob[NONCE_BYTES:], handset.to_bytes(4, "big")
        )
    except InvalidTag as exc:
        raise EscrowError("sealed escrow does not open: other key or handset, or damaged") from exc
    try:
        rows = msgpack.unpackb(plain, strict_map_key=True)
        codes = [EscrowCode(*(_int(v) for v in row)) for row in rows]
    except (ValueError, TypeError, msgpack.ExtraData) as exc:
        raise EscrowError(f"sealed escrow holds no code list: {exc}") from exc
    return codes


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < U53 * U32:
        raise ValueError(f"expected a whole number, got {value!r}")
    return value


@dataclass
class HandsetEscrow:
    """What the handset holds (one code per device) and what it released, sans I/O."""

    codes: dict[int, EscrowCode] = field(default_factory=dict)
    released: dict[int, EscrowCode] = field(default_factory=dict)
    """Released, not yet reconciled by the platform (they go up with the sale)."""

    @classmethod
    def of(cls, codes: Iterable[EscrowCode]) -> HandsetEscrow:
        return cls({c.device: c for c in codes})

    def refresh(self, platform_codes: Iterable[EscrowCode]) -> None:
        """The platform's current set at sync: new codes kept, revoked ones dropped. A code
        released here and not yet reconciled stays released (it is not offered again)."""
        self.codes = {c.device: c for c in platform_codes if c.device not in self.released}

    def grant(self, code: EscrowCode) -> None:
        """A code the platform escrowed (a downlink entry); one per device, the newest."""
        if code.device not in self.released:
            self.codes[code.device] = code

    def revoke(self, device: int, reserved_id: int) -> None:
        """The platform revoked this code (the device left the agent's stock)."""
        held = self.codes.get(device)
        if held is not None and held.reserved_id == reserved_id:
            del self.codes[device]

    def release(self, device: int, *, in_stock: bool) -> EscrowCode:
        """The code for an offline sale of `device`, once."""
        if device in self.released:
            raise EscrowRefused("released already", device)
        if not in_stock:
            raise EscrowRefused("not in this agent's stock", device)
        code = self.codes.pop(device, None)
        if code is None:
            raise EscrowRefused("no escrowed code (revoked, or never granted)", device)
        self.released[device] = code
        return code

    def reconciled(self, device: int) -> None:
        """The platform accounted the sale that released this device's code."""
        self.released.pop(device, None)
