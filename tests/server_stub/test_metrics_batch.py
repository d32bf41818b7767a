"""The batch-observed ingest-lag histogram exposes what a Prometheus `Histogram` would."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from server_stub.metrics import LAG_BUCKETS, Metrics

NAME = "payg_sync_ingest_lag_seconds"
lags = st.lists(
    st.one_of(
        st.sampled_from(LAG_BUCKETS),  # on a bound: counted in that bucket (le is inclusive)
        st.floats(min_value=0.0, max_value=30 * 86400, allow_nan=False),
    ),
    max_size=50,
)


def samples(exposition: bytes) -> list[str]:
    """The exposition's bucket, count and sum lines (the reference also has `_created`)."""
    lines = exposition.decode().splitlines()
    return [line for line in lines if line.startswith(f"{NAME}_") and "_created" not in line]


@given(st.lists(lags, max_size=5))
def test_batches_expose_what_one_observe_per_value_would(batches: list[list[float]]) -> None:
    registry = CollectorRegistry()
    reference = Histogram(NAME, "lag", buckets=LAG_BUCKETS, registry=registry)
    ours = Metrics()
    for batch in batches:
        for value in batch:
            reference.observe(value)
        ours.ingest_lag.observe_many(batch)
    assert samples(ours.render({})) == samples(generate_latest(registry))
