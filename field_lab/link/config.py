"""Reading the link's input files: text, TOML and numbers, each failure naming where it is.

Shared by the profile, outage and trace loaders so that they fail the same precise way.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from field_lab.link.errors import ConfigError


def read_text(path: str | Path, error: type[ConfigError], what: str) -> str:
    """The file's UTF-8 text; unreadable or undecodable files raise `error`."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(str(path), f"cannot read the {what}: {exc}") from exc


def load_toml(text: str, name: str, error: type[ConfigError], key: str, hint: str) -> Any:
    """The value under the only allowed top-level `key` (None if absent)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(name, f"invalid TOML: {exc}") from exc
    unknown = set(document) - {key}
    if unknown:
        raise error(name, f"unknown top-level keys {sorted(unknown)}; use {hint}")
    return document.get(key)


def number(table: Mapping[str, Any], key: str, where: str, error: type[ConfigError]) -> float:
    """`table[key]` as a float; booleans, strings and missing keys raise `error`."""
    value = table.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error(f"{where}.{key}", f"expected a number, got {value!r}")
    return float(value)
