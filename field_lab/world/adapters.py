"""Which platform adapter the handsets speak, by name: a built-in or MODULE:CLASS of your own.

Named rather than passed as an object so that every process setting handsets up (the lab's, a
shard's, a set-up worker's) makes its own from the same word."""

from __future__ import annotations

from agent_client.adapters import ADAPTERS, PlatformAdapter
from field_lab.errors import ConfigError
from field_lab.workload.behaviour import load_class


def platform_adapter(name: str) -> PlatformAdapter:
    """A built-in adapter by name (`compact`, `naive`) or MODULE:CLASS of your own."""
    if name in ADAPTERS:
        return ADAPTERS[name]()
    if ":" not in name:
        raise ConfigError(
            f"unknown adapter {name!r}; built in: {', '.join(ADAPTERS)}, or MODULE:CLASS"
        )
    made = load_class(name, "--adapter")()
    if not isinstance(made, PlatformAdapter):
        raise ConfigError(
            f"--adapter: {name} is not a PlatformAdapter (needs max_batch, polls, provision,"
            " exchange; see docs/library.md)"
        )
    return made
