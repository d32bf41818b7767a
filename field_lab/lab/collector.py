"""The garbage collector while a run sets up and while it is in the field: what set-up builds is
frozen out of sight.

Set-up's objects (handsets, sites, meters: most of the heap) live to the end. Frozen, they are
never scanned again, so the field's collections look only at what the field makes, and less
often: a full collection over a heap that grows through a run is what made a long run's later
hours cost more than its first. Used by `field-lab run` and `field-lab simulate`; measured in
benchmarks/lab_scale.py (`field_gc_s`) and benchmarks/simulate_speed.py.

In the field, what a young collection scans is mostly the exchanges under way (their
coroutines, futures, connections, timers: 67,000 objects at 2,000 handsets, 0.1 s of CPU a
collection, 8 % of the field's CPU) and it finds almost nothing (13 objects in cycles).
`field_collector` yields `settle`, which freezes what exists now; the lab calls it once a
second, so what lives on is set aside unscanned and a young collection comes only when more
than `FIELD_GC_THRESHOLD` objects pile up within a second. The cost: what the field leaves in
cycles waits for the collections after the field (the freeze is undone when it ends).

Set-up is the same story earlier: it builds the sites (a meter each, ten per handset) and then
provisions and fills every handset, and with the default thresholds the collector scanned the
growing heap over and over (2.9 s of a 1,000-handset set-up's 16 s of CPU, measured in
benchmarks/lab_scale.py as `setup_gc_s`; 5.7 s at 4,000 with young collections every 50,000
allocations). Almost nothing set-up makes is garbage in a cycle (643 objects for 1,000
handsets: the rest dies by reference counting), so set-up runs with no automatic collection,
and the field's first collection takes those few.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator

FIELD_GC_THRESHOLD = 50_000
"""Allocations between young collections in the field (Python's default is 700): an
exchange's objects mostly die by reference counting before a collection would scan them."""


@contextlib.contextmanager
def field_collector() -> Iterator[Callable[[], None]]:
    """Collect once, freeze what survives, collect the young less often (on, also inside
    `setup_collector`); yields `settle` (freeze what exists now: see the module docstring);
    all undone after."""
    thresholds, enabled = gc.get_threshold(), gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.set_threshold(FIELD_GC_THRESHOLD, *thresholds[1:])
    gc.enable()
    try:
        yield gc.freeze
    finally:
        if not enabled:
            gc.disable()
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@contextlib.contextmanager
def setup_collector() -> Iterator[Callable[[], None]]:
    """No automatic collection while setting up; yields `keep`, which freezes what exists now
    (call it once what was built lives to the end of the run). All undone after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield gc.freeze
    finally:
        if enabled:
            gc.enable()
        gc.unfreeze()
