"""The meter's OpenPAYGO Metrics client, sans I/O: requests out as bytes, answers in as bytes.

    reporter = MetricsReporter(meter, config, storage=FileStorage("m1.metrics"), now=0.0)
    request = reporter.request(now)            # bytes to POST to request.url
    answered = reporter.answer(request, status, body, now)   # or reporter.failed(request)

A request carries the usage totals (`d`) and every history row not yet acknowledged (`hd`):
rows sent wait in `pending` until a signed answer to that very request arrives, rows closed
meanwhile wait in the second buffer. The answer's tokens go through the meter's own keypad
validator, exactly as if typed, so an answer can never grant what a token could not.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from meter_sim.errors import ConfigError, CorruptStateError
from meter_sim.meter import Result
from meter_sim.metrics.dataformat import SHORT, DataFormat, positional
from meter_sim.metrics.record import RecordStore
from meter_sim.metrics.sign import METHODS, answer_auth, request_auth
from meter_sim.metrics.state import ReporterState, decode, encode
from meter_sim.metrics.usage import MAX_ROWS, Row, Usage
from meter_sim.nv import Snapshot
from meter_sim.outcomes import Outcome
from meter_sim.storage import MemoryStorage, Storage

DEFAULT_FORMAT = DataFormat(
    data_order=("token_count", "energy_wh", "hours_of_use"),
    historical_data_order=("energy_wh", "seconds_on"),
    historical_data_interval=3600,
)
MAX_TOKENS = 32
"""Tokens applied from one answer at most; the rest wait for the next answer."""
MAX_URL = 200
ANSWER_KEYS = {
    "token_list": "tkl",
    "active_until_timestamp": "auts",
    "active_seconds_left": "asl",
    "settings": "st",
    "extra_data": "ed",
    "auth": "a",
}
"""Answer keys, long to short; an answer may use either."""


class Device(Protocol):
    """What the reporter needs of a meter (`Meter` and the trace recorder both fit)."""

    def credit_remaining(self, now: float) -> float: ...
    def enter_keycode(self, text: str, now: float) -> Result: ...
    def snapshot(self, now: float) -> Snapshot: ...


@dataclass(frozen=True, slots=True)
class ReporterConfig:
    serial: str
    secret_key: bytes
    base_url: str
    """Where requests go first (`{base_url}/dd`); an answer may move it (`st.base_url`)."""
    data_format: DataFormat = DEFAULT_FORMAT
    auth: str = "ra"
    condensed: bool = True
    watts: float = 10.0
    """What the load draws while the output is on."""
    epoch: int = 1_700_000_000
    """Unix time at device time 0: request timestamps are `epoch + now`."""
    dct_key: str = SHORT["data_collection_timestamp"]
    """Short name of the data collection timestamp: `dct` (specification) or `dtc`
    (the `openpaygo` package)."""

    def __post_init__(self) -> None:
        if not self.serial or not isinstance(self.serial, str):
            raise ConfigError(f"serial must be non-empty text, got {self.serial!r}")
        if not isinstance(self.secret_key, bytes) or len(self.secret_key) != 16:
            raise ConfigError("secret_key must be 16 bytes")
        if not _url_ok(self.base_url):
            raise ConfigError(f"base_url must be an http(s) URL, got {self.base_url!r}")
        if self.auth not in METHODS:
            raise ConfigError(f"auth must be one of {', '.join(METHODS)}, got {self.auth!r}")
        if not math.isfinite(self.watts) or self.watts < 0:
            raise ConfigError(f"watts must be a finite number >= 0, got {self.watts!r}")
        if self.data_format.historical_data_interval < 0:
            raise ConfigError("this meter writes history oldest first: use a positive interval")
        if self.dct_key not in ("dct", "dtc"):
            raise ConfigError(f'dct_key must be "dct" or "dtc", got {self.dct_key!r}')


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    body: bytes
    request_count: int
    timestamp: int
    rows: int
    """History rows it carries."""


@dataclass(frozen=True, slots=True)
class Answered:
    acknowledged: bool
    """The answer was this request's and correctly signed: its rows are forgotten."""
    reason: str
    tokens: tuple[tuple[str, Outcome], ...] = ()
    base_url: str | None = None
    """Set when the answer moved the reporter to a new base URL."""


def _url_ok(url: object) -> bool:
    return (
        isinstance(url, str)
        and url.startswith(("http://", "https://"))
        and 8 < len(url) <= MAX_URL
        and url.isascii()
        and url.isprintable()
        and " " not in url
    )


