"""Hypothesis strategies for the sync wire contract: operations and uplink/downlink frames.

For your own tests of anything that speaks the contract (a platform, a proxy, a codec): every
value drawn is valid, so ``encode_uplink(frame)`` / ``encode_downlink(frame)`` accept it and
decoding gives it back. Needs hypothesis installed (the test extra: ``pip install
'payg-field-lab[test]'``); nothing else in `agent_client` imports this module.

    operations(seq)     one `Operation` of any kind with sequence number `seq`
    fields_for(kind)    the field values of an operation of `kind`
    uplink_frames()     `UplinkFrame`: a handset's batch, seqs increasing
    keycodes()          `Keycode` downlink entries of every format
    entries             any downlink `Entry` (keycode, payment, stock, plan, unknown kind)
    downlink_frames()   `DownlinkFrame`: acks, rejections (a subset of the done seqs), entries
"""

from __future__ import annotations

try:
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - only without the test extra
    raise ImportError(
        "agent_client.strategies needs hypothesis: pip install 'payg-field-lab[test]'"
    ) from exc

from .protocol.frames import (
    DownlinkFrame,
    Entry,
    Escrow,
    EscrowRevoked,
    Keycode,
    Payment,
    Plan,
    Reason,
    Stock,
    Unknown,
    UplinkFrame,
)
from .protocol.keycodes import LAYOUTS, KeycodeFormat
from .protocol.ops import MAX_TIME, U32, Kind, Operation

__all__ = [
    "downlink_frames",
    "entries",
    "escrows",
    "fields_for",
    "keycodes",
    "names",
    "operations",
    "phones",
    "times",
    "u32",
    "uplink_frames",
]

u32 = st.integers(1, U32)
names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=64)  # utf-8: no surrogates
phones = st.text("+0123456789", min_size=3, max_size=20)
times = st.integers(0, MAX_TIME)


def fields_for(kind: Kind) -> st.SearchStrategy[tuple[object, ...]]:
    """Valid field values for an operation of `kind`, in schema order."""
    if kind is Kind.REGISTER_CUSTOMER:
        return st.tuples(names, phones)
    if kind is Kind.RECORD_SALE:  # online, or offline with the escrowed code's reserved id
        online = (st.integers(1, 10**6), u32, u32, st.integers(0, U32))
        return st.tuples(*online) | st.tuples(*online, st.integers(0, U32))
    return st.tuples(u32, u32)


@st.composite
def operations(draw: st.DrawFn, seq: int) -> Operation:
    """An operation of any kind with sequence number `seq`."""
    kind = draw(st.sampled_from(Kind))
    return Operation.make(seq, kind, draw(times), *draw(fields_for(kind)))


@st.composite
def uplink_frames(draw: st.DrawFn) -> UplinkFrame:
    """A handset's batch: up to 30 operations in increasing seq order."""
    seqs = sorted(draw(st.sets(st.integers(1, 2**40), max_size=30)))
    ops = tuple(draw(operations(seq)) for seq in seqs)
    return UplinkFrame(draw(u32), draw(st.integers(0, 2**40)), ops)


@st.composite
def keycodes(draw: st.DrawFn) -> Keycode:
    """A keycode entry of any format (its number is in range, not a valid code for a meter)."""
    fmt = draw(st.sampled_from(KeycodeFormat))
    number = draw(st.integers(0, LAYOUTS[fmt].limit - 1))
    return Keycode(draw(st.integers(0, 2**40)), draw(u32), fmt, number, draw(times))


@st.composite
def escrows(draw: st.DrawFn) -> Escrow:
    """An escrowed code entry of any format (a number in range, not a valid code)."""
    fmt = draw(st.sampled_from(KeycodeFormat))
    number = draw(st.integers(0, LAYOUTS[fmt].limit - 1))
    return Escrow(draw(u32), draw(st.integers(0, U32)), fmt, number, draw(times))


entries: st.SearchStrategy[Entry] = st.one_of(
    keycodes(),
    st.builds(Payment, u32, st.integers(0, U32), st.text(min_size=1, max_size=40)),
    st.builds(Stock, u32, st.sampled_from(KeycodeFormat), st.booleans()),
    st.builds(Plan, u32, names, u32),
    escrows(),
    st.builds(EscrowRevoked, u32, st.integers(0, U32)),
    st.builds(Unknown, st.integers(6, 127)),
)


@st.composite
def downlink_frames(draw: st.DrawFn) -> DownlinkFrame:
    """A platform's answer: acked and rejected seqs (disjoint), and up to 20 entries."""
    done = sorted(draw(st.sets(st.integers(1, 2**40), max_size=40)))
    rejected_seqs = draw(st.sets(st.sampled_from(done))) if done else set()
    rejected = tuple((seq, draw(st.sampled_from(Reason))) for seq in sorted(rejected_seqs))
    return DownlinkFrame(
        draw(st.integers(0, 2**53)),
        tuple(seq for seq in done if seq not in rejected_seqs),
        rejected,
        draw(st.integers(1, 2**40)),
        tuple(draw(st.lists(entries, max_size=20))),
        draw(st.booleans()),
    )
