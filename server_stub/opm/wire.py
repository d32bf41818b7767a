"""OpenPAYGO Metrics on the platform's side of the wire: parse, check signatures, expand.

Pure functions of bytes and the device's key. Signatures are computed with the `openpaygo`
package's own routines (as keycodes are issued with its encoder), over the values exactly as
the request carries them: condensed requests are signed over their arrays.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from openpaygo.metrics_shared import OpenPAYGOMetricsShared

from ..callbacks import json_object
from ..errors import RequestError

LONG = {
    "sn": "serial_number",
    "ts": "timestamp",
    "rc": "request_count",
    "dct": "data_collection_timestamp",
    "dtc": "data_collection_timestamp",  # what the openpaygo package writes
    "df": "data_format_id",
    "dfo": "data_format",
    "d": "data",
    "hd": "historical_data",
    "a": "auth",
}
"""Short request keys to long ones; when both forms are present the short one wins."""
METHODS = ("sa", "ta", "ca", "da", "ra")
MAX_NAMES = 64
MAX_ROWS = 1024
MAX_STAMP = 2**53


@dataclass(frozen=True)
class DataFormat:
    data_order: tuple[str, ...]
    historical_data_order: tuple[str, ...]
    historical_data_interval: int | None

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "data_order": list(self.data_order),
            "historical_data_order": list(self.historical_data_order),
        }
        if self.historical_data_interval is not None:
            doc["historical_data_interval"] = self.historical_data_interval
        return doc


@dataclass(frozen=True)
class DeviceData:
    """One request, keys made long, values as they came (arrays stay arrays)."""

    serial: str
    auth: str
    stamps: tuple[Any, Any]
    """timestamp and request_count exactly as sent (the signature covers their text)."""
    timestamp: int | None
    request_count: int | None
    collected_at: int | None
    format_id: int | None
    inline_format: DataFormat | None
    data: dict[str, Any] | list[Any]
    history: list[dict[str, Any] | list[Any]]


def _integral(value: Any) -> Any:
    """JSON's 5.0 is the integer 5, as JSON Schema counts it."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_STAMP:
        return int(value)
    return value


