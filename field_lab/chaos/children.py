"""The lab's own CLIs as child processes that start in milliseconds, for the crash harness.

A kill trial needs `server-stub serve` or `agent-client sync` running as a process of its own
that a SIGKILL ends. Started through their console scripts, each one pays a fresh interpreter
and the aiohttp import (about a second here) before it does anything, and a thousand kill
trials pay it a thousand times. A forkserver that has imported both CLIs once forks each child
from that warm state instead: the same `main(argv)` the console script calls, its own pid and
address space, killed the same way, started in a few milliseconds.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
from collections.abc import Mapping
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess

from . import ChaosError

PROGRAMS = {"server-stub": "server_stub.cli", "agent-client": "agent_client.cli"}
"""Console script name -> the module whose `main(argv)` it runs (pyproject's scripts)."""

_context: ForkServerContext | None = None


def _warm() -> ForkServerContext:
    global _context
    if _context is None:
        context = multiprocessing.get_context("forkserver")
        assert isinstance(context, ForkServerContext)
        context.set_forkserver_preload(_preload())
        _context = context
    return _context


def _preload() -> list[str]:
    """What the server imports once: both CLIs, and every module of ours the parent has. A
    child re-runs the parent's main module before its target; with its imports warm that
    costs nothing (the main module itself is left out: runpy warns when it is re-run over an
    imported copy)."""
    main = getattr(sys.modules["__main__"].__spec__, "name", None)
    ours = ("agent_client", "field_lab", "meter_sim", "server_stub")
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in ours and name != main)
    return [__name__, *PROGRAMS.values(), *loaded]


def _run(module: str, argv: list[str], env: dict[str, str]) -> None:
    """In the child: the environment the console script would get, no output, then main()."""
    import importlib

    os.environ.clear()
    os.environ.update(env)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    sys.exit(importlib.import_module(module).main(argv))


class Child:
    """A started CLI: the few things the harness asks of `asyncio.subprocess.Process`."""

    def __init__(self, process: BaseProcess) -> None:
        self._process = process

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """None while it runs; the exit status, or -signal when a signal ended it."""
        return self._process.exitcode

    def kill(self) -> None:
        self._process.kill()

    def terminate(self) -> None:
        self._process.terminate()

    async def wait(self, timeout_s: float = 60.0) -> int:
        """Wait (bounded) for it to end, without blocking the event loop."""
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()
        sentinel = self._process.sentinel

        def ready() -> None:
            if not ended.done():
                ended.set_result(None)

        loop.add_reader(sentinel, ready)
        try:
            if self._process.exitcode is None:
                async with asyncio.timeout(timeout_s):
                    await ended
        except TimeoutError:
            raise ChaosError(f"child {self.pid} did not end within {timeout_s} s") from None
        finally:
            loop.remove_reader(sentinel)
        self._process.join()
        code = self._process.exitcode
        assert code is not None
        return code


def spawn(program: str, args: list[str], env: Mapping[str, str] | None = None) -> Child:
    """Start `program` (a console script of ours, by name) with `args`."""
    if program not in PROGRAMS:
        raise ChaosError(f"{program} is not one of the lab's CLIs ({', '.join(PROGRAMS)})")
    environment = dict(os.environ if env is None else env)
    process = _warm().Process(
        target=_run, args=(PROGRAMS[program], list(args), environment), daemon=True
    )
    process.start()
    return Child(process)
