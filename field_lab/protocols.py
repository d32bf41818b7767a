"""One table of keycode protocol names: scenario files, fixtures, traces and the audit API
name protocols differently from the wire's `KeycodeFormat`; this is the only translation."""

from __future__ import annotations

from agent_client.protocol.keycodes import KeycodeFormat

NAMES: dict[KeycodeFormat, str] = {
    KeycodeFormat.NEXUS_FULL: "nexus-full",
    KeycodeFormat.NEXUS_SMALL: "nexus-small",
    KeycodeFormat.OPENPAYGO: "openpaygo",
    KeycodeFormat.OPENPAYGO_RESTRICTED: "openpaygo-restricted",
}
"""The names scenarios, fixtures and meter_sim traces use."""
FORMATS: dict[str, KeycodeFormat] = {name: fmt for fmt, name in NAMES.items()}
SCENARIO_PROTOCOLS: tuple[str, ...] = ("nexus-full", "nexus-small", "openpaygo")
"""What a scenario's device mix may name (restricted-digit OpenPAYGO is not sold in the lab)."""


def format_named(name: str) -> KeycodeFormat:
    """`KeycodeFormat` from a scenario/trace name or a wire enum name (`nexus_full`)."""
    fmt = FORMATS.get(name) or FORMATS.get(name.replace("_", "-"))
    if fmt is None:
        raise ValueError(f"unknown keycode protocol {name!r}; known: {', '.join(FORMATS)}")
    return fmt
