"""Metrics requests into the store, answers out: one transaction per request, on the store
thread. A refusal raises before anything is written, so the transaction leaves no trace."""

from __future__ import annotations

import json
from typing import Any

from agent_client.protocol.keycodes import KeycodeFormat

from ..errors import RequestError
from ..store import Store
from .wire import DataFormat, DeviceData, expand, parse_format, sign_answer, signature_ok

MAX_TOKENS = 16
"""Tokens in one answer at most; the rest go in the next one."""
OPENPAYGO = (KeycodeFormat.OPENPAYGO, KeycodeFormat.OPENPAYGO_RESTRICTED)


def compact(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"))


def token_count_of(message_id: int) -> int:
    """The lowest count an OpenPAYGO Add Time token issued at `message_id` may carry (the next
    even number above it: the package's encoder keeps even counts for Add Time, and skips one
    now and then, `server_stub.keycodes`). Still exact for "is it due": a device's count is its
    initial count or an issued token's, so below this token's count it is at most `message_id`."""
    return message_id + (1 if message_id % 2 else 2)


def register_format(store: Store, fmt: DataFormat) -> int:
    """The id of `fmt`, registering it the first time (the same format keeps its id)."""
    body = compact(fmt.document())
    with store.transaction() as db:
        db.execute("INSERT OR IGNORE INTO opm_formats(body) VALUES (?)", (body,))
        (format_id,) = db.execute(
            "SELECT format FROM opm_formats WHERE body = ?", (body,)
        ).fetchone()
    return int(format_id)


def _format(store: Store, req: DeviceData) -> DataFormat | None:
    if req.format_id is not None:
        row = store.db.execute(
            "SELECT body FROM opm_formats WHERE format = ?", (req.format_id,)
        ).fetchone()
        if row is None:
            raise RequestError(
                422, "unknown_data_format", f"no data format {req.format_id}: POST /data_format"
            )
        return parse_format(json.loads(row[0]))
    return req.inline_format


def _count(value: Any) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53
    return value if ok else None


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value == value
    return float(value) if ok and abs(value) < 1e300 else None


def _tokens(
    store: Store, device: int, fmt: KeycodeFormat, cursor: int, token_count: Any
) -> list[tuple[int, str]]:
    """Keycodes for the device the answer carries, in count order.

    An OpenPAYGO device that reports its token count gets every token above it (so a token
    whose answer was lost comes again, and is never credited twice: the count says what the
    meter took); any other device gets the keycodes issued since its last answer."""
    rows = store.db.execute(
        "SELECT keycode, message_id, text FROM keycodes WHERE device = ? ORDER BY message_id",
        (device,),
    ).fetchall()
    tc = _count(token_count)
    if fmt in OPENPAYGO and tc is not None:
        due = [(k, t) for k, m, t in rows if token_count_of(m) > tc]
    else:
        due = [(k, t) for k, _, t in rows if k > cursor]
    return due[:MAX_TOKENS]


def device_data(store: Store, req: DeviceData, size: int, now_ms: int) -> dict[str, Any]:
    """Check, store and answer one request (`size`: its body in bytes)."""
    if not (req.serial.isascii() and req.serial.isdigit() and len(req.serial) <= 10):
        raise RequestError(404, "unknown_device", f"no device {req.serial[:20]!r}")
    with store.transaction() as db:
        row = db.execute(
            "SELECT d.format, d.key, o.last_rc, o.last_ts, o.token_cursor FROM devices d"
            " LEFT JOIN opm_devices o ON o.device = d.device WHERE d.device = ?",
            (int(req.serial),),
        ).fetchone()
        if row is None:
            raise RequestError(404, "unknown_device", f"no device {req.serial}")
        fmt, key, last_rc, last_ts, cursor = row
        device = int(req.serial)
        if not signature_ok(req, key):
            raise RequestError(403, "bad_signature", "auth does not match this device's key")
        if not (req.request_count or req.timestamp):
            raise RequestError(422, "missing_count", "a request needs timestamp or request_count")
        if req.request_count and last_rc and req.request_count <= last_rc:
            raise RequestError(
                409,
                "replayed_request",
                f"request_count must exceed {last_rc}",
                {"last_rc": last_rc},
            )
        if req.timestamp and last_ts and req.timestamp <= last_ts:
            raise RequestError(
                409, "replayed_request", f"timestamp must exceed {last_ts}", {"last_ts": last_ts}
            )
        data, history = expand(req, _format(store, req), now_ms // 1000)
        tokens = _tokens(store, device, KeycodeFormat(fmt), cursor or 0, data.get("token_count"))
        answer = sign_answer(req, key, {"token_list": [t for _, t in tokens]} if tokens else {})
        db.execute(
            "INSERT INTO opm_devices(device, first_ms, last_ms) VALUES (?, ?, ?)"
            " ON CONFLICT(device) DO NOTHING",
            (device, now_ms, now_ms),
        )
        db.executemany(
            "INSERT OR IGNORE INTO opm_rows(device, ts, body, received_ms) VALUES (?, ?, ?, ?)",
            [(device, r.pop("timestamp"), compact(r), now_ms) for r in history],
        )
        db.execute(
            "UPDATE opm_devices SET last_rc = coalesce(?, last_rc), last_ts = coalesce(?, last_ts),"
            " token_cursor = max(token_cursor, ?), requests = requests + 1,"
            " bytes_in = bytes_in + ?, bytes_out = bytes_out + ?, tokens_sent = tokens_sent + ?,"
            " rows = (SELECT count(*) FROM opm_rows WHERE device = ?),"
            " token_count = coalesce(?, token_count), energy_wh = coalesce(?, energy_wh),"
            " hours_of_use = coalesce(?, hours_of_use), last_ms = ? WHERE device = ?",
            (
                req.request_count or None,
                req.timestamp or None,
                max((k for k, _ in tokens), default=0),
                size,
                len(compact(answer)),
                len(tokens),
                device,
                _count(data.get("token_count")),
                _number(data.get("energy_wh")),
                _number(data.get("hours_of_use")),
                now_ms,
                device,
            ),
        )
    return answer
