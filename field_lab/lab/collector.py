"""The garbage collector while a run is in the field: what set-up built is frozen out of sight.

Set-up's objects (handsets, sites, meters: most of the heap) live to the end. Frozen, they are
never scanned again, so the field's collections look only at what the field makes, and less
often: a full collection over a heap that grows through a run is what made a long run's later
hours cost more than its first. Used by `field-lab run` and `field-lab simulate`; measured in
benchmarks/lab_scale.py (`field_gc_s`) and benchmarks/simulate_speed.py.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

FIELD_GC_THRESHOLD = 50_000
"""Allocations between young collections in the field (Python's default is 700): an
exchange's objects mostly die by reference counting before a collection would scan them."""


@contextlib.contextmanager
def field_collector() -> Iterator[None]:
    """Collect once, freeze what survives, collect the young less often; all undone after."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(FIELD_GC_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
