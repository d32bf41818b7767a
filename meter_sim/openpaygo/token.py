"""OpenPAYGO Token validation as the device does it: typed digits in, a Decision out.

Reference semantics are `openpaygo` 0.6.3's decoder (counts, windows, used counts), with
these deliberate policies:

* The used counts are seeded with the initial count and the count only moves forward
  (`max`), SYNC included; so each token is accepted at most once. (The library README sets
  `count = updated_count`, which lowers it on an older token and lets a newer one replay.)
* The kind comes from the value first, then the count's parity, as in the C firmware: 999
  is COUNTER_SYNC, 998 DISABLE_PAYG, otherwise an odd count is SET and an even one ADD.
  996 and 997 are reserved and never issued, so they are INVALID without walking the chain.
* Only an ADD token may be older than the device count, once, and within 15 counts; a
  SET, DISABLE or SYNC token closes that window. Every other older match is DUPLICATE
  ("already used"), never INVALID, so the caller's entry block does not count it.
* A SYNC token too moves the count forward only: an older one has nothing left to do, so
  it is DUPLICATE (the library and the C example accept it again down to `count - 64`).
* Count 0 is the starting code itself, never issued: a match there is INVALID. (The C
  example answers "valid, already used" there; `TokenPolicy.count_zero_duplicate`.)
* The `C_EXAMPLE` policy (see `policy`) switches these three choices to the C example's.
* Extended (12-digit) tokens carry 0..999,999 days (divided by the time divider, like
  standard tokens), ADD on even counts and SET on odd ones, with the standard 64-count
  window; 998 and 999 are plain day counts there (no DISABLE or SYNC).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from meter_sim.actions import Action, AddCredit, Decision, SetCredit, Unlock
from meter_sim.errors import ConfigError
from meter_sim.openpaygo.chain import STANDARD, TokenFormat, code_chain
from meter_sim.openpaygo.digits import Typed, parse_digits
from meter_sim.openpaygo.policy import DEFAULT, TokenPolicy, TokenQuirk
from meter_sim.openpaygo.state import OLDER_WINDOW, TokenState
from meter_sim.outcomes import Outcome

DAY = 86_400
MAX_TOKEN_JUMP = 64
MAX_SYNC_JUMP = 100
DISABLE_VALUE = 998
SYNC_VALUE = 999
RESERVED_VALUES = frozenset({996, 997})


class Kind(StrEnum):
    """What an accepted token does."""

    ADD = "ADD"
    SET = "SET"
    DISABLE = "DISABLE"
    SYNC = "SYNC"


@dataclass(frozen=True, slots=True)
class _Rule:
    jump: int
    """How far above the device count a token of this kind may be."""
    takes_older: bool
    """Whether an unused token below the device count is still accepted."""
    closes_window: bool
    """Whether accepting it marks every older count used."""
    action: Callable[[int], Action | None]
    """The effect, given the token's credit in seconds."""


RULES: dict[Kind, _Rule] = {
    Kind.ADD: _Rule(MAX_TOKEN_JUMP, True, False, AddCredit),
    Kind.SET: _Rule(MAX_TOKEN_JUMP, False, True, SetCredit),
    Kind.DISABLE: _Rule(MAX_TOKEN_JUMP, False, True, lambda _: Unlock()),
    Kind.SYNC: _Rule(MAX_SYNC_JUMP, False, True, lambda _: None),
}


def kinds_for(fmt: TokenFormat, value: int) -> tuple[Kind, Kind]:
    """The kind of a token with `value` at an (even, odd) count: value first, then parity."""
    if fmt is STANDARD and value == SYNC_VALUE:
        return Kind.SYNC, Kind.SYNC
    if fmt is STANDARD and value == DISABLE_VALUE:
        return Kind.DISABLE, Kind.DISABLE
    return Kind.ADD, Kind.SET


def process_token(
    digits: str,
    *,
    secret_key: bytes,
    starting_code: int,
    state: TokenState,
    restricted_digits: bool = False,
    time_divider: int = 1,
    policy: TokenPolicy = DEFAULT,
) -> Decision[TokenState]:
    """Validate one typed token against the device's token state.

    Bad keypad input never raises: it is INVALID with a reason. Bad configuration (key,
    starting code, divider, state) is the caller's fault and raises `ConfigError`.
    """
    _check_config(secret_key, starting_code, time_divider, state)
    typed = parse_digits(digits, restricted=restricted_digits)
    if isinstance(typed, str):
        return Decision(Outcome.INVALID, state, reason=typed)
    return _match(typed, secret_key, starting_code, state, time_divider, policy)


