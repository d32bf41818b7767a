"""Test harness: a tiny product around the validators, plus encoders for upstream vectors.

`Unit` plays the product side of the firmware (credit seconds, unlocked flag, PAYG state) so
scenarios can check credit the way the upstream C tests check `nxp_keycode_payg_credit_*`.
Upstream test frames are written in other alphabets; `small_keys` maps them onto `2345`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace

from meter_sim.actions import Action, AddCredit, Decision, SetCredit, Unlock
from meter_sim.nexus import NexusState, process_full, process_small
from meter_sim.nexus.mac import prng
from meter_sim.nexus.policy import FIRMWARE, NexusPolicy
from meter_sim.outcomes import PaygState

KEY_00 = bytes(16)
KEY_FF = b"\xff" * 16
KEY_MIXED = bytes.fromhex("12ff00ffffffffffffffffffffcdffab")
KEY_EXTENDED = b"\xfe" * 8 + b"\xa2" * 8
KEY_SAMPLE = bytes.fromhex("deadbeef1020304004030201feebdaed")
DAY = 86400


@dataclass
class Unit:
    """A product using the validators: what the device's credit hooks would do."""

    key: bytes
    nexus: NexusState = field(default_factory=NexusState)
    credit: int = 0
    unlocked: bool = False
    payg_override: PaygState | None = None
    policy: NexusPolicy = FIRMWARE

    @property
    def payg(self) -> PaygState:
        if self.payg_override is not None:
            return self.payg_override
        if self.unlocked:
            return PaygState.UNLOCKED
        return PaygState.ENABLED if self.credit > 0 else PaygState.DISABLED

    def apply(self, action: Action | None) -> None:
        if isinstance(action, AddCredit):
            self.credit += action.seconds
        elif isinstance(action, SetCredit):
            self.credit, self.unlocked = action.seconds, False
        elif isinstance(action, Unlock):
            self.credit, self.unlocked = 0, True

    def full(
        self,
        keycode: str,
        *,
        allow_demo: bool | None = None,
        allow_nomac_id: bool | None = None,
        payg_id: str = "",
    ) -> Decision[NexusState]:
        frame = keycode.replace(" ", "").removeprefix("*").removesuffix("#")
        decision = process_full(
            frame,
            secret_key=self.key,
            state=self.nexus,
            payg=self.payg,
            payg_id=payg_id,
            policy=self.policy,
            allow_demo=allow_demo,
            allow_nomac_id=allow_nomac_id,
        )
        return self._take(decision)

    def small(self, keycode: str) -> Decision[NexusState]:
        symbols = keycode.replace(" ", "")
        if len(symbols) == 15 and symbols[0] == "1":
            symbols = symbols[1:]
        decision = process_small(
            symbols, secret_key=self.key, state=self.nexus, payg=self.payg, policy=self.policy
        )
        return self._take(decision)

    def _take(self, decision: Decision[NexusState]) -> Decision[NexusState]:
        self.nexus = decision.state
        self.apply(decision.action)
        return decision

    def set_restricted(self) -> None:
        self.nexus = replace(self.nexus, restricted=True)


def small_keys(frame: str, alphabet: str = "0123") -> str:
    """An upstream small frame (written in `alphabet`, start key omitted) in our keys."""
    return "".join("2345"[alphabet.index(symbol)] for symbol in frame)


def small_frame(cid: int, type_code: int, body: int, mac: int) -> str:
    """Obscure and render a small message given field by field (upstream struct-level vectors)."""
    pad = prng(struct.pack(">H", mac))
    head = (cid << 10 | type_code << 8 | body) ^ int.from_bytes(pad[:2], "big")
    bits = head << 12 | mac
    return "".join("2345"[bits >> shift & 3] for shift in range(26, -1, -2))


def full_frame(clear: str) -> str:
    """Obscure a 14-digit cleartext `T II BBBBB MMMMMM` (upstream struct-level vectors)."""
    pad = prng(struct.pack("<I", int(clear[8:])))
    return "".join(str((int(clear[i]) + pad[i]) % 10) for i in range(8)) + clear[8:]
