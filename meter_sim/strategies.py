"""Hypothesis strategies for keycodes, for your tests of meters, jigs and keycode pipelines.

    keycode_texts(protocol)        well-formed text for a keypad: the shape is right, the
                                   content arbitrary (so almost always refused, never a crash)
    add_credit_keycodes(device)    keycodes that a fresh meter built from `device`
                                   (`DeviceConfig.build()`) applies, with the credit they add

Shapes, by `protocol` (the names `Meter.protocol` and trace headers use):

    nexus-full             ``*`` and 14 digits and ``#``      (an activation frame)
    nexus-small            ``1`` and 14 keys of ``2345``
    openpaygo              9 digits                           (a standard token)
    openpaygo-restricted   15 keys of ``1234``, a code within the standard range

Valid codes are made by the field's reference encoders (nexus-keycode, openpaygo), never by
this package's validators, so a test that enters them is not the meter checking itself.
Needs hypothesis installed (the test extra: ``pip install 'payg-field-lab[test]'``); nothing
else in `meter_sim` imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

try:
    from hypothesis import strategies as st
    from hypothesis.errors import InvalidArgument
except ImportError as exc:  # pragma: no cover - only without the test extra
    raise ImportError(
        "meter_sim.strategies needs hypothesis: pip install 'payg-field-lab[test]'"
    ) from exc
from nexus_keycode.protocols.full import FullMessage
from nexus_keycode.protocols.small import AddCreditSmallMessage
from openpaygo import TokenType
from openpaygo.token_encode import OpenPAYGOTokenEncoder
from openpaygo.token_shared import OpenPAYGOTokenShared

from meter_sim.meter import MAX_OPENPAYGO_COUNT
from meter_sim.openpaygo.chain import STANDARD
from meter_sim.trace.device import DeviceConfig

__all__ = ["AddCreditCode", "KeypadProtocol", "add_credit_keycodes", "keycode_texts"]

KeypadProtocol = Literal["nexus-full", "nexus-small", "openpaygo", "openpaygo-restricted"]
_PROTOCOLS: tuple[str, ...] = get_args(KeypadProtocol)

DAY = 86_400
HOUR = 3_600
FRESH_IDS = range(64)
"""Nexus message ids a fresh meter accepts: its window is [pd - 23, pd + 40] with pd = 23."""
MAX_FULL_HOURS = 99_998
"""Five body digits; 99999 is the backend's unlock flag (a SET), so ADD stays below it."""
SMALL_ADD_DAYS = (*range(1, 181), *range(183, 406, 3))
"""Day counts the small protocol carries exactly (longer ones are rounded to a bucket)."""
MAX_OPENPAYGO_DAYS = 995
"""996..999 are reserved, DISABLE and SYNC values."""
OPENPAYGO_JUMP = 64
"""A token may be at most this many counts above the device's."""


@dataclass(frozen=True, slots=True)
class AddCreditCode:
    """A keycode as the customer types it, and the seconds of credit it adds to a fresh meter."""

    text: str
    credit_s: int


def _check_protocol(protocol: object) -> str:
    if protocol not in _PROTOCOLS:
        raise InvalidArgument(f"protocol must be one of {', '.join(_PROTOCOLS)}; got {protocol!r}")
    return str(protocol)


def keycode_texts(protocol: KeypadProtocol) -> st.SearchStrategy[str]:
    """Text a `protocol` keypad takes as one whole code (see the module docstring)."""
    match _check_protocol(protocol):
        case "nexus-full":
            return st.text("0123456789", min_size=14, max_size=14).map(lambda d: f"*{d}#")
        case "nexus-small":
            return st.text("2345", min_size=14, max_size=14).map(lambda s: "1" + s)
        case "openpaygo":
            return st.text("0123456789", min_size=9, max_size=9)
        case _:
            return st.integers(0, STANDARD.max_code).map(_restricted_keys)


def _restricted_keys(code: int) -> str:
    """A standard token on a 1-4 keypad (two bits a key), as the reference encoder writes it."""
    return f"{int(OpenPAYGOTokenShared.convert_to_4_digit_token(code)):015d}"


