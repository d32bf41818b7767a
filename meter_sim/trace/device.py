"""Which device a trace was recorded on, and how to build the same one in the simulator.

The secret key is written only when asked (`include_secret`); otherwise the header keeps a
fingerprint (`key_id`) so a separately supplied key can be checked against the recording.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from meter_sim.line_protocol import check_word
from meter_sim.meter import MAX_OPENPAYGO_COUNT, Meter
from meter_sim.nexus.policy import Quirk
from meter_sim.nv import key_fingerprint
from meter_sim.openpaygo.policy import C_EXAMPLE_BLOCKING, PRESETS, TokenQuirk
from meter_sim.ratelimit import NexusRateLimit, OpenPaygoBlocking
from meter_sim.storage import Storage
from meter_sim.trace.errors import TraceFormatError
from meter_sim.trace.fields import Fields

PROTOCOLS = ("nexus-full", "nexus-small", "openpaygo", "openpaygo-restricted")


def simulator_version() -> str:
    """What a trace header names as the firmware when the device is this simulator."""
    try:
        return f"meter-sim {metadata.version('payg-field-lab')}"
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "meter-sim (source)"


def key_id(key: bytes) -> str:
    """A fingerprint of a secret key that does not reveal it."""
    return "sha256:" + hashlib.sha256(b"meter-sim trace key id\x00" + key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """Everything needed to build a simulated meter identical to the recorded one."""

    protocol: str
    key: bytes | None = None
    payg_id: str = ""
    starting_code: int | None = None
    """OpenPAYGO only."""
    count: int = 1
    """OpenPAYGO initial count."""
    time_divider: int = 1
    rate_limit: bool = True
    """False when the recording meter ran without the rate limit / entry block (bench)."""
    fingerprint: str | None = None
    """`key_id` of the key, kept even when the key itself is not."""
    strict: bool = False
    """Nexus: refuse what the backend never emits (default: as nexus-embedded v2.0.1 does)."""
    allow_demo: bool | None = None
    """Nexus: accept demo codes (None: the firmware default, on unless strict)."""
    preset: str = "default"
    """OpenPAYGO: `default` or `c-example` (as OpenPAYGO-HW's C example answers)."""
    quirks: tuple[str, ...] = ()
    """Named firmware bugs to reproduce (`meter_sim.Quirk`, `meter_sim.TokenQuirk`)."""

    def __post_init__(self) -> None:
        if self.key is not None and self.fingerprint is None:
            object.__setattr__(self, "fingerprint", key_id(self.key))

    @property
    def nv_fingerprint(self) -> int:
        """The key's mark in the meter's saved images (`nv.key_fingerprint`); 0 without a key."""
        if self.key is None:
            return 0
        return key_fingerprint(self.key, self.starting_code if self.is_openpaygo else None)

    @property
    def is_openpaygo(self) -> bool:
        return self.protocol.startswith("openpaygo")

    def build(self, *, storage: Storage | None = None, now: float = 0.0) -> Meter:
        """A fresh simulated meter as configured; needs the key."""
        if self.key is None:
            raise TraceFormatError(
                "the device's secret key is not in the trace; record with --include-secret"
                " or pass a device file (--device FILE)",
                source="device",
            )
        if self.is_openpaygo:
            if self.starting_code is None:
                raise TraceFormatError("an OpenPAYGO device needs starting_code", source="device")
            return Meter.openpaygo(
                self.key,
                self.starting_code,
                count=self.count,
                restricted_digits=self.protocol == "openpaygo-restricted",
                time_divider=self.time_divider,
                blocking=None
                if not self.rate_limit
                else (OpenPaygoBlocking() if self.preset == "default" else C_EXAMPLE_BLOCKING),
                preset=self.preset,
                quirks=self.quirks,
                storage=storage,
                now=now,
            )
        return Meter.nexus(
            self.key,
            self.protocol.removeprefix("nexus-"),
            payg_id=self.payg_id,
            rate_limit=NexusRateLimit() if self.rate_limit else None,
            strict=self.strict,
            allow_demo=self.allow_demo,
            quirks=self.quirks,
            storage=storage,
            now=now,
        )

    def to_json(self, *, include_secret: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol": self.protocol}
        if self.fingerprint is not None:
            out["key_id"] = self.fingerprint
        if include_secret and self.key is not None:
            out["key"] = self.key.hex()
        if self.payg_id:
            out["payg_id"] = self.payg_id
        if self.is_openpaygo:
            if self.starting_code is not None:
                out["starting_code"] = self.starting_code
            out["count"] = self.count
            out["time_divider"] = self.time_divider
        out["rate_limit"] = self.rate_limit
        if self.strict:  # firmware knobs appear only when set, so older traces read the same
            out["strict"] = True
        if self.allow_demo is not None:
            out["allow_demo"] = self.allow_demo
        if self.preset != "default":
            out["preset"] = self.preset
        if self.quirks:
            out["quirks"] = ",".join(self.quirks)
        return out

    @classmethod
    def from_fields(cls, f: Fields) -> DeviceConfig:
        protocol = f.text("protocol", choices=PROTOCOLS)
        key = None
        if f.has("key"):
            text = f.text("key")
            try:
                key = bytes.fromhex(text)
            except ValueError:
                raise f.error(f"{f.path}.key must be hex digits") from None
            if len(key) != 16:
                raise f.error(f"{f.path}.key must be 32 hex digits (16 bytes), got {len(key)}")
        fingerprint = f.text("key_id") if f.has("key_id") else None
        if key is not None and fingerprint is not None and fingerprint != key_id(key):
            raise f.error(f"{f.path}.key does not match {f.path}.key_id")
        openpaygo = protocol.startswith("openpaygo")
        config = cls(
            protocol=protocol,
            key=key,
            payg_id=_payg_id(f) if f.has("payg_id") else "",
            starting_code=(
                f.integer("starting_code", 0, 999_999_999)
                if openpaygo and f.has("starting_code")
                else None
            ),
            count=f.integer("count", 1, MAX_OPENPAYGO_COUNT) if openpaygo and f.has("count") else 1,
            time_divider=(
                f.integer("time_divider", 1, 255) if openpaygo and f.has("time_divider") else 1
            ),
            rate_limit=f.flag("rate_limit") if f.has("rate_limit") else True,
            fingerprint=fingerprint,
            strict=f.flag("strict") if f.has("strict") else False,
            allow_demo=f.flag("allow_demo") if f.has("allow_demo") else None,
            preset=f.text("preset", choices=tuple(PRESETS)) if f.has("preset") else "default",
            quirks=_quirks(f.text("quirks"), f) if f.has("quirks") else (),
        )
        f.done()
        return config

    def with_key_from(self, other: DeviceConfig) -> DeviceConfig:
        """This recording's device, completed by a device file; refuses a different device."""
        if other.protocol != self.protocol:
            raise TraceFormatError(
                f"the device file is for {other.protocol}, the trace for {self.protocol}",
                source="device",
            )
        if self.fingerprint and other.fingerprint and self.fingerprint != other.fingerprint:
            raise TraceFormatError(
                "the device file's key is not the key the trace was recorded with (key_id differs)",
                source="device",
            )
        return other


def load_device(path: str | Path) -> DeviceConfig:
    """Read a device file: a JSON object with the fields of a trace header's `device`."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceFormatError(f"cannot read the device file: {exc}", source=source) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceFormatError(f"not JSON: {exc.msg}", source=source, line=exc.lineno) from None
    except (ValueError, RecursionError) as exc:
        raise TraceFormatError(f"not usable JSON: {exc}", source=source) from None
    return DeviceConfig.from_fields(Fields(obj, path="device", source=source, line=None))


def _payg_id(f: Fields) -> str:
    """The PAYG id, if it can stand as one word of an answer (`id=<payg id>`)."""
    text = f.text("payg_id", limit=64)
    try:
        return check_word(f"{f.path}.payg_id", text) if text else text
    except ValueError as exc:
        raise f.error(str(exc)) from None


QUIRKS = frozenset(q.value for q in Quirk) | frozenset(q.value for q in TokenQuirk)


def _quirks(text: str, f: Fields) -> tuple[str, ...]:
    names = tuple(n for n in text.split(",") if n)
    unknown = [n for n in names if n not in QUIRKS]
    if unknown:
        raise f.error(
            f"{f.path}.quirks: unknown {unknown[0]!r}; known: {', '.join(sorted(QUIRKS))}"
        )
    return names
