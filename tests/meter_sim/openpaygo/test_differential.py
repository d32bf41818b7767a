"""Differential test: the validator against `openpaygo.decode_token` on random sessions.

Both sides see the same device state before each entry. The library's answer becomes the
expected decision through the state fixes of the reference §7: the used counts are seeded
with the initial count and the count only moves forward (`max`). Two documented policies
differ from the library and are translated explicitly: a count-0 match (the starting code
with any value) is INVALID, and an older SYNC token is DUPLICATE. Tokens whose base matches
the chain at two counts of the window (a chance collision of the six high digits) are left
out: the library takes the lowest count, the firmware-exact validator reads 998/999 before
the count's parity and prefers an unused count. Extended values 998/999
are left out: the library gives them a SYNC window and closes the ADD window (issue
python#24), the validator treats them as plain days (tested in test_policies). An invalid
extended token makes the library raise UnboundLocalError (reference §2.7); that is its
INVALID.
"""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st
from openpaygo import TokenType, decode_token
from openpaygo.token_shared import OpenPAYGOTokenShared
from openpaygo.token_shared_extended import OpenPAYGOTokenSharedExtended

from meter_sim.actions import Decision
from meter_sim.openpaygo import Kind, TokenState, process_token
from meter_sim.outcomes import Outcome
from tests.meter_sim.openpaygo.encoder import RAW_VALUE, Device, action_for, encode

KIND = {
    TokenType.ADD_TIME: Kind.ADD,
    TokenType.SET_TIME: Kind.SET,
    TokenType.DISABLE_PAYG: Kind.DISABLE,
    TokenType.COUNTER_SYNC: Kind.SYNC,
}
SKIPS = st.sampled_from([0, 0, 0, 0, 0, 1, 2, 5, 14, 30, 63, 66, 99])
"""How far the server's count moves before a token: mostly in order, sometimes far."""


def expected(
    token: str, device: Device, state: TokenState, divider: int
) -> tuple[Outcome, TokenState, object]:
    """The library's decision on `token`, with the §7 fixes and the two policies applied."""
    try:
        value, token_type, count, used = decode_token(
            token=token,
            secret_key=device.key.hex(),
            count=state.count,
            used_counts=sorted(state.used),
            starting_code=device.starting_code,
            value_divider=divider,
            restricted_digit_set=device.restricted,
        )
    except UnboundLocalError:
        return Outcome.INVALID, state, None
    if token_type == TokenType.INVALID:
        return Outcome.INVALID, state, None
    if count == 0 or (token_type == TokenType.ALREADY_USED and is_count_zero(token, device)):
        return Outcome.INVALID, state, None
    if token_type == TokenType.ALREADY_USED:
        return Outcome.DUPLICATE, state, None
    kind = KIND[token_type]
    if kind is Kind.SYNC and count <= state.count:
        return Outcome.DUPLICATE, state, None
    raw = round(value * divider) if value else 0
    after = TokenState(max(state.count, count), frozenset(c for c in used if c >= 0))
    return Outcome.APPLIED, after, action_for(kind, raw, divider)


def chain_matches(token: str, device: Device, last: int) -> int:
    """How many counts in 0..`last` the token's base matches, walked with the library's chain."""
    extended = len(token) > (15 if device.restricted else 9)
    shared = OpenPAYGOTokenSharedExtended if extended else OpenPAYGOTokenShared
    code = shared.convert_from_4_digit_token(token) if device.restricted else int(token)
    base = shared.get_token_base(code)
    current = shared.put_base_in_token(device.starting_code, base)
    matches = 0
    for _ in range(last + 1):
        matches += shared.put_base_in_token(current, base) == code
        current = shared.generate_next_token(current, device.key)
    return matches


def is_count_zero(token: str, device: Device) -> bool:
    """Whether `token` is the count-0 code: the starting code with other low digits."""
    extended = len(token) > (15 if device.restricted else 9)
    shared = OpenPAYGOTokenSharedExtended if extended else OpenPAYGOTokenShared
    code = shared.convert_from_4_digit_token(token) if device.restricted else int(token)
    modulus = 1_000_000 if extended else 1_000
    return bool(code // modulus == device.starting_code // modulus)


def observed(decision: Decision[TokenState]) -> tuple[Outcome, TokenState, object]:
    return decision.outcome, decision.state, decision.action


@given(st.data())
def test_agrees_with_the_library(data: st.DataObject) -> None:
    device = Device(
        key=data.draw(st.binary(min_size=16, max_size=16), label="key"),
        starting_code=data.draw(st.integers(1, 999_999_999), label="starting code"),
        restricted=data.draw(st.booleans(), label="restricted"),
    )
    divider = data.draw(st.sampled_from([1, 2, 4, 7]), label="divider")
    state = TokenState.initial(data.draw(st.integers(1, 12), label="initial count"))
    server = state.count
    issued: list[str] = []
    for _ in range(data.draw(st.integers(1, 10), label="entries")):
        if issued and data.draw(st.booleans(), label="re-enter"):
            token = data.draw(st.sampled_from(issued), label="again")
        elif data.draw(st.integers(0, 9), label="guess") == 0:
            keys = "1234" if device.restricted else "0123456789"
            size = 15 if device.restricted else 9
            token = data.draw(st.text(keys, min_size=size, max_size=size), label="guessed")
        else:
            extended = data.draw(st.booleans(), label="extended")
            kinds = [Kind.ADD, Kind.SET] if extended else list(Kind)
            kind = data.draw(st.sampled_from(kinds), label="kind")
            top = 999_999 if extended else 995
            value = RAW_VALUE.get(kind)
            if value is None:
                value = data.draw(st.integers(0, top).filter(lambda v: v not in (998, 999)))
            server, token = encode(
                device, kind, value, server + data.draw(SKIPS), extended=extended
            )
            issued.append(token)
        assume(chain_matches(token, device, state.count + 101) <= 1)
        decision = process_token(
            token,
            secret_key=device.key,
            starting_code=device.starting_code,
            state=state,
            restricted_digits=device.restricted,
            time_divider=divider,
        )
        assert observed(decision) == expected(token, device, state, divider), decision.reason
        state = decision.state