def _int(doc: dict[str, Any], name: str, lo: int) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    value = _integral(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= MAX_STAMP:
        raise RequestError(400, "bad_field", f"{name} must be an integer in {lo}..{MAX_STAMP}")
    return value


def _names(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    ok = (
        isinstance(value, list)
        and len(value) <= MAX_NAMES
        and all(isinstance(v, str) and 0 < len(v) <= 64 for v in value)
        and len(set(value)) == len(value)
    )
    if not ok:
        raise RequestError(
            400, "bad_data_format", f"{name} must be up to {MAX_NAMES} distinct names"
        )
    return tuple(value)


FORMAT_KEYS = ("data_order", "historical_data_order", "historical_data_interval", "id")


def parse_format(doc: Any) -> DataFormat:
    """A data format object (`POST /data_format` or `dfo`); `id` is ignored (ours assign it)."""
    if not isinstance(doc, dict):
        raise RequestError(400, "bad_data_format", "a data format is a JSON object")
    unknown = sorted(set(doc) - set(FORMAT_KEYS))
    if unknown:
        raise RequestError(400, "bad_data_format", f"unknown data format keys {unknown}")
    nulls = sorted(k for k in FORMAT_KEYS[:3] if k in doc and doc[k] is None)
    if nulls:
        raise RequestError(400, "bad_data_format", f"{nulls} must be left out, not null")
    interval = _integral(doc.get("historical_data_interval"))
    if interval is not None and (
        isinstance(interval, bool) or not isinstance(interval, int) or not 0 < abs(interval) < 2**31
    ):
        raise RequestError(
            400, "bad_data_format", "historical_data_interval must be a non-zero integer"
        )
    return DataFormat(
        _names(doc.get("data_order"), "data_order"),
        _names(doc.get("historical_data_order"), "historical_data_order"),
        interval,
    )


def parse_request(body: bytes) -> DeviceData:
    raw = json_object(body)
    doc: dict[str, Any] = {k: v for k, v in raw.items() if k not in LONG}
    doc.update({LONG[k]: v for k, v in raw.items() if k in LONG})
    serial = doc.get("serial_number")
    if not isinstance(serial, str) or not 0 < len(serial) <= 64:
        raise RequestError(400, "bad_field", "serial_number (sn) must be text of 1..64 characters")
    auth = doc.get("auth")
    if auth is None:
        raise RequestError(401, "missing_auth", "sign the request (auth, a): ra is recommended")
    if not isinstance(auth, str) or len(auth) > 64:
        raise RequestError(400, "bad_field", "auth (a) must be text of at most 64 characters")
    data = doc.get("data", {})
    if not isinstance(data, dict | list):
        raise RequestError(400, "bad_field", "data (d) must be an object or an array")
    history = doc.get("historical_data", [])
    if isinstance(history, dict) and not history:
        history = []  # the openpaygo package sends {} when there is no history
    if not isinstance(history, list) or len(history) > MAX_ROWS:
        raise RequestError(400, "bad_field", f"historical_data (hd) must be up to {MAX_ROWS} rows")
    if not all(isinstance(row, dict | list) for row in history):
        raise RequestError(400, "bad_field", "each historical_data row is an object or an array")
    format_id = _int(doc, "data_format_id", 1)
    inline = doc.get("data_format")
    return DeviceData(
        serial=serial,
        auth=auth,
        stamps=(doc.get("timestamp"), doc.get("request_count")),
        timestamp=_int(doc, "timestamp", 0),
        request_count=_int(doc, "request_count", 0),
        collected_at=_int(doc, "data_collection_timestamp", 0),
        format_id=format_id,
        inline_format=None if inline is None else parse_format(inline),
        data=data,
        history=history,
    )


def signature_ok(req: DeviceData, key: bytes) -> bool:
    """Whether `auth` is the reference signature of this request under `key`."""
    method = req.auth[:2]
    if method not in METHODS:
        return False
    signed = {
        "serial_number": req.serial,
        "timestamp": req.stamps[0],
        "request_count": req.stamps[1],
        "data": req.data,
        "historical_data": req.history,
    }
    try:
        expected = OpenPAYGOMetricsShared.generate_request_signature_from_data(
            signed, method, key.hex()
        )
    except ValueError:  # ta without a timestamp, ca without a count
        return False
    return hmac.compare_digest(str(expected), req.auth)


def sign_answer(req: DeviceData, key: bytes, answer: dict[str, Any]) -> dict[str, Any]:
    """The answer with condensed keys and its `a` signature (answer keys given long)."""
    auth = OpenPAYGOMetricsShared.generate_response_signature_from_data(
        answer,
        key.hex(),
        req.serial,
        timestamp=req.stamps[0],
        request_count=req.stamps[1],
    )
    signed = OpenPAYGOMetricsShared.convert_dict_keys_to_condensed(answer)
    return {**signed, "a": auth}


def _values(row: dict[str, Any] | list[Any], order: tuple[str, ...], what: str) -> dict[str, Any]:
    if isinstance(row, dict):
        return dict(row)
    if len(row) > len(order):
        raise RequestError(
            422, "bad_data", f"{what} has {len(row)} values; the data format names {len(order)}"
        )
    return {name: value for name, value in zip(order, row, strict=False) if value is not None}


def expand(
    req: DeviceData, fmt: DataFormat | None, received_s: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(data, history rows with a `timestamp` each) as named values.

    Rows without their own timestamp start at the data collection timestamp (or the request
    timestamp, or the reception time) and step by `historical_data_interval`.
    """
    condensed = isinstance(req.data, list) or any(isinstance(r, list) for r in req.history)
    if condensed and fmt is None:
        raise RequestError(
            422, "unknown_data_format", "a condensed request needs data_format_id or data_format"
        )
    data_order = fmt.data_order if fmt else ()
    history_order = fmt.historical_data_order if fmt else ()
    data = _values(req.data, data_order, "data")
    at = req.collected_at or req.timestamp or received_s
    step = fmt.historical_data_interval if fmt else None
    rows: list[dict[str, Any]] = []
    for index, raw in enumerate(req.history):
        row = _values(raw, history_order, f"historical_data row {index}")
        stamp = row.get("timestamp")
        if isinstance(stamp, int) and not isinstance(stamp, bool) and 0 <= stamp <= MAX_STAMP:
            at = stamp
        elif "timestamp" in row:
            raise RequestError(422, "bad_data", f"historical_data row {index}: bad timestamp")
        elif index > 0:
            if step is None:
                raise RequestError(
                    422,
                    "bad_data",
                    f"historical_data row {index} has no timestamp and the format no interval",
                )
            at += step
        row["timestamp"] = at
        rows.append(row)
    return data, rows