class MetricsReporter:
    def __init__(
        self, meter: Device, config: ReporterConfig, *, storage: Storage | None, now: float
    ) -> None:
        self.meter = meter
        self.config = config
        self._store = RecordStore(storage if storage is not None else MemoryStorage())
        self.state = ReporterState(Usage(observed=now), config.base_url)
        self.boot(now)

    # -- power -------------------------------------------------------------------------------

    def boot(self, now: float) -> None:
        """Read the record (after a power cut): no answer can arrive for a request in flight."""
        payload = self._store.load()
        if payload is not None:
            try:
                self.state = replace(decode(payload), in_flight=None)
                return
            except CorruptStateError as exc:
                self._store.problems = (*self._store.problems, str(exc))
        self.state = ReporterState(Usage(observed=now), self.config.base_url)
        self._save()

    @property
    def problems(self) -> tuple[str, ...]:
        """What was wrong with the stored record at the last boot (empty when nothing)."""
        return self._store.problems

    @property
    def base_url(self) -> str:
        return self.state.base_url

    # -- usage ---------------------------------------------------------------------------------

    def observe(self, now: float) -> None:
        """Count usage up to `now` (call before credit changes for exact hours of use)."""
        usage = self.state.usage
        if now <= usage.observed:
            return
        on_until = usage.observed + self.meter.credit_remaining(usage.observed)
        fmt = self.config.data_format
        usage = usage.advance(now, on_until, self.config.watts, fmt.historical_data_interval)
        self.state = replace(self.state, usage=usage)
        self._save()

    # -- requests ------------------------------------------------------------------------------

    def request(self, now: float, *, condensed: bool | None = None) -> Request:
        """The next request, its count and timestamp saved before the bytes are handed out."""
        self.observe(now)
        state = self.state
        rows = (*state.pending, *state.usage.rows)
        dropped = max(0, len(rows) - MAX_ROWS)
        usage = replace(state.usage, rows=(), dropped=state.usage.dropped + dropped)
        rc = state.request_count + 1
        ts = max(self.config.epoch + math.floor(now), state.last_timestamp + 1, 1)
        self.state = replace(
            state,
            usage=usage,
            pending=rows[dropped:],
            request_count=rc,
            last_timestamp=ts,
            in_flight=(rc, ts),
        )
        self._save()
        use_condensed = self.config.condensed if condensed is None else condensed
        doc = self._body(rc, ts, self.state.pending, now, use_condensed)
        body = json.dumps(doc, separators=(",", ":")).encode()
        url = self.state.base_url.rstrip("/") + "/dd"
        return Request(url, body, rc, ts, len(self.state.pending))

    def _data(self, now: float) -> dict[str, Any]:
        usage = self.state.usage
        data: dict[str, Any] = {}
        token = self.meter.snapshot(now).token
        if token is not None:
            data["token_count"] = token.count
        data["energy_wh"] = round(usage.energy_wh, 3)
        data["hours_of_use"] = round(usage.seconds_on / 3600, 3)
        return data

    def _row(self, row: Row) -> dict[str, Any]:
        return {"energy_wh": round(row.energy_wh, 3), "seconds_on": round(row.seconds_on)}

    def _body(
        self, rc: int, ts: int, rows: tuple[Row, ...], now: float, condensed: bool
    ) -> dict[str, Any]:
        cfg = self.config
        fmt = cfg.data_format
        data = self._data(now)
        doc: dict[str, Any] = {"serial_number": cfg.serial}
        if fmt.id is not None:
            doc["data_format_id"] = fmt.id
        elif condensed:
            doc["data_format"] = fmt.document()
        doc["timestamp"] = ts
        doc["request_count"] = rc
        if condensed:
            if rows:
                doc["data_collection_timestamp"] = cfg.epoch + math.floor(rows[0].end)
            d: Any = positional(data, fmt.data_order)
            hd: list[Any] = [positional(self._row(r), fmt.historical_data_order) for r in rows]
        else:
            d = data
            hd = [{"timestamp": cfg.epoch + math.floor(r.end), **self._row(r)} for r in rows]
        doc["data"] = d
        if hd:
            doc["historical_data"] = hd
        doc["auth"] = request_auth(
            cfg.auth, cfg.secret_key, cfg.serial, timestamp=ts, request_count=rc, data=d, history=hd
        )
        if not condensed:
            return doc
        short = {**SHORT, "data_collection_timestamp": cfg.dct_key}
        return {short.get(k, k): v for k, v in doc.items()}

    # -- answers -------------------------------------------------------------------------------

    def failed(self, request: Request) -> None:
        """No answer will come for `request` (timeout, refusal): its rows stay pending."""
        if self.state.in_flight == (request.request_count, request.timestamp):
            self.state = replace(self.state, in_flight=None)
            self._save()

    def answer(self, request: Request, status: int, body: bytes, now: float) -> Answered:
        """Check and apply the platform's answer to `request`."""
        if self.state.in_flight != (request.request_count, request.timestamp):
            return Answered(False, "not the answer to the request in flight")
        if status not in (200, 201):
            self.failed(request)
            return Answered(False, f"refused with HTTP {status}: data kept")
        doc = _answer_doc(body)
        if doc is None:
            self.failed(request)
            return Answered(False, "answer is not a JSON object: data kept")
        given = doc.get("a")
        expected = answer_auth(
            self.config.secret_key,
            self.config.serial,
            doc,
            timestamp=request.timestamp,
            request_count=request.request_count,
        )
        if given != expected:
            self.failed(request)
            return Answered(False, "answer signature missing or wrong: data kept, nothing applied")
        self.observe(now)
        settings = doc.get("st")
        moved = settings.get("base_url") if isinstance(settings, dict) else None
        new_url = moved if _url_ok(moved) and moved != self.state.base_url else None
        self.state = replace(
            self.state, pending=(), in_flight=None, base_url=new_url or self.state.base_url
        )
        self._save()
        tokens = doc.get("tkl")
        applied: list[tuple[str, Outcome]] = []
        for token in tokens[:MAX_TOKENS] if isinstance(tokens, list) else ():
            if isinstance(token, str) and 0 < len(token) <= 40 and token.isascii():
                applied.append((token, self.meter.enter_keycode(token, now).outcome))
            else:
                applied.append((str(token)[:20], Outcome.INVALID))
        return Answered(True, "acknowledged", tuple(applied), new_url)

    def _save(self) -> None:
        self._store.save(encode(self.state))


def _answer_doc(body: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(doc, Mapping):
        return None
    return {ANSWER_KEYS.get(str(k), str(k)): v for k, v in doc.items()}
