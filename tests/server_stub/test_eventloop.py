"""The platform's loop: uvloop when installed (the `fast` extra), asyncio's own otherwise."""

from __future__ import annotations

import asyncio
import importlib.util

from server_stub import eventloop


async def loop_kind() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_run_returns_the_result_on_uvloop_when_installed() -> None:
    expected = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert eventloop.run(loop_kind()) == expected
