"""The event loop the platform serves on: uvloop when it is installed (the `fast` extra), else
asyncio's own.

At a thousand small exchanges a second the platform's event loop thread spends a large share
of its CPU in the loop itself (selector, handles, transports); uvloop does that work in C
(measured in `benchmarks/server_load.py`: about 15 % less CPU on the event loop thread per
exchange). Nothing else changes: the app is the same aiohttp application either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on `new_loop()`."""
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(main)
