"""What the Metrics reporter persists, and its encoding as the record's payload.

Counts and timestamps only move forward and are saved before a request leaves the device, so
a power cut never makes it reuse one. `pending` rows were sent and await an acknowledging
answer; rows closed meanwhile wait in `usage.rows` (the second buffer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from meter_sim.errors import CorruptStateError
from meter_sim.metrics.usage import Row, Usage


@dataclass(frozen=True, slots=True)
class ReporterState:
    usage: Usage
    base_url: str
    request_count: int = 0
    """The last request count used (0: none yet; the first request carries 1)."""
    last_timestamp: int = 0
    """The last request timestamp used (Unix seconds)."""
    pending: tuple[Row, ...] = ()
    in_flight: tuple[int, int] | None = None
    """(request count, timestamp) of the request whose answer is awaited."""


def _rows(rows: tuple[Row, ...]) -> list[list[float]]:
    return [[r.end, r.energy_wh, r.seconds_on] for r in rows]


def encode(state: ReporterState) -> bytes:
    u = state.usage
    doc = {
        "rc": state.request_count,
        "ts": state.last_timestamp,
        "url": state.base_url,
        "u": [u.observed, u.energy_wh, u.seconds_on, u.open_energy_wh, u.open_seconds_on],
        "drop": u.dropped,
        "rows": _rows(u.rows),
        "pend": _rows(state.pending),
        "fl": list(state.in_flight) if state.in_flight else None,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _num(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise CorruptStateError(f"metrics record holds {value!r} where a number belongs")
    return float(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CorruptStateError(f"metrics record holds {value!r} where a count belongs")
    return value


def _read_rows(value: Any) -> tuple[Row, ...]:
    if not isinstance(value, list):
        raise CorruptStateError("metrics record rows are not a list")
    rows = []
    for item in value:
        if not isinstance(item, list) or len(item) != 3:
            raise CorruptStateError(f"metrics record row {item!r} is not [end, wh, s]")
        rows.append(Row(*(_num(v) for v in item)))
    return tuple(rows)


def decode(payload: bytes) -> ReporterState:
    """Parse a payload `encode` wrote, or raise CorruptStateError saying what is wrong."""
    try:
        doc = json.loads(payload)
        observed, energy, seconds, open_energy, open_seconds = (_num(v) for v in doc["u"])
        flight = doc["fl"]
        url = doc["url"]
        if not isinstance(url, str):
            raise CorruptStateError("metrics record base_url is not text")
        return ReporterState(
            usage=Usage(
                observed=observed,
                energy_wh=energy,
                seconds_on=seconds,
                open_energy_wh=open_energy,
                open_seconds_on=open_seconds,
                rows=_read_rows(doc["rows"]),
                dropped=_count(doc["drop"]),
            ),
            base_url=url,
            request_count=_count(doc["rc"]),
            last_timestamp=_count(doc["ts"]),
            pending=_read_rows(doc["pend"]),
            in_flight=None if flight is None else (_count(flight[0]), _count(flight[1])),
        )
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CorruptStateError(f"metrics record is not a reporter state: {exc}") from exc
