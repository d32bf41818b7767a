"""The installed distribution's version, for `--version` and anything that reports itself.

Every CLI but meter-sim's reads it here (meter_sim imports nothing of ours and has its own).
"""

from __future__ import annotations

from importlib import metadata

DISTRIBUTION = "payg-field-lab"


def distribution_version() -> str:
    """`payg-field-lab`'s version, or "source" when running from a tree that is not installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # pragma: no cover - an uninstalled source tree
        return "source"
