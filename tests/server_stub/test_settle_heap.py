"""A process that only serves the platform freezes its start-up heap and collects young
objects less often (`Platform.owns_interpreter`); any other process's collector is left as
it was (the setting is process-wide)."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

from pytest_aiohttp import AiohttpClient

import server_stub
from server_stub.app import GEN0_THRESHOLD, create_app

CHILD = """
import asyncio, gc, json, sys
from aiohttp import web
from server_stub.app import Platform, create_app

async def main() -> None:
    before = [gc.get_threshold(), gc.get_freeze_count()]
    runner = web.AppRunner(create_app(sys.argv[1], platform=Platform(owns_interpreter=True)))
    await runner.setup()  # started: the store open, the keys read
    try:
        print(json.dumps([before, [gc.get_threshold(), gc.get_freeze_count()]]))
    finally:
        await runner.cleanup()

asyncio.run(main())
"""


def test_a_serving_process_settles_its_heap_once_started(tmp_path: Path) -> None:
    root = str(Path(server_stub.__file__).parent.parent)  # this checkout's, not another's
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "s.db")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": root},
    )
    (threshold, frozen), (settled, frozen_after) = json.loads(done.stdout)
    assert frozen == 0
    assert frozen_after > 0
    assert settled == [GEN0_THRESHOLD, *threshold[1:]]
    assert threshold[0] != GEN0_THRESHOLD


async def test_a_platform_in_a_shared_process_leaves_the_collector_alone(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    await aiohttp_client(create_app(tmp_path / "s.db"))  # started
    assert (gc.get_threshold(), gc.get_freeze_count()) == (threshold, frozen)
