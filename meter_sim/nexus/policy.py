"""How closely a Nexus meter follows nexus-embedded v2.0.1: firmware-exact, strict, quirks.

The default is what the reference firmware does with its default configuration, because a
test that passes on the simulator must pass on the device. `strict=True` is the older,
backend-only policy: it refuses every form the backend never emits (reserved digits, short
activation forms, demo and no-MAC codes, small codes of the wrong length). `quirks` turns on
named firmware bugs, so a bench can mirror a fielded version exactly; none is on by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from meter_sim.errors import ConfigError


class Quirk(StrEnum):
    """Documented nexus-embedded bugs the simulator can reproduce on request."""

    ID16_TRUNCATION = "id16-truncation"
    """Above id 65,535 the flag functions see `id & 0xFFFF`: such codes re-apply on replay."""


QC_LIFETIME_MAX_DEFAULT = 5
"""Kconfig default of NEXUS_KEYCODE_PRO_FACTORY_QC_{SHORT,LONG}_LIFETIME_MAX."""


@dataclass(frozen=True, slots=True)
class NexusPolicy:
    """Which device leniencies and configuration a Nexus validator applies."""

    strict: bool = False
    """Refuse what the backend never emits, even where the device accepts it."""
    allow_demo: bool | None = None
    """Demo codes (full type 3); None: the firmware default (accepted) unless strict."""
    allow_nomac_id: bool | None = None
    """The no-MAC payg-id confirmation `*7<id>#`; None: accepted unless strict."""
    qc_short_lifetime_max: int = QC_LIFETIME_MAX_DEFAULT
    """NEXUS_KEYCODE_PRO_FACTORY_QC_SHORT_LIFETIME_MAX (QC codes of 10 minutes or less)."""
    qc_long_lifetime_max: int = QC_LIFETIME_MAX_DEFAULT
    """NEXUS_KEYCODE_PRO_FACTORY_QC_LONG_LIFETIME_MAX."""
    quirks: frozenset[Quirk] = frozenset()
    id16: bool = field(default=False, init=False, repr=False, compare=False)
    """`Quirk.ID16_TRUNCATION` is on (derived from `quirks`; read on every code)."""

    def __post_init__(self) -> None:
        for name in ("qc_short_lifetime_max", "qc_long_lifetime_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 15:
                raise ConfigError(f"{name} must be 0..15 (a nibble in NV), got {value!r}")
        try:
            quirks = frozenset(Quirk(q) for q in self.quirks)
        except ValueError as exc:
            raise ConfigError(f"unknown quirk: {exc}") from None
        object.__setattr__(self, "quirks", quirks)
        object.__setattr__(self, "id16", Quirk.ID16_TRUNCATION in quirks)

    @property
    def demo(self) -> bool:
        return (not self.strict) if self.allow_demo is None else self.allow_demo

    @property
    def nomac_id(self) -> bool:
        return (not self.strict) if self.allow_nomac_id is None else self.allow_nomac_id

    def has(self, quirk: Quirk) -> bool:
        return quirk in self.quirks


FIRMWARE = NexusPolicy()
"""nexus-embedded v2.0.1 with its default configuration."""
STRICT = NexusPolicy(strict=True)
"""Accept only what the backend (nexus-keycode) emits."""

__all__ = ["FIRMWARE", "QC_LIFETIME_MAX_DEFAULT", "STRICT", "NexusPolicy", "Quirk"]
