"""The Meter: keypad, validator, credit and NV storage put together as one device.

Every method takes `now`, the device clock in seconds; the caller owns the clock (virtual time
in the lab, wall time at a bench). Mutating calls require `now` never to go backwards.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from meter_sim.credit import Credit
from meter_sim.engines import Engine, NexusEngine, OpenPaygoEngine
from meter_sim.errors import ClockError, ConfigError
from meter_sim.frozen import maker
from meter_sim.keypad import ENTRY_TIMEOUT_SECONDS, IDLE, Keypad, expire, frame_of, step
from meter_sim.nexus.policy import NexusPolicy, Quirk
from meter_sim.nexus.state import NexusState
from meter_sim.nv import Loaded, NVStatus, NVStore, Snapshot
from meter_sim.openpaygo.policy import C_EXAMPLE_BLOCKING, PRESETS, TokenPolicy, TokenQuirk
from meter_sim.openpaygo.state import TokenState
from meter_sim.outcomes import KeyFeedback, Outcome, PaygState
from meter_sim.ratelimit import EntryBlock, NexusBucket, NexusRateLimit, OpenPaygoBlocking
from meter_sim.storage import MemoryStorage, Storage

_REFERENCE_LIMIT = NexusRateLimit()
_NUMBER = (int, float)
_SEPARATOR_BYTES = b" \t\r\n-"
"""What whole-code text may hold between keys (`enter_keycode` drops it)."""
_SEPARATORS = str.maketrans("", "", _SEPARATOR_BYTES.decode())
MAX_OPENPAYGO_COUNT = 1_000_000
"""Validating a token walks count+65 hashes; beyond a million that takes tens of seconds."""
_REFERENCE_BLOCKING = OpenPaygoBlocking()
_DISPLAY_ID = Outcome.DISPLAY_ID
"""Read once (an enum attribute costs ~900 instructions on 3.11: `credit._UNLOCKED`)."""


@dataclass(frozen=True, slots=True)
class Result:
    """The device's answer to a finished code, with the state it left behind."""

    outcome: Outcome
    reason: str
    credit_remaining: float
    """Seconds of credit after the code (`math.inf` while unlocked)."""
    state: PaygState
    payg_id: str | None = None
    """Set for `display_id`: what the device shows."""


@dataclass(frozen=True, slots=True)
class KeyResult:
    """Feedback for one key; `result` is set when the key finished a code."""

    feedback: KeyFeedback
    result: Result | None = None


_make_result = maker(Result)


def _check_key(secret_key: bytes) -> bytes:
    if not isinstance(secret_key, bytes | bytearray) or len(secret_key) != 16:
        raise ConfigError("secret_key must be 16 bytes")
    return bytes(secret_key)


