"""OpenPAYGO Token, validated on the device side as firmware does it.

An independent implementation: it uses the project's own SipHash and never imports the
`openpaygo` package, which the tests use as the encoder and as a differential reference.
"""

from __future__ import annotations

from meter_sim.openpaygo.chain import EXTENDED, STANDARD, TokenFormat, derive_starting_code
from meter_sim.openpaygo.policy import (
    C_EXAMPLE,
    C_EXAMPLE_BLOCKING,
    DEFAULT,
    TokenPolicy,
    TokenQuirk,
)
from meter_sim.openpaygo.state import TokenState
from meter_sim.openpaygo.token import Kind, process_token

__all__ = [
    "C_EXAMPLE",
    "C_EXAMPLE_BLOCKING",
    "DEFAULT",
    "EXTENDED",
    "STANDARD",
    "Kind",
    "TokenFormat",
    "TokenPolicy",
    "TokenQuirk",
    "TokenState",
    "derive_starting_code",
    "process_token",
]
