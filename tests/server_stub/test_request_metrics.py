"""The event loop's lock-free request metrics render what prometheus_client's own would."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from server_stub.metrics import LATENCY_BUCKETS, Buckets, Metrics

values = st.lists(
    st.one_of(st.sampled_from(LATENCY_BUCKETS), st.floats(0, 20, allow_nan=False)), max_size=50
)


@given(values)
def test_buckets_match_prometheus_histogram(observed: list[float]) -> None:
    registry = CollectorRegistry()
    reference = Histogram("h", "reference", buckets=LATENCY_BUCKETS, registry=registry)
    ours = Buckets(LATENCY_BUCKETS)
    for value in observed:  # a value on a bound counts in that bound's bucket (le)
        reference.observe(value)
        ours.observe(value)
    for le, count in ours.cumulative():
        assert registry.get_sample_value("h_bucket", {"le": le}) == count
    assert registry.get_sample_value("h_sum") == ours.sum


def test_errors_and_durations_come_from_the_counted_requests() -> None:
    metrics = Metrics()
    for status, seconds in ((200, 0.002), (200, 0.2), (404, 0.001), (503, 0.5)):
        metrics.observe_request("/v2", "POST", status, seconds)
    metrics.requests.in_flight = 3
    sample = metrics.registry.get_sample_value
    route = {"route": "/v2", "method": "POST"}
    assert sample("payg_http_requests_total", {**route, "status": "200"}) == 2
    assert sample("payg_http_request_errors_total", {**route, "kind": "client"}) == 1
    assert sample("payg_http_request_errors_total", {**route, "kind": "server"}) == 1
    assert sample("payg_http_request_duration_seconds_count", route) == 4
    assert sample("payg_http_request_duration_seconds_bucket", {**route, "le": "0.0025"}) == 2
    assert sample("payg_http_requests_in_flight") == 3