class Meter:
    """A simulated PAYG meter. Build one with `Meter.nexus(...)` or `Meter.openpaygo(...)`."""

    def __init__(
        self,
        engine: Engine,
        *,
        storage: Storage | None,
        now: float,
        entry_timeout_seconds: float = ENTRY_TIMEOUT_SECONDS,
    ) -> None:
        if isinstance(entry_timeout_seconds, bool) or not isinstance(
            entry_timeout_seconds, int | float
        ):
            raise ConfigError(
                f"entry_timeout_seconds must be a number, got {entry_timeout_seconds!r}"
            )
        if not 2 <= entry_timeout_seconds <= 255:
            raise ConfigError(f"entry_timeout_seconds must be 2..255, got {entry_timeout_seconds}")
        self.entry_timeout_seconds = float(entry_timeout_seconds)
        self._engine = engine
        self._whole_code = isinstance(engine, NexusEngine) and not engine.policy.strict
        """Whole codes are framed as nexus-embedded frames them (Nexus, unless strict)."""
        self._pad = engine.keypad
        """The engine's keypad, read on every code (the engine's property builds nothing, but
        a property call costs more than the attribute)."""
        self._keyset = frozenset(engine.keypad.keys)
        self._wraps = engine.keypad.end is not None and engine.keypad.name.startswith("openpaygo")
        """OpenPAYGO tokens may be typed without their start and end keys."""
        # Whether the engine can refuse a code (a Nexus rate limit, an OpenPAYGO entry block).
        if isinstance(engine, NexusEngine):
            self._guarded = engine.limit is not None
        else:
            self._guarded = engine.blocking is not None
        medium = storage if storage is not None else MemoryStorage()
        self._store = NVStore(medium, engine.kind, engine.fingerprint)
        self._credit = Credit(until=now)
        self._clock = now
        self._entry = IDLE
        self.nv_status = NVStatus.FRESH
        self.nv_problems: tuple[str, ...] = ()
        self._boot(now, first=True)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def nexus(
        cls,
        secret_key: bytes,
        protocol: str = "full",
        *,
        payg_id: str = "",
        rate_limit: NexusRateLimit | None = _REFERENCE_LIMIT,
        strict: bool = False,
        allow_demo: bool | None = None,
        allow_nomac_id: bool | None = None,
        qc_short_lifetime_max: int = 5,
        qc_long_lifetime_max: int = 5,
        entry_timeout_seconds: float = ENTRY_TIMEOUT_SECONDS,
        quirks: Iterable[Quirk | str] = (),
        storage: Storage | None = None,
        now: float = 0.0,
    ) -> Meter:
        """A Nexus meter (`protocol` "full": keys 0-9*#, or "small": keys 1-5).

        By default it answers every code as nexus-embedded v2.0.1 does with its default
        configuration; `strict=True` refuses what the backend never emits (docs/meter.md has
        the table). `allow_demo`, `allow_nomac_id` (None: on unless strict), the QC lifetimes,
        the entry timeout and `rate_limit` are the firmware's Kconfig knobs by name; `quirks`
        reproduces named firmware bugs (`Quirk`). `rate_limit=None` turns the keycode rate
        limit off (for bench work only). With `storage` holding a saved image, it boots from it.
        """
        if protocol not in ("full", "small"):
            raise ConfigError(f'protocol must be "full" or "small", got {protocol!r}')
        if isinstance(quirks, str):
            quirks = (quirks,)
        policy = NexusPolicy(
            strict=bool(strict),
            allow_demo=allow_demo,
            allow_nomac_id=allow_nomac_id,
            qc_short_lifetime_max=qc_short_lifetime_max,
            qc_long_lifetime_max=qc_long_lifetime_max,
            quirks=frozenset(quirks),  # type: ignore[arg-type]  # validated by NexusPolicy
        )
        engine = NexusEngine(
            secret_key=_check_key(secret_key),
            small=protocol == "small",
            limit=rate_limit,
            payg_id=str(payg_id),
            policy=policy,
            state=NexusState(),
            bucket=NexusBucket.first_power_up(rate_limit or _REFERENCE_LIMIT, now),
        )
        return cls(engine, storage=storage, now=now, entry_timeout_seconds=entry_timeout_seconds)

    @classmethod
    def openpaygo(
        cls,
        secret_key: bytes,
        starting_code: int,
        *,
        count: int = 1,
        restricted_digits: bool = False,
        time_divider: int = 1,
        blocking: OpenPaygoBlocking | None = _REFERENCE_BLOCKING,
        preset: str = "default",
        quirks: Iterable[TokenQuirk | str] = (),
        storage: Storage | None = None,
        now: float = 0.0,
    ) -> Meter:
        """An OpenPAYGO Token meter provisioned with `starting_code` and initial `count`.

        `preset="c-example"` answers as OpenPAYGO-HW's C decoder and example device logic do
        (SYNC re-entry, count 0, values 996/997, and its entry block unless `blocking` is
        given); `quirks` reproduces its named bugs (`TokenQuirk`). `blocking=None` turns the
        invalid-token entry block off (for bench work only).
        """
        if preset not in PRESETS:
            raise ConfigError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
        if isinstance(quirks, str):
            quirks = (quirks,)
        policy = replace(PRESETS[preset], quirks=frozenset(quirks))  # type: ignore[arg-type]
        if preset == "c-example" and blocking is _REFERENCE_BLOCKING:
            blocking = C_EXAMPLE_BLOCKING
        if not isinstance(starting_code, int) or not 0 <= starting_code <= 999_999_999:
            raise ConfigError(f"starting_code must be 0..999999999, got {starting_code!r}")
        if not isinstance(count, int) or not 1 <= count <= MAX_OPENPAYGO_COUNT:
            raise ConfigError(f"count must be 1..{MAX_OPENPAYGO_COUNT}, got {count!r}")
        if not isinstance(time_divider, int) or not 1 <= time_divider <= 255:
            raise ConfigError(f"time_divider must be 1..255, got {time_divider!r}")
        engine = OpenPaygoEngine(
            secret_key=_check_key(secret_key),
            starting_code=starting_code,
            restricted_digits=bool(restricted_digits),
            time_divider=time_divider,
            initial_count=count,
            blocking=blocking,
            policy=policy,
            state=TokenState.initial(count),
            block=EntryBlock(),
        )
        return cls(engine, storage=storage, now=now)

    # -- queries --------------------------------------------------------------------------

    @property
    def protocol(self) -> str:
        """`nexus-full`, `nexus-small`, `openpaygo` or `openpaygo-restricted`."""
        return self._engine.keypad.name

    @property
    def keypad(self) -> Keypad:
        return self._engine.keypad

    @property
    def policy(self) -> NexusPolicy | TokenPolicy:
        """The validator's policy: `NexusPolicy` (strict, demo, QC lifetimes, quirks) or
        `TokenPolicy` (default or the C example's choices, quirks)."""
        return self._engine.policy

    @property
    def restricted(self) -> bool:
        """The product's restricted flag (Nexus custom flag bit 0)."""
        return isinstance(self._engine, NexusEngine) and self._engine.state.restricted

    def credit_remaining(self, now: float) -> float:
        """Seconds of credit left at `now`; `math.inf` while unlocked."""
        return self._credit.remaining(now)

    def state(self, now: float) -> str:
        """`"disabled"`, `"enabled"` or `"unlocked"` at `now`."""
        return self._credit.state(now).value

    def output_on(self, now: float) -> bool:
        return self._credit.state(now) is not PaygState.DISABLED

    def is_rate_limited(self, now: float) -> bool:
        return self._engine.refusal(now) is not None

    def snapshot(self, now: float) -> Snapshot:
        """What non-volatile storage holds for this meter at `now`."""
        return self._snapshot(now)

    # -- input ----------------------------------------------------------------------------

    def enter_keycode(self, text: str, now: float) -> Result:
        """Enter a whole code at once; spaces and other separators are ignored."""
        if now.__class__ is float and now >= self._clock:  # _tick's checks, for the usual clock
            self._clock = now
        else:
            self._tick(now)
        if self._guarded:
            refusal = self._engine.refusal(now)
            if refusal is not None:
                return self._result(Outcome.RATE_LIMITED, refusal, now)
        pad = self._pad
        if self._whole_code and text[:1] == pad.start and self._keyset.issuperset(text):
            # A Nexus code as issued (no separators): what `_frame_keys` would pass unchanged.
            self._entry = IDLE
            if pad.fixed_length is not None:
                return self._finish(text[1 : 1 + pad.fixed_length], now)
            return self._finish(text[1:-1], now)
        keys, problem = self._frame_keys(text)
        if problem is not None:
            return self._result(Outcome.INVALID, problem, now)
        if self._whole_code:
            # nexus-embedded's whole-code entry: small reads at most 14 symbols after the
            # start key, full drops the last key without checking it is `#`; either way what
            # it got is evaluated, so a malformed code costs a rate-limit attempt too.
            self._entry = IDLE
            if pad.fixed_length is not None:
                return self._finish(keys[1 : 1 + pad.fixed_length], now)
            return self._finish(keys[1:-1], now)
        # A framed code typed at one instant: what stepping its keys one by one finishes.
        self._entry = IDLE
        return self._finish(frame_of(pad, keys), now)

    def press_key(self, key: str, now: float) -> KeyResult:
        """Press one key; while rate limited every key is rejected."""
        self._tick(now)
        if self._engine.refusal(now) is not None:
            self._entry = IDLE
            return KeyResult(KeyFeedback.REJECTED)
        done = step(self._engine.keypad, self._entry, key, now, self.entry_timeout_seconds)
        self._entry = done.entry
        if done.finished is None:
            assert done.feedback is not None
            return KeyResult(done.feedback)
        return KeyResult(KeyFeedback.ACCEPTED, self._finish(done.finished, now))

    def advance(self, now: float) -> None:
        """Move the device clock on without input (credit runs down, entry may time out)."""
        self._tick(now)
        self._entry = expire(self._entry, now, self.entry_timeout_seconds)
        self._save(now)

    def set_restricted(self, flag: bool, now: float) -> None:
        """The product sets its restricted flag; Nexus keycodes can clear it."""
        self._tick(now)
        if not isinstance(self._engine, NexusEngine):
            raise ConfigError("only Nexus meters carry the restricted flag")
        self._engine.state = replace(self._engine.state, restricted=bool(flag))
        self._save(now)

    def factory_reset(self, now: float) -> None:
        """Return to factory state at device time `now`, which may be earlier than the clock:
        a bench's RESET, so one meter serves many isolated tests. The stored image is
        overwritten with the factory one."""
        if not isinstance(now, int | float) or not math.isfinite(now) or now < 0:
            raise ClockError(f"now must be a non-negative number of seconds, got {now!r}")
        self._clock = float(now)
        self._entry = IDLE
        self._factory_reset(now)
        self.nv_status, self.nv_problems = NVStatus.FRESH, ()
        self._save(now)

    def power_cycle(self, now: float) -> None:
        """Lose power and boot again from storage at device time `now`."""
        self._tick(now)
        self._entry = IDLE
        self._boot(now, first=False)

    # -- internals ------------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        if not isinstance(now, _NUMBER) or now != now:  # a tuple: `int | float` is built per call
            raise ClockError(f"now must be a number of seconds, got {now!r}")
        if now < self._clock:
            raise ClockError(f"device clock went backwards: {now} after {self._clock}")
        self._clock = float(now)

    def _boot(self, now: float, *, first: bool) -> None:
        loaded: Loaded = self._store.load()
        self.nv_status, self.nv_problems = loaded.status, loaded.problems
        if loaded.snapshot is None:
            if first or loaded.status is NVStatus.CORRUPT:
                self._factory_reset(now)
            self._save(now)
            return
        snap = loaded.snapshot
        self._credit = snap.credit
        self._clock = max(self._clock, snap.clock)
        self._engine.restore(snap, now)

    def _factory_reset(self, now: float) -> None:
        self._credit = Credit(until=now)
        engine = self._engine
        if isinstance(engine, NexusEngine):
            engine.state = NexusState()
            engine.bucket = NexusBucket.first_power_up(engine.limit or _REFERENCE_LIMIT, now)
        else:
            engine.state = TokenState.initial(engine.initial_count)
            engine.block = EntryBlock()

    def _snapshot(self, now: float) -> Snapshot:
        return self._engine.persist(self._credit, now)

    def _save(self, now: float) -> None:
        self._store.save_state(self._engine.nv_state(self._credit, now), now)

    def _frame_keys(self, text: str) -> tuple[str, str | None]:
        """Normalise whole-code text to the keys to press, or say why it is not a code."""
        if text.isascii():  # bytes.translate is several times faster than str.translate
            keys = text.encode().translate(None, _SEPARATOR_BYTES).decode()
        else:
            keys = text.translate(_SEPARATORS)
        pad = self._pad
        if not keys:
            return "", "empty keycode"
        if not self._keyset.issuperset(keys):
            bad = sorted({ch for ch in keys if ch not in pad.keys})
            shown = "".join(bad)[:8].encode("unicode_escape").decode()
            return "", f"keys {shown!r} are not on this keypad ({pad.keys})"
        if self._wraps and keys[0] != pad.start and pad.end is not None:
            keys = pad.start + keys + ("" if keys.endswith(pad.end) else pad.end)
        if keys[0] != pad.start:
            return "", f"a keycode starts with {pad.start!r}"
        if self._whole_code:
            return keys, None
        body = keys[1:]
        if pad.end is None:
            assert pad.fixed_length is not None
            if len(body) != pad.fixed_length or pad.start in body:
                return (
                    "",
                    f"a keycode is {pad.start!r} and {pad.fixed_length} keys from {pad.symbols}",
                )
            return keys, None
        if not body.endswith(pad.end):
            return "", f"a keycode ends with {pad.end!r}"
        inner = body[:-1]
        if pad.start in inner or pad.end in inner:
            return "", f"a keycode has one {pad.start!r} and one {pad.end!r}"
        return keys, None

    def _finish(self, frame: str, now: float) -> Result:
        credit, engine = self._credit, self._engine
        decision = engine.evaluate(frame, credit.state(now), now)
        outcome = decision.outcome
        if decision.action is not None:
            self._credit = credit = credit.apply(decision.action, now)
        self._store.save_state(engine.nv_state(credit, now), now)  # _save, inline
        payg_id = None
        if outcome is _DISPLAY_ID and isinstance(engine, NexusEngine):
            payg_id = engine.payg_id
        left, payg = credit.reading(now)  # _result, inline
        return _make_result(outcome, decision.reason, left, payg, payg_id)

    def _result(
        self, outcome: Outcome, reason: str, now: float, payg_id: str | None = None
    ) -> Result:
        left, payg = self._credit.reading(now)
        return _make_result(outcome, reason, left, payg, payg_id)
