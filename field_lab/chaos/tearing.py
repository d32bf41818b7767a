"""Power cuts at every byte of every save, for Nexus full, Nexus small and OpenPAYGO meters.

A session types a list of codes into a meter, one per hour; each code (and the first boot)
makes the meter save its state. Every save is repeated once per byte it writes, on a medium
that takes the first N bytes and then loses power (N = 0 .. length - 1), and the meter is
booted again from what is left. The length is measured through the meter's storage seam, not
read from the image format, so the check holds for any layout the firmware uses.

The reboot is judged by what the meter does, not by its bytes: its credit, which of the
session's codes it would still apply (on a copy with the entry limits off, one code per copy),
and the state it would persist next must all be those from before the save or after it.
Named violations: credit from nowhere (more than either), a code reused (one applies that
neither state would apply: a consumed-code record was lost), and any other state.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from nexus_keycode.protocols.full import FullMessage, FullMessageWipeFlags
from nexus_keycode.protocols.small import (
    AddCreditSmallMessage,
    SetCreditSmallMessage,
    UnlockSmallMessage,
)
from openpaygo import TokenType, generate_token

from meter_sim.meter import Meter
from meter_sim.nv import Snapshot
from meter_sim.outcomes import Outcome
from meter_sim.storage import MemoryStorage, Storage

KEY = bytes.fromhex("6a1e03f2b8c94d57a0e2c4f61b3d9e85")
OPAYGO_KEY = bytes.fromhex("a29ab82edc5fbbc41ec9530f6dac86b1")
OPAYGO_START = 123456789
SPACING_S = 3600.0
"""Device time between codes: every entry limit has refilled by the next one."""


class PowerLost(Exception):
    """Raised by a medium mid-write: the meter stops where firmware would lose power."""

    def __init__(self, medium: TornMedium) -> None:
        super().__init__(f"power lost after {medium.written} bytes")
        self.medium = medium


class TornMedium:
    """A medium that loses power once `budget` bytes have been written (None: never).
    The bytes before the cut land; the rest of that write and every later one do not."""

    def __init__(self, initial: bytes = b"", budget: int | None = None) -> None:
        self._medium = MemoryStorage(initial)
        self.budget = budget
        self.written = 0

    def read(self) -> bytes:
        return self._medium.read()

    def write(self, offset: int, data: bytes) -> None:
        room = len(data) if self.budget is None else self.budget - self.written
        if room < len(data):
            self._medium.write(offset, data[: max(0, room)])
            self.written += max(0, room)
            raise PowerLost(self)
        self._medium.write(offset, data)
        self.written += len(data)


class InPlace:
    """A broken medium driver (the fault the checker must catch): every write lands at the
    start of the medium, over the image it was meant to leave intact until it is complete."""

    def __init__(self, medium: Storage) -> None:
        self._medium = medium

    def read(self) -> bytes:
        return self._medium.read()

    def write(self, offset: int, data: bytes) -> None:
        self._medium.write(0, data)


Boot = Callable[[Storage, float], Meter]
Driver = Callable[[Storage], Storage]


@dataclass(frozen=True)
class Device:
    protocol: str
    boot: Boot
    """The meter as deployed, booting from a medium at a device time."""
    unlimited: Boot
    """The same meter with its entry limits off: asks whether a code would apply."""
    codes: tuple[str, ...]
    """The session, one save per code. An invalid OpenPAYGO token saves its entry block; a
    Nexus meter keeps its rate limit bucket in RAM, so an invalid code saves nothing there."""


def _full(id_: int, hours: int | None = None, *, kind: str = "add") -> str:
    if kind == "add":
        message = FullMessage.add_credit(id_=id_, hours=hours, secret_key=KEY)
    elif kind == "set":
        message = FullMessage.set_credit(id_=id_, hours=hours, secret_key=KEY)
    elif kind == "unlock":
        message = FullMessage.unlock(id_=id_, secret_key=KEY)
    else:
        flags = FullMessageWipeFlags.WIPE_IDS_ALL
        message = FullMessage.wipe_state(id_=id_, flags=flags, secret_key=KEY)
    return str(message.to_keycode())


def _opaygo(count: int, value: int | None, kind: TokenType) -> tuple[int, str]:
    following, token = generate_token(
        secret_key=OPAYGO_KEY.hex(),
        count=count,
        value=value,
        token_type=kind,
        starting_code=OPAYGO_START,
    )
    return int(following), str(token)


def _opaygo_session() -> tuple[str, ...]:
    """Adds in order, one entered after the token that followed it, a set, then disable."""
    count, first = _opaygo(1, 1, TokenType.ADD_TIME)
    count, second = _opaygo(count, 2, TokenType.ADD_TIME)
    count, skipped = _opaygo(count, 3, TokenType.ADD_TIME)
    count, later = _opaygo(count, 1, TokenType.ADD_TIME)
    count, set_time = _opaygo(count, 5, TokenType.SET_TIME)
    _, disable = _opaygo(count, None, TokenType.DISABLE_PAYG)
    return (first, second, "*000000001#", later, skipped, set_time, disable)


def devices() -> dict[str, Device]:
    """The three protocols, each with a session that exercises what its image records."""
    return {
        "nexus_full": Device(
            "nexus_full",
            lambda m, now: Meter.nexus(KEY, "full", storage=m, now=now),
            lambda m, now: Meter.nexus(KEY, "full", rate_limit=None, storage=m, now=now),
            (
                _full(1, 24),
                _full(3, 5),
                _full(2, 12),
                _full(4, 48, kind="set"),
                _full(6, kind="unlock"),
                _full(7, kind="wipe"),
                _full(1, 2),
            ),
        ),
        "nexus_small": Device(
            "nexus_small",
            lambda m, now: Meter.nexus(KEY, "small", storage=m, now=now),
            lambda m, now: Meter.nexus(KEY, "small", rate_limit=None, storage=m, now=now),
            (
                str(AddCreditSmallMessage(id_=1, days=3, secret_key=KEY).to_keycode()),
                str(AddCreditSmallMessage(id_=3, days=1, secret_key=KEY).to_keycode()),
                str(AddCreditSmallMessage(id_=2, days=2, secret_key=KEY).to_keycode()),
                str(SetCreditSmallMessage(id_=4, days=7, secret_key=KEY).to_keycode()),
                str(UnlockSmallMessage(id_=5, secret_key=KEY).to_keycode()),
            ),
        ),
        "openpaygo": Device(
            "openpaygo",
            lambda m, now: Meter.openpaygo(OPAYGO_KEY, OPAYGO_START, storage=m, now=now),
            lambda m, now: Meter.openpaygo(
                OPAYGO_KEY, OPAYGO_START, blocking=None, storage=m, now=now
            ),
            _opaygo_session(),
        ),
    }


@dataclass(frozen=True)
class State:
    """What a meter booted from an image does at a given time."""

    credit: float
    accepts: frozenset[int]
    """Indexes of the session's codes that would apply, each typed into a fresh copy."""
    persists: Snapshot
    """What it would save next, clock aside (the clock is the time of the write)."""


