"""The collector in the field: `settle` sets what lives now out of the young collections'
sight, and everything is undone when the field ends."""

from __future__ import annotations

import gc

from field_lab.lab.collector import FIELD_GC_THRESHOLD, field_collector


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_settle_freezes_what_lives_and_the_field_undoes_it() -> None:
    thresholds, frozen_before = gc.get_threshold(), gc.get_freeze_count()
    with field_collector() as settle:
        assert gc.get_threshold()[0] == FIELD_GC_THRESHOLD
        kept = [Node() for _ in range(1000)]
        young = gc.get_objects(generation=0)
        assert any(node is kept[0] for node in young)
        del young
        settle()
        assert not any(node is kept[0] for node in gc.get_objects(generation=0))
        assert gc.get_freeze_count() >= frozen_before + len(kept)
        # a cycle made after the freeze is still the collector's to find
        a, b = Node(), Node()
        a.other, b.other = b, a
        del a, b
        assert gc.collect(0) >= 2
    assert gc.get_threshold() == thresholds
    assert gc.get_freeze_count() == 0
