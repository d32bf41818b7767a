"""Key-by-key code entry, as the reference firmware's keycode front end does it.

A pure state machine: `step(entry, key, now) -> Step`. The transitions are the table below;
the 16 s idle timeout is checked before each key, and silently drops a partial frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from meter_sim.outcomes import KeyFeedback

ENTRY_TIMEOUT_SECONDS = 16.0
"""Kconfig NEXUS_KEYCODE_PROTOCOL_ENTRY_TIMEOUT_SECONDS default (range 2..255)."""
MAX_FRAME_KEYS = 30


@dataclass(frozen=True, slots=True)
class Keypad:
    """What keys a device has and how a frame is delimited on them."""

    name: str
    keys: str
    """Every key on the device."""
    start: str
    symbols: str
    """Keys that make up the frame's content."""
    end: str | None
    """The key that finishes a frame, or None when a frame finishes at `fixed_length`."""
    fixed_length: int | None = None


NEXUS_FULL = Keypad("nexus-full", keys="0123456789*#", start="*", symbols="0123456789", end="#")
NEXUS_SMALL = Keypad(
    "nexus-small", keys="12345", start="1", symbols="2345", end=None, fixed_length=14
)
OPENPAYGO = Keypad("openpaygo", keys="0123456789*#", start="*", symbols="0123456789", end="#")
OPENPAYGO_RESTRICTED = Keypad(
    "openpaygo-restricted", keys="1234*#", start="*", symbols="1234", end="#"
)


class _Phase(Enum):
    IDLE = "idle"
    ENTERING = "entering"


class _Key(Enum):
    START = "start"
    SYMBOL = "symbol"
    END = "end"
    FOREIGN = "foreign"


class _Do(Enum):
    BEGIN = "begin"
    APPEND = "append"
    FINISH = "finish"
    REJECT = "reject"


_TRANSITIONS: dict[tuple[_Phase, _Key], tuple[_Do, _Phase]] = {
    (_Phase.IDLE, _Key.START): (_Do.BEGIN, _Phase.ENTERING),
    (_Phase.IDLE, _Key.SYMBOL): (_Do.REJECT, _Phase.IDLE),
    (_Phase.IDLE, _Key.END): (_Do.REJECT, _Phase.IDLE),
    (_Phase.IDLE, _Key.FOREIGN): (_Do.REJECT, _Phase.IDLE),
    (_Phase.ENTERING, _Key.START): (_Do.BEGIN, _Phase.ENTERING),
    (_Phase.ENTERING, _Key.SYMBOL): (_Do.APPEND, _Phase.ENTERING),
    (_Phase.ENTERING, _Key.END): (_Do.FINISH, _Phase.IDLE),
    (_Phase.ENTERING, _Key.FOREIGN): (_Do.REJECT, _Phase.ENTERING),
}


@dataclass(frozen=True, slots=True)
class Entry:
    """A partial frame being typed (`frame is None` when idle)."""

    frame: str | None = None
    last_at: float = 0.0

    @property
    def phase(self) -> _Phase:
        return _Phase.IDLE if self.frame is None else _Phase.ENTERING


IDLE = Entry()
"""No partial frame (entries are immutable, so one instance serves every meter)."""


@dataclass(frozen=True, slots=True)
class Step:
    entry: Entry
    feedback: KeyFeedback | None
    """Key feedback, or None when this key finished a frame (message feedback follows)."""
    finished: str | None = None
    """The finished frame's content keys (without start/end), when this key finished one."""


def _classify(pad: Keypad, key: str) -> _Key:
    if len(key) != 1 or key not in pad.keys:
        return _Key.FOREIGN
    if key == pad.start:
        return _Key.START
    if key == pad.end:
        return _Key.END
    return _Key.SYMBOL if key in pad.symbols else _Key.FOREIGN


def frame_of(pad: Keypad, keys: str) -> str:
    """The frame that pressing `keys` at one instant finishes, for keys that make one code.

    `keys` must be a start key, content symbols, then the end key (or exactly `fixed_length`
    symbols): what `Meter` checks before whole-code entry. Equal to stepping them one by one
    (no key can time out at one instant), without the per-key work.
    """
    if pad.fixed_length is not None:
        return keys[1 : 1 + pad.fixed_length]
    return keys[1:-1][: MAX_FRAME_KEYS + 1]


def expire(entry: Entry, now: float, timeout: float = ENTRY_TIMEOUT_SECONDS) -> Entry:
    """Drop a partial frame whose last key is older than the idle timeout."""
    if entry.frame is not None and now - entry.last_at > timeout:
        return Entry()
    return entry


def step(
    pad: Keypad, entry: Entry, key: str, now: float, timeout: float = ENTRY_TIMEOUT_SECONDS
) -> Step:
    """Advance entry by one key press at device time `now`."""
    entry = expire(entry, now, timeout)
    action, phase = _TRANSITIONS[(entry.phase, _classify(pad, key))]
    if action is _Do.REJECT:
        return Step(entry, KeyFeedback.REJECTED)
    if action is _Do.BEGIN:
        return Step(Entry(frame="", last_at=now), KeyFeedback.ACCEPTED)
    assert entry.frame is not None
    if action is _Do.FINISH:
        return Step(Entry(), None, finished=entry.frame)
    # APPEND: keep at most one key past the limit, so an overlong frame stays overlong.
    frame = (entry.frame + key)[: MAX_FRAME_KEYS + 1]
    if pad.fixed_length is not None and len(frame) == pad.fixed_length:
        return Step(Entry(), None, finished=frame)
    assert phase is _Phase.ENTERING
    return Step(Entry(frame=frame, last_at=now), KeyFeedback.ACCEPTED)