def add_credit_keycodes(device: DeviceConfig) -> st.SearchStrategy[AddCreditCode]:
    """ADD-credit codes that `device.build()`, fresh, applies once and then calls duplicate.

    Nexus codes use any message id in the fresh window (0..63); OpenPAYGO tokens any count
    a fresh device accepts, and only tokens whose chain code no other count in reach shares
    (such a token would be applied again at that count, as on a real device). Issuing an
    OpenPAYGO token walks its chain from the starting code: the cost grows with `device.count`.
    """
    if not isinstance(device, DeviceConfig):
        raise InvalidArgument(f"device must be a DeviceConfig, got {type(device).__name__}")
    protocol = _check_protocol(device.protocol)
    key = device.key
    if not isinstance(key, bytes) or len(key) != 16:
        raise InvalidArgument("device.key must be the 16-byte secret key")
    if protocol == "nexus-full":
        return st.builds(
            _nexus_full, st.just(key), st.sampled_from(FRESH_IDS), st.integers(1, MAX_FULL_HOURS)
        )
    if protocol == "nexus-small":
        return st.builds(
            _nexus_small, st.just(key), st.sampled_from(FRESH_IDS), st.sampled_from(SMALL_ADD_DAYS)
        )
    starting_code = device.starting_code
    if type(starting_code) is not int or not 0 <= starting_code <= STANDARD.max_code:
        raise InvalidArgument(f"an OpenPAYGO device needs starting_code 0..{STANDARD.max_code}")
    if type(device.count) is not int or not 1 <= device.count <= MAX_OPENPAYGO_COUNT:
        raise InvalidArgument(
            f"device.count must be 1..{MAX_OPENPAYGO_COUNT}, got {device.count!r}"
        )
    if type(device.time_divider) is not int or not 1 <= device.time_divider <= 255:
        raise InvalidArgument(f"device.time_divider must be 1..255, got {device.time_divider!r}")
    token = _OpenPaygo(device, key, starting_code)
    issued = st.builds(
        token.add,
        st.integers(device.count, device.count + OPENPAYGO_JUMP - 2),
        st.integers(1, MAX_OPENPAYGO_DAYS),
    )
    return issued.filter(lambda pair: pair[1]).map(lambda pair: pair[0])


def _nexus_full(key: bytes, id_: int, hours: int) -> AddCreditCode:
    message = FullMessage.add_credit(id_=id_, hours=hours, secret_key=key)
    return AddCreditCode(str(message.to_keycode(separator="")), hours * HOUR)


def _nexus_small(key: bytes, id_: int, days: int) -> AddCreditCode:
    message = AddCreditSmallMessage(id_=id_, days=days, secret_key=key)
    return AddCreditCode(str(message.to_keycode(separator="")), days * DAY)


@dataclass(frozen=True, slots=True)
class _OpenPaygo:
    device: DeviceConfig
    key: bytes
    starting_code: int

    def add(self, server_count: int, days: int) -> tuple[AddCreditCode, bool]:
        """The ADD token a server at `server_count` issues, and whether it is unambiguous."""
        count, token = OpenPAYGOTokenEncoder.generate_standard_token(
            starting_code=self.starting_code,
            key=self.key,
            value=days,
            count=server_count,
            mode=TokenType.ADD_TIME,
        )
        code = int(token)
        restricted = self.device.protocol == "openpaygo-restricted"
        text = _restricted_keys(code) if restricted else f"{code:09d}"
        credit = days * DAY // self.device.time_divider
        return AddCreditCode(text, credit), self._only_at(code, int(count))

    def _only_at(self, code: int, count: int) -> bool:
        """Whether no count from 0 to `count` + 64 but `count` has `code`'s high digits."""
        modulus = STANDARD.value_modulus
        chain = OpenPAYGOTokenShared.put_base_in_token(self.starting_code, code % modulus)
        matches = []
        for n in range(count + OPENPAYGO_JUMP + 1):
            if chain // modulus == code // modulus:
                matches.append(n)
            chain = OpenPAYGOTokenShared.generate_next_token(chain, self.key)
        return matches == [count]