def behaviour(device: Device, image: bytes, now: float) -> State:
    meter = device.boot(MemoryStorage(image), now)
    accepts = frozenset(
        i
        for i, code in enumerate(device.codes)
        if device.unlimited(MemoryStorage(image), now).enter_keycode(code, now).outcome
        is Outcome.APPLIED
    )
    persists = replace(meter.snapshot(now), clock=0.0)
    return State(meter.credit_remaining(now), accepts, persists)


@dataclass
class Tearing:
    protocol: str
    saves: int = 0
    bytes_saved: int = 0
    cuts: int = 0
    old_state: int = 0
    new_state: int = 0
    credit_from_nowhere: int = 0
    code_reused: int = 0
    other_state: int = 0
    examples: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def violations(self) -> int:
        return self.cuts - self.old_state - self.new_state

    def judge(self, where: str, before: State, after: State, survivor: State) -> None:
        self.cuts += 1
        if survivor == before:
            self.old_state += 1
            return
        if survivor == after:
            self.new_state += 1
            return
        if survivor.credit > max(before.credit, after.credit):
            self.credit_from_nowhere += 1
        elif survivor.accepts - before.accepts - after.accepts:
            self.code_reused += 1
        else:
            self.other_state += 1
        if len(self.examples) < 5:
            reused = sorted(survivor.accepts - before.accepts - after.accepts)
            self.examples.append(
                f"{where}: credit {survivor.credit:g} (old {before.credit:g},"
                f" new {after.credit:g}), codes applicable again {reused}"
            )

    def summary(self) -> dict[str, object]:
        return {
            "protocol": self.protocol,
            "saves": self.saves,
            "bytes_saved": self.bytes_saved,
            "cuts": self.cuts,
            "old_state": self.old_state,
            "new_state": self.new_state,
            "violations": self.violations,
            "credit_from_nowhere": self.credit_from_nowhere,
            "code_reused": self.code_reused,
            "other_state": self.other_state,
            "examples": self.examples,
            "seconds": round(self.seconds, 2),
        }


