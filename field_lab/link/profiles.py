"""Link profiles: built-in ones from DESIGN.md plus custom ones from TOML.

A profile is a frozen value in SI units (seconds, bits per second). TOML files use the units the
design table uses (ms, kbit/s) and may start from a built-in with `base = "gprs-typ"`:

    [profile.village-gprs]
    base = "gprs-typ"
    rtt_ms = 950
    down_kbps = 32
    loss = 0.02          # mean share of attempts lost ...
    loss_burst = 3.0     # ... in bursts of this many packets on average

Every key is checked: unknown keys, wrong types and out-of-range values raise ProfileError naming
the file and key.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from field_lab.link.config import load_toml, number, read_text
from field_lab.link.errors import ProfileError
from field_lab.link.loss import GilbertElliott
from field_lab.link.outages import OnOff
from field_lab.link.trace import Trace, load_trace

IP_TCP_HEADER_BYTES = 52  # IPv4 20 + TCP 20 + timestamps 12, as in the reference's §D


@dataclass(frozen=True, slots=True)
class Profile:
    """One radio link's behaviour. Rates of 0 mean no connectivity; math.inf means no limit."""

    name: str
    rtt_s: float
    down_bps: float
    up_bps: float
    jitter_s: float = 0.0
    loss: GilbertElliott | None = None
    retransmit_s: float = 0.0
    wakeup_s: float = 0.0
    idle_s: float = 5.0
    queue_bytes: int = 64_000
    mtu: int = 1500
    header_bytes: int = IP_TCP_HEADER_BYTES
    outages: OnOff | None = None
    reset_after_s: float = 30.0
    up_trace: Trace | None = None
    down_trace: Trace | None = None

    def __post_init__(self) -> None:
        def need(ok: bool, key: str, problem: str) -> None:
            if not ok:
                raise ProfileError(f"profile {self.name!r}: {key}", problem)

        need(bool(self.name), "name", "must not be empty")
        for key in ("rtt_s", "jitter_s", "retransmit_s", "wakeup_s", "idle_s", "reset_after_s"):
            value = getattr(self, key)
            need(math.isfinite(value) and value >= 0.0, key, f"must be finite and >= 0: {value}")
        for key in ("down_bps", "up_bps"):
            value = getattr(self, key)
            need(not math.isnan(value) and value >= 0.0, key, f"must be >= 0 (or inf): {value}")
        need(self.jitter_s <= self.rtt_s, "jitter_s", "must not exceed rtt_s")
        need(self.reset_after_s > 0.0, "reset_after_s", "must be > 0")
        need(self.queue_bytes >= self.mtu, "queue_bytes", "must hold at least one MTU")
        need(68 <= self.mtu <= 65_535, "mtu", f"must be within [68, 65535]: {self.mtu}")
        need(
            0 <= self.header_bytes < self.mtu,
            "header_bytes",
            f"must be within [0, mtu): {self.header_bytes}",
        )

    @property
    def mss(self) -> int:
        """Payload bytes per packet."""
        return self.mtu - self.header_bytes

    @property
    def offline(self) -> bool:
        """No connectivity at all: either direction has no capacity."""
        return self.rate_bps("up") == 0.0 or self.rate_bps("down") == 0.0

    def packet_sizes(self, nbytes: int) -> list[int]:
        """Payload sizes of the packets one write of `nbytes` becomes (0: one header-only)."""
        mss = self.mss
        full, rest = divmod(nbytes, mss)
        return [mss] * full + ([rest] if rest or not nbytes else [])

    def rate_bps(self, direction: str) -> float:
        """Mean capacity of a direction ("up" or "down"), from its trace when it has one."""
        trace = self.up_trace if direction == "up" else self.down_trace
        if trace is not None:
            return trace.mean_rate_bps
        return self.up_bps if direction == "up" else self.down_bps

    def trace(self, direction: str) -> Trace | None:
        return self.up_trace if direction == "up" else self.down_trace

    def replace(self, **changes: Any) -> Profile:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _ge(loss: float, burst: float) -> GilbertElliott:
    return GilbertElliott.from_mean(loss, burst)


# Anchored to DESIGN.md's table and the reference's §C/§D: retransmit_s is §D's loss penalty
# (data RTO 2 s on GPRS-typ, 3 s on GPRS-bad); wake-up is §D's "about 0.5–1 s once after idle";
# mean loss bursts of 3.3 packets follow §C.2's netem sketch. EDGE/3G penalties, the queue
# sizes, idle timers and gprs-bad's outage rates are our choices (unverified against the field).
BUILTIN_PROFILES: Mapping[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "gprs-typ", rtt_s=0.8, down_bps=40_000, up_bps=20_000, jitter_s=0.1,
            loss=_ge(0.01, 3.3), retransmit_s=2.0, wakeup_s=0.6, queue_bytes=32_000,
        ),
        Profile(
            "gprs-bad", rtt_s=1.5, down_bps=20_000, up_bps=10_000, jitter_s=0.3,
            loss=_ge(0.03, 3.3), retransmit_s=3.0, wakeup_s=1.0, queue_bytes=32_000,
            outages=OnOff(mean_up_s=600.0, mean_down_s=20.0),
        ),
        Profile(
            "edge-typ", rtt_s=0.4, down_bps=120_000, up_bps=60_000, jitter_s=0.05,
            loss=_ge(0.01, 3.3), retransmit_s=1.0, wakeup_s=0.5,
        ),
        Profile(
            "3g", rtt_s=0.3, down_bps=750_000, up_bps=250_000, jitter_s=0.03,
            loss=_ge(0.005, 2.0), retransmit_s=1.0, wakeup_s=0.8, queue_bytes=128_000,
        ),
        Profile("offline", rtt_s=0.0, down_bps=0.0, up_bps=0.0, reset_after_s=20.0),
        Profile(
            "perfect", rtt_s=0.0, down_bps=math.inf, up_bps=math.inf, queue_bytes=1 << 20
        ),
    )
}  # fmt: skip

