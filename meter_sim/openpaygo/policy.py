"""Which OpenPAYGO device the validator stands for: the safer default or the C example.

The default refuses replays of every kind, count 0 and the reserved values 996/997. The
`C_EXAMPLE` preset answers as EnAccess/OpenPAYGO-HW's decoder and its neutral example device
logic do (a SYNC token may be entered again, count 0 is "valid, already used", 996/997 are
plain day counts, an older 998 at an even count still disables; with `C_EXAMPLE_BLOCKING` for
the entry block). The example's used-count
bitmap bug is reproduced only when named in `quirks`, so a bench mirrors it on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from meter_sim.errors import ConfigError
from meter_sim.ratelimit import OpenPaygoBlocking


class TokenQuirk(StrEnum):
    """Documented OpenPAYGO-HW example bugs the simulator can reproduce on request."""

    C_USED_BITMAP_SHIFT = "c-used-bitmap-shift"
    """`MarkCountAsUsed` shifts the used-count bitmap wrongly and loses used bits, so an
    older ADD token can be credited twice."""


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    """The choices where OpenPAYGO devices differ; the defaults are the safer device."""

    sync_reentry: bool = False
    """Accept a SYNC token again while within 64 counts of the device count (C example)."""
    count_zero_duplicate: bool = False
    """Answer the starting code's own count 0 "valid, already used" rather than invalid."""
    reserved_values_credit: bool = False
    """Treat values 996 and 997 as day counts rather than refusing them."""
    older_by_parity: bool = False
    """Accept any unused older token at an even count in the window, a DISABLE (998) too:
    the C example decides "older ADD" by the count's parity alone."""
    quirks: frozenset[TokenQuirk] = frozenset()

    def __post_init__(self) -> None:
        try:
            quirks = frozenset(TokenQuirk(q) for q in self.quirks)
        except ValueError as exc:
            raise ConfigError(f"unknown quirk: {exc}") from None
        object.__setattr__(self, "quirks", quirks)

    def has(self, quirk: TokenQuirk) -> bool:
        return quirk in self.quirks


DEFAULT = TokenPolicy()
C_EXAMPLE = TokenPolicy(
    sync_reentry=True, count_zero_duplicate=True, reserved_values_credit=True, older_by_parity=True
)
"""OpenPAYGO-HW's `opaygo_decoder.c` with `device_payg_logic.c` (its bitmap bug excluded)."""
C_EXAMPLE_BLOCKING = OpenPaygoBlocking(first_block_seconds=120, free_attempts=2)
"""The C example's entry block: two invalid tokens free, then 2, 4 ... 512 minutes."""
PRESETS: dict[str, TokenPolicy] = {"default": DEFAULT, "c-example": C_EXAMPLE}

__all__ = ["C_EXAMPLE", "C_EXAMPLE_BLOCKING", "DEFAULT", "PRESETS", "TokenPolicy", "TokenQuirk"]
