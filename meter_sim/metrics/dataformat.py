"""A Metrics data format, and the two forms of a request that it links.

The simple form names every value (`{"serial_number": ..., "data": {...}}`); the condensed
form shortens the top-level keys (`sn`, `d`, ...) and writes data and history rows as arrays
in the format's `data_order` and `historical_data_order`, trailing nulls dropped. History
rows in the condensed form carry no timestamps: the first row is at the data collection
timestamp and each next one `historical_data_interval` seconds later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meter_sim.errors import ConfigError

SHORT = {
    "serial_number": "sn",
    "timestamp": "ts",
    "request_count": "rc",
    "data_collection_timestamp": "dct",
    "data_format_id": "df",
    "data_format": "dfo",
    "data": "d",
    "historical_data": "hd",
    "auth": "a",
}
"""Request keys, long to short, as the specification names them (`dct`; the `openpaygo`
package writes `dtc`, see docs/metrics.md)."""


@dataclass(frozen=True, slots=True)
class DataFormat:
    """What the values of `d` and of each `hd` row are, in order."""

    data_order: tuple[str, ...]
    historical_data_order: tuple[str, ...]
    historical_data_interval: int
    """Seconds between history rows (negative: rows newest first)."""
    id: int | None = None
    """The platform's id for it (`POST /data_format`); None: send it inline (`dfo`)."""

    def __post_init__(self) -> None:
        for name, order in (("data", self.data_order), ("history", self.historical_data_order)):
            if not all(isinstance(v, str) and v for v in order) or len(set(order)) != len(order):
                raise ConfigError(f"{name} order must be distinct non-empty names, got {order!r}")
        if (
            isinstance(self.historical_data_interval, bool)
            or not isinstance(self.historical_data_interval, int)
            or self.historical_data_interval == 0
        ):
            raise ConfigError(
                f"historical_data_interval must be a non-zero integer of seconds,"
                f" got {self.historical_data_interval!r}"
            )

    def document(self) -> dict[str, Any]:
        """The format as JSON carries it (`dfo`, or the body of `POST /data_format`)."""
        return {
            "data_order": list(self.data_order),
            "historical_data_order": list(self.historical_data_order),
            "historical_data_interval": self.historical_data_interval,
        }


def positional(values: Mapping[str, Any], order: Sequence[str]) -> list[Any]:
    """`values` as an array in `order`, trailing nulls dropped; every name must be in order."""
    extra = sorted(set(values) - set(order))
    if extra:
        raise ConfigError(f"values {extra} are not in the data format's order {list(order)}")
    row = [values.get(name) for name in order]
    while row and row[-1] is None:
        row.pop()
    return row
