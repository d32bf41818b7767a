"""meter_sim.metrics against the openpaygo package: every request the meter makes is accepted
by its MetricsResponseHandler with the device key, answers it builds are applied, tampered
ones are not, and the reporter's state survives power cuts (torn writes included)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from openpaygo import MetricsResponseHandler, TokenType, generate_token
from openpaygo.metrics_shared import OpenPAYGOMetricsShared

from meter_sim import MemoryStorage, Meter, Outcome
from meter_sim.metrics import DEFAULT_FORMAT, MetricsReporter, ReporterConfig
from meter_sim.metrics.record import SLOT_BYTES, RecordStore
from meter_sim.metrics.sign import request_auth

KEY = bytes(range(16))
START = 123456789
HOUR = 3600


def reporter(storage: MemoryStorage | None = None, **config: object) -> MetricsReporter:
    meter = Meter.openpaygo(KEY, START, storage=MemoryStorage(), now=0.0)
    cfg = ReporterConfig("S1", KEY, "http://127.0.0.1:9/opm", **config)  # type: ignore[arg-type]
    return MetricsReporter(meter, cfg, storage=storage or MemoryStorage(), now=0.0)


def token(count: int, days: int) -> str:
    return str(
        generate_token(
            secret_key=KEY.hex(),
            count=count,
            value=days,
            token_type=TokenType.ADD_TIME,
            starting_code=START,
        )[1]
    )


JSON_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=8),
)
ROWS = st.lists(st.dictionaries(st.text(max_size=4), JSON_SCALAR, max_size=3), max_size=4)


@settings(max_examples=30, deadline=None)
@given(
    method=st.sampled_from(["sa", "ta", "ca", "da", "ra"]),
    ts=st.integers(0, 2**40),
    rc=st.integers(0, 2**20),
    data=st.dictionaries(st.text(max_size=6), JSON_SCALAR, max_size=4),
    rows=ROWS,
)
def test_request_signatures_match_the_reference(
    method: str, ts: int, rc: int, data: dict[str, object], rows: list[dict[str, object]]
) -> None:
    if (method == "ta" and not ts) or (method == "ca" and not rc):
        return
    doc = {
        "serial_number": "X9",
        "timestamp": ts,
        "request_count": rc,
        "data": data,
        "historical_data": rows,
    }
    reference = OpenPAYGOMetricsShared.generate_request_signature_from_data(doc, method, KEY.hex())
    mine = request_auth(method, KEY, "X9", timestamp=ts, request_count=rc, data=data, history=rows)
    assert mine == reference


@settings(max_examples=10, deadline=None)
@given(
    method=st.sampled_from(["ta", "ca", "da", "ra"]),
    condensed=st.booleans(),
    dct_key=st.sampled_from(["dct", "dtc"]),
    gaps=st.lists(st.integers(1, 30 * HOUR), min_size=1, max_size=4),
    paid=st.integers(0, 5),
)
def test_every_request_is_accepted_by_the_reference_handler(
    method: str, condensed: bool, dct_key: str, gaps: list[int], paid: int
) -> None:
    rep = reporter(auth=method, condensed=condensed, dct_key=dct_key)
    if paid:
        rep.meter.enter_keycode(token(1, paid), 1.0)
    now, last_rc, last_ts = 1.0, None, None
    for gap in gaps:
        now += gap
        request = rep.request(now)
        handler = MetricsResponseHandler(
            request.body.decode(),
            data_format=DEFAULT_FORMAT.document(),
            secret_key=KEY.hex(),
            last_request_count=last_rc,
            last_request_timestamp=last_ts,
        )
        assert handler.is_auth_valid(), request.body
        metrics = handler.get_simple_metrics()
        assert metrics["data"]["token_count"] == (2 if paid else 1)
        assert len(metrics["historical_data"]) == request.rows
        if condensed and dct_key == "dtc" and request.rows:  # the package reads only dtc
            stamps = [row["timestamp"] for row in metrics["historical_data"]]
            assert stamps == sorted(stamps)
            assert stamps[-1] <= request.timestamp
        # a replay of the same bytes is refused by the reference too
        again = MetricsResponseHandler(
            request.body.decode(),
            secret_key=KEY.hex(),
            last_request_count=request.request_count,
            last_request_timestamp=request.timestamp,
        )
        assert not again.is_auth_valid()
        rep.failed(request)  # nothing acknowledged: the next request carries the rows again
        last_rc, last_ts = request.request_count, request.timestamp


def test_an_answer_from_the_reference_applies_tokens_and_moves_the_base_url() -> None:
    rep = reporter()
    request = rep.request(5 * HOUR)
    assert request.rows == 5
    handler = MetricsResponseHandler(request.body.decode(), secret_key=KEY.hex())
    handler.add_tokens_to_answer([token(1, 2), token(3, 1)])
    handler.add_new_base_url_to_answer("http://127.0.0.1:9/moved")
    answered = rep.answer(request, 201, handler.get_answer_payload().encode(), 5 * HOUR + 1)
    assert answered.acknowledged
    assert [o for _, o in answered.tokens] == [Outcome.APPLIED, Outcome.APPLIED]
    assert rep.meter.credit_remaining(5 * HOUR + 1) == 3 * 86_400
    assert answered.base_url == "http://127.0.0.1:9/moved"
    nxt = rep.request(6 * HOUR)
    assert nxt.url == "http://127.0.0.1:9/moved/dd"
    assert nxt.rows == 1  # acknowledged rows are gone
    assert json.loads(nxt.body)["d"][0] == 4  # token count after the two tokens


def test_a_tampered_or_foreign_answer_applies_nothing_and_keeps_the_data() -> None:
    rep = reporter()
    request = rep.request(3 * HOUR)
    handler = MetricsResponseHandler(request.body.decode(), secret_key=KEY.hex())
    handler.add_tokens_to_answer([token(1, 30)])
    good = json.loads(handler.get_answer_payload())
    tampered = {**good, "tkl": [token(3, 30)]}
    unsigned = {"tkl": good["tkl"]}
    for doc in (tampered, unsigned):
        answered = rep.answer(  # refused: the rows stay pending
            request, 201, json.dumps(doc).encode(), 3 * HOUR + 1
        )
        assert not answered.acknowledged
        assert answered.tokens == ()
        request = rep.request(3 * HOUR + 2)
        handler = MetricsResponseHandler(request.body.decode(), secret_key=KEY.hex())
        handler.add_tokens_to_answer([token(1, 30)])
        good = json.loads(handler.get_answer_payload())
        tampered = {**good, "tkl": [token(3, 30)]}
    assert rep.meter.credit_remaining(3 * HOUR + 3) == 0
    assert request.rows == 3  # the unacknowledged rows travel again
    stale = rep.answer(request, 201, b"not json", 3 * HOUR + 3)
    assert not stale.acknowledged


def test_state_survives_power_cuts_and_counts_never_repeat() -> None:
    storage = MemoryStorage()
    rep = reporter(storage)
    first = rep.request(2 * HOUR)
    # power cut with the request in flight: a new reporter boots from the same record
    meter = rep.meter
    again = MetricsReporter(meter, rep.config, storage=storage, now=2 * HOUR)  # type: ignore[arg-type]
    second = again.request(2 * HOUR)  # same device second: the timestamp still moves on
    assert second.request_count == first.request_count + 1
    assert second.timestamp == first.timestamp + 1
    assert second.rows == first.rows == 2  # the unacknowledged rows were kept


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(0, 2 * SLOT_BYTES), garbage=st.binary(min_size=1, max_size=64))
def test_a_torn_record_write_leaves_the_old_or_the_new_record(cut: int, garbage: bytes) -> None:
    storage = MemoryStorage()
    store = RecordStore(storage)
    store.save(b'{"old":1}')
    store.save(b'{"mid":2}')
    before = bytes(storage.data)
    store.save(b'{"new":3}')
    after = bytes(storage.data)
    torn = bytearray(before.ljust(len(after), b"\x00"))
    start = 0  # the third save went to slot 0
    end = min(len(after), start + cut)
    torn[start:end] = after[start:end]
    if cut < SLOT_BYTES:
        torn[end : end + len(garbage)] = garbage[: max(0, SLOT_BYTES - end)]
    loaded = RecordStore(MemoryStorage(bytes(torn[: 2 * SLOT_BYTES]))).load()
    assert loaded in (b'{"mid":2}', b'{"new":3}')