class _Session:
    """One powered meter going through the session; each save is made on a copy of the
    meter (its RAM and its medium), which may lose power part way."""

    def __init__(self, device: Device, driver: Driver) -> None:
        self.device, self.driver = device, driver
        self.medium = TornMedium()
        self.meter: Meter | None = None

    def save(self, index: int, now: float, budget: int | None = None) -> tuple[Meter, TornMedium]:
        """Save `index` from the current state: 0 is the first boot, i > 0 typing code
        i - 1. With a `budget` the medium loses power after that many bytes (PowerLost)."""
        if self.meter is None:  # the first boot writes the factory image
            medium = TornMedium(b"", budget)
            return self.device.boot(self.driver(medium), now), medium
        meter, medium = copy.deepcopy((self.meter, self.medium))
        medium.budget = None if budget is None else medium.written + budget
        meter.enter_keycode(self.device.codes[index - 1], now)
        return meter, medium


def tear(device: Device, *, driver: Driver = lambda m: m, stride: int = 1) -> Tearing:
    """Cut power at every `stride`-th byte of every save of the session and judge each
    reboot. `driver` stands between the meter and the medium: the seam for a broken one."""
    began = time.monotonic()
    out = Tearing(device.protocol)
    session, now = _Session(device, driver), 0.0
    for index in range(len(device.codes) + 1):
        before = behaviour(device, session.medium.read(), now)
        meter, whole = session.save(index, now)
        after = behaviour(device, whole.read(), now)
        length = whole.written - session.medium.written
        if length:
            out.saves += 1
            out.bytes_saved += length
        for budget in range(0, length, stride):
            try:
                session.save(index, now, budget)
            except PowerLost as cut:
                torn = cut.medium
            else:
                raise AssertionError(f"save {index} wrote all of itself within {budget} bytes")
            where = f"save {index}, cut after byte {budget}"
            out.judge(where, before, after, behaviour(device, torn.read(), now))
        session.meter, session.medium = meter, whole
        now += SPACING_S
    out.seconds = time.monotonic() - began
    return out


def tear_all(stride: int = 1, names: Sequence[str] | None = None) -> list[Tearing]:
    found = devices()
    return [tear(found[name], stride=stride) for name in (names or list(found))]


def main(argv: list[str] | None = None) -> int:
    """``python -m field_lab.chaos.tearing``: power cuts at every byte of every save for each
    protocol; prints one JSON line per protocol. Exit 0 when every reboot came back with the
    old or the new state, 1 otherwise."""
    p = argparse.ArgumentParser(prog="python -m field_lab.chaos.tearing", description=main.__doc__)
    p.add_argument("--stride", type=int, default=1, help="cut at every n-th byte (default 1)")
    p.add_argument("--protocol", choices=sorted(devices()), action="append")
    a = p.parse_args(argv)
    if a.stride < 1:
        p.error("--stride must be >= 1")
    results = tear_all(a.stride, a.protocol)
    for result in results:
        print(json.dumps(result.summary()), flush=True)
    return 0 if all(r.violations == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