def _match(
    typed: Typed,
    key: bytes,
    starting_code: int,
    state: TokenState,
    time_divider: int,
    policy: TokenPolicy,
) -> Decision[TokenState]:
    fmt = typed.fmt
    modulus = fmt.value_modulus
    base = typed.code % modulus
    value = (base - starting_code) % modulus
    if fmt is STANDARD and value in RESERVED_VALUES and not policy.reserved_values_credit:
        return Decision(Outcome.INVALID, state, reason=f"value {value} is reserved")
    kinds = kinds_for(fmt, value)
    last = state.count + max(RULES[k].jump for k in kinds)
    walked = code_chain(fmt, key, starting_code - starting_code % modulus + base, last)
    target = typed.code // modulus
    refused: str | None = None
    count = 0
    while (count := walked.find(target, count + 1, last)) >= 0:
        kind = kinds[count & 1]
        rule = RULES[kind]
        if (
            count > state.count
            or (
                (rule.takes_older or (policy.older_by_parity and count % 2 == 0))
                and state.can_take_older(count)
            )
            or (kind is Kind.SYNC and policy.sync_reentry and count > state.count - rule.jump)
        ):
            if (
                kind is Kind.ADD
                and count > state.count
                and policy.has(TokenQuirk.C_USED_BITMAP_SHIFT)
            ):
                new_state = _c_bitmap_after(state, count)
            else:
                new_state = state.after(count, closes_window=rule.closes_window)
            action = rule.action(value * DAY // time_divider)
            reason = f"{fmt.name} {kind} {value} at count {count}"
            return Decision(Outcome.APPLIED, new_state, action, reason)
        refused = refused or _why_refused(kind, count, state)
    if refused is not None:
        return Decision(Outcome.DUPLICATE, state, reason=refused)
    if walked.high(0) == target:
        if policy.count_zero_duplicate:
            return Decision(Outcome.DUPLICATE, state, reason="count 0: valid, already used")
        return Decision(Outcome.INVALID, state, reason="count 0 is the starting code, no token")
    return Decision(Outcome.INVALID, state, reason=f"no count from 1 to {last} matches")


def _c_bitmap_after(state: TokenState, count: int) -> TokenState:
    """An ADD above the device count as the C example's `MarkCountAsUsed` records it.

    Its bitmap (bit i: count - i - 1 used) is shifted with a loop that starts one bit late
    and a set-bit macro fed an unnormalised bit, so used counts are lost or land elsewhere.
    """
    bits = sum(1 << i for i in range(OLDER_WINDOW) if state.count - i - 1 in state.used)
    shift = count - state.count
    new = 0
    if shift > OLDER_WINDOW:
        shift = OLDER_WINDOW
    else:
        new |= 1 << (shift - 1)
    for i in range(shift + 1, OLDER_WINDOW - shift):
        value = bits & (1 << (i - shift))  # CHECK_BIT: the masked bit, not 0/1
        new = ((new & ~(1 << i)) | (value << i)) & 0xFFFF
    used = frozenset({count} | {count - i - 1 for i in range(OLDER_WINDOW) if new >> i & 1})
    return TokenState(count=count, used=used)


def _why_refused(kind: Kind, count: int, state: TokenState) -> str:
    if count <= state.count - OLDER_WINDOW:
        return f"{kind} token at count {count} is older than the window (device at {state.count})"
    if count == state.count or count in state.used or kind is Kind.ADD:
        return f"{kind} token at count {count} already used"
    return f"older {kind} token at count {count}: only older ADD tokens are accepted"


def _check_config(key: bytes, starting_code: int, time_divider: int, state: TokenState) -> None:
    if not isinstance(key, bytes) or len(key) != 16:
        raise ConfigError("secret_key must be 16 bytes")
    if isinstance(starting_code, bool) or not isinstance(starting_code, int):
        raise ConfigError(f"starting_code must be an integer, got {starting_code!r}")
    if not 0 <= starting_code <= STANDARD.max_code:
        raise ConfigError(f"starting_code must be 0..{STANDARD.max_code}, got {starting_code}")
    if isinstance(time_divider, bool) or not isinstance(time_divider, int):
        raise ConfigError(f"time_divider must be an integer, got {time_divider!r}")
    if not 1 <= time_divider <= 255:
        raise ConfigError(f"time_divider must be 1..255, got {time_divider}")
    if not isinstance(state, TokenState):
        raise ConfigError(f"state must be a TokenState, got {type(state).__name__}")
