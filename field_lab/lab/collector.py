"""The garbage collector while a run sets up and while it is in the field: what set-up builds is
frozen out of sight.

Set-up's objects (handsets, sites, meters: most of the heap) live to the end. Frozen, they are
never scanned again, so the field's collections look only at what the field makes, and less
often: a full collection over a heap that grows through a run is what made a long run's later
hours cost more than its first. Used by `field-lab run` and `field-lab simulate`; measured in
benchmarks/lab_scale.py (`field_gc_s`) and benchmarks/simulate_speed.py.

Set-up is the same story earlier: it builds the sites (a meter each, ten per handset) and then
provisions and fills every handset, and with the default thresholds the collector scanned the
growing heap over and over (2.9 s of a 1,000-handset set-up's 16 s of CPU, measured in
benchmarks/lab_scale.py as `setup_gc_s`).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator

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


@contextlib.contextmanager
def setup_collector() -> Iterator[Callable[[], None]]:
    """Collect the young less often while setting up; yields `keep`, which freezes what exists
    now (call it once what was built lives to the end of the run). All undone after."""
    thresholds = gc.get_threshold()
    gc.set_threshold(FIELD_GC_THRESHOLD, *thresholds[1:])
    try:
        yield gc.freeze
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
