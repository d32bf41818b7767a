"""platform_load's open-loop phase against the real platform (a small sample: a few hundred
operations): every operation due is acknowledged, and a sync that starts late because its
handset was busy counts its wait (no coordinated omission)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import aiohttp

from agent_client.protocol.keycodes import KeycodeFormat
from field_lab.world.platform import serving
from server_stub.app import SYNC_PATH, Platform

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from platform_load import Handset, held_handsets, ingest_open, parse, seed, sync_once


async def warmed(db: Path, count: int, url: str, http: aiohttp.ClientSession) -> list[Handset]:
    """`count` seeded handsets that have downloaded their stock."""
    handsets = seed(db, count, 50, random.Random(3), KeycodeFormat.NEXUS_FULL)
    for h in handsets:
        more = True
        while more:
            _, more = await sync_once(http, url, h, [])
    return handsets


async def test_every_due_operation_is_acknowledged(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    rng = random.Random(1)
    async with serving(db, config=Platform()) as base, aiohttp.ClientSession() as http:
        handsets = await warmed(db, 2, base + SYNC_PATH, http)
        held = await ingest_open(http, base + SYNC_PATH, handsets, 6, 120.0, 0.5, rng)
    assert held.errors == 0
    assert held.syncs.get_total_count() == 10  # 0.5 s at 20 batches a second
    assert held.acked == 60


async def test_a_late_start_counts_from_when_the_sync_was_due(tmp_path: Path) -> None:
    """Forty batches due at once from one handset: it syncs them one after another, so the
    last one waits for the other 39. Timed from its own send (closed loop) it would look like
    one sync; timed from its due time it is the whole run."""
    db = tmp_path / "p.db"
    rng = random.Random(1)
    async with serving(db, config=Platform()) as base, aiohttp.ClientSession() as http:
        (handset,) = await warmed(db, 1, base + SYNC_PATH, http)
        held = await ingest_open(http, base + SYNC_PATH, [handset], 3, 1e6, 40.5 * 3 / 1e6, rng)
    assert held.errors == 0
    assert held.acked == 120
    slowest_s = held.syncs.get_max_value() / 1e6
    assert slowest_s >= 0.9 * held.elapsed  # the last sync's wait behind the others counted


def test_handsets_default_to_one_sync_every_100_ms_each() -> None:
    args = parse(["--held-ops", "5000", "--batch", "60"])
    assert held_handsets(args) == 9  # 83.3 batches/s, each handset every <= ~108 ms
    assert held_handsets(parse(["--held-handsets", "4"])) == 4
