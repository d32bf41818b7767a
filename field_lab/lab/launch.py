"""Where a sharded run's shards run: the seam between the parent (`field_lab.lab.shards`) and
whatever starts the shards. Local processes here; Ray actors on many machines in
`field_lab.lab.ray_launch`. Either way a shard speaks the same JSON lines (`field_lab.lab.shard`):
its orders and SMS in, its reports and last word out, so the parent merges them one way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

from field_lab.net import LOOPBACK

PIPE_LIMIT = 1 << 30
"""A shard's last line carries its whole evidence."""
STDERR_TAIL = 2000
INBOX_LIMIT = 1 << 24
"""What a shard reads: its orders (the scenario) on one line, then short SMS lines."""


class ShardLink(Protocol):
    """One running shard as the parent sees it."""

    def tell(self, line: bytes) -> None:
        """Send the shard a line (an SMS); dropped once the shard has gone."""

    async def readline(self) -> bytes:
        """The shard's next line; b"" once it has said all it ever will."""

    async def death(self) -> str:
        """Why the shard ended without its last word (after `readline` gave b"")."""


class Launcher(Protocol):
    """Starts a run's shards and stops them, whatever happens, when the run ends."""

    @property
    def host(self) -> str:
        """Where the embedded platform listens so that every shard reaches it."""

    def cores(self) -> int:
        """How many shards run at once without sharing a core (the default shard count)."""

    def started(self, orders: list[dict[str, Any]]) -> AbstractAsyncContextManager[list[ShardLink]]:
        """One shard per orders (their `fixture` a file on this machine), started; on exit
        none is left running."""

    def placed(self) -> str:
        """Where the last run's shards ran, for the user."""


class ProcessShard:
    """A shard in a child process on this machine: lines over its stdin and stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    def tell(self, line: bytes) -> None:
        stdin = self.proc.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.write(line)

    async def readline(self) -> bytes:
        assert self.proc.stdout is not None
        return await self.proc.stdout.readline()

    async def death(self) -> str:
        assert self.proc.stderr is not None
        code = await self.proc.wait()
        tail = (await self.proc.stderr.read())[-STDERR_TAIL:].decode(errors="replace").strip()
        last = tail.splitlines()[-1] if tail else "no message"
        return f"died (exit {code}): {last}"


class Processes:
    """Shards as `python -m <module>` processes on this machine (`field_lab.lab.shard` for
    `run`; `field_lab.simulate.shard` for `simulate`)."""

    host = LOOPBACK

    def __init__(self, module: str = "field_lab.lab.shard", *, own_session: bool = False) -> None:
        """`own_session`: each shard in a session of its own. Where Linux shares the CPU by
        session (autogroup), shards in the parent's session split one session's share of a
        busy machine; in their own sessions each gets a session's share."""
        self.module = module
        self.own_session = own_session

    def cores(self) -> int:
        return os.cpu_count() or 1

    def placed(self) -> str:
        return "in processes on this machine"

    @asynccontextmanager
    async def started(self, orders: list[dict[str, Any]]) -> AsyncIterator[list[ShardLink]]:
        procs: list[asyncio.subprocess.Process] = []
        try:
            for order in orders:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    self.module,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    limit=PIPE_LIMIT,
                    start_new_session=self.own_session,
                )
                procs.append(proc)
                assert proc.stdin is not None
                proc.stdin.write(json.dumps(order).encode() + b"\n")
            yield [ProcessShard(proc) for proc in procs]
        finally:  # whatever happened, no shard outlives the run
            for proc in procs:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            for proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    await proc.wait()


__all__ = ["Launcher", "Processes", "ShardLink"]