# TOML key -> (Profile field, multiplier into SI units)
_SCALAR_KEYS: Mapping[str, tuple[str, float]] = {
    "rtt_ms": ("rtt_s", 1e-3),
    "down_kbps": ("down_bps", 1e3),
    "up_kbps": ("up_bps", 1e3),
    "jitter_ms": ("jitter_s", 1e-3),
    "retransmit_ms": ("retransmit_s", 1e-3),
    "wakeup_ms": ("wakeup_s", 1e-3),
    "idle_s": ("idle_s", 1.0),
    "reset_after_s": ("reset_after_s", 1.0),
}
_INT_KEYS = ("queue_bytes", "mtu", "header_bytes")
_OTHER_KEYS = frozenset(
    {"base", "loss", "loss_burst", "gilbert_elliott", "outage_mean_up_s", "outage_mean_down_s",
     "up_trace", "down_trace"}
)  # fmt: skip
_GE_KEYS = frozenset({"p", "r", "loss_bad", "loss_good"})


def _num(table: Mapping[str, Any], key: str, where: str) -> float:
    return number(table, key, where, ProfileError)


def _profile_from_table(name: str, table: Mapping[str, Any], where: str, base_dir: Path) -> Profile:
    if not isinstance(table, dict):
        raise ProfileError(where, "a profile must be a table")
    unknown = set(table) - set(_SCALAR_KEYS) - set(_INT_KEYS) - _OTHER_KEYS
    if unknown:
        raise ProfileError(where, f"unknown keys {sorted(unknown)}")
    base_name = table.get("base", "perfect")
    if base_name not in BUILTIN_PROFILES:
        raise ProfileError(
            f"{where}.base", f"unknown built-in {base_name!r}; known: {sorted(BUILTIN_PROFILES)}"
        )
    changes: dict[str, Any] = {"name": name}
    for key, (field, scale) in _SCALAR_KEYS.items():
        if key in table:
            changes[field] = _num(table, key, where) * scale
    for key in _INT_KEYS:
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ProfileError(f"{where}.{key}", f"expected an integer, got {value!r}")
            changes[key] = value
    try:
        if "gilbert_elliott" in table:
            if "loss" in table or "loss_burst" in table:
                raise ProfileError(where, "give loss/loss_burst or gilbert_elliott, not both")
            ge = table["gilbert_elliott"]
            if not isinstance(ge, dict) or set(ge) - _GE_KEYS or not {"p", "r"} <= set(ge):
                raise ProfileError(
                    f"{where}.gilbert_elliott", "needs p and r (and optionally loss_bad, loss_good)"
                )
            changes["loss"] = GilbertElliott(
                **{k: _num(ge, k, f"{where}.gilbert_elliott") for k in ge}
            )
        elif "loss" in table:
            loss = _num(table, "loss", where)
            burst = _num(table, "loss_burst", where) if "loss_burst" in table else 1.0
            changes["loss"] = None if loss == 0.0 else GilbertElliott.from_mean(loss, burst)
        elif "loss_burst" in table:
            raise ProfileError(f"{where}.loss_burst", "needs `loss` as well")
        outage_keys = {"outage_mean_up_s", "outage_mean_down_s"} & set(table)
        if outage_keys:
            if len(outage_keys) != 2:
                raise ProfileError(where, "give both outage_mean_up_s and outage_mean_down_s")
            changes["outages"] = OnOff(
                _num(table, "outage_mean_up_s", where), _num(table, "outage_mean_down_s", where)
            )
    except ValueError as exc:
        if isinstance(exc, ProfileError):
            raise
        raise ProfileError(where, str(exc)) from exc
    for key in ("up_trace", "down_trace"):
        if key in table:
            value = table[key]
            if not isinstance(value, str):
                raise ProfileError(f"{where}.{key}", f"expected a file path, got {value!r}")
            changes[key] = load_trace(base_dir / value)
    return BUILTIN_PROFILES[base_name].replace(**changes)


def parse_profiles(
    text: str, name: str = "profiles", base_dir: Path | None = None
) -> dict[str, Profile]:
    """Parse `[profile.NAME]` tables from TOML text; trace paths are relative to `base_dir`."""
    tables = load_toml(text, name, ProfileError, "profile", "[profile.NAME]")
    if not isinstance(tables, dict) or not tables:
        raise ProfileError(name, "no profiles: add at least one [profile.NAME] table")
    directory = base_dir if base_dir is not None else Path(".")
    return {
        key: _profile_from_table(key, table, f"{name}: profile.{key}", directory)
        for key, table in tables.items()
    }


def load_profiles(path: str | Path) -> dict[str, Profile]:
    """Read a TOML profile file; unreadable files raise ProfileError too."""
    path = Path(path)
    return parse_profiles(read_text(path, ProfileError, "profile file"), str(path), path.parent)


def get_profile(name: str, custom: Mapping[str, Profile] | None = None) -> Profile:
    """A custom profile by name if given, else a built-in; ProfileError lists what exists."""
    if custom is not None and name in custom:
        return custom[name]
    if name in BUILTIN_PROFILES:
        return BUILTIN_PROFILES[name]
    known = sorted({*BUILTIN_PROFILES, *(custom or {})})
    raise ProfileError("profile", f"unknown profile {name!r}; known: {', '.join(known)}")
