"""Shards as Ray async actors (`field-lab run --ray auto|ADDRESS`): one per CPU, spread across
the cluster's nodes. Ray is an optional extra (`pip install 'payg-field-lab[ray]'`).

An actor runs the same shard code as a shard process (`field_lab.lab.shard.serve`) and carries
the same JSON lines: the parent's orders and SMS go into its inbox, its reports and last word
come back in batches from its outbox. So the parent (`field_lab.lab.shards.ShardedLab`) merges
a Ray run exactly as it merges local shards. The fixture travels with the orders (once, through
Ray's object store): a node has none of the head's files.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import socket
import sys
import tempfile
import threading
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from field_lab.errors import ConfigError, HarnessError
from field_lab.lab.launch import INBOX_LIMIT, ShardLink

EXTRA = "pip install 'payg-field-lab[ray]'"
CONNECT_TIMEOUT_S = 60.0
"""Ray retries an unreachable cluster for minutes; the lab says so sooner."""
START_TIMEOUT_S = 180.0
"""Each actor is a fresh worker process importing Ray and the lab: seconds on a busy node."""
PROBE_TIMEOUT_S = 5.0
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
RAY_LOG_LEVEL = "RAY_BACKEND_LOG_LEVEL"
"""Ray's core logs a warning line every few seconds while it retries a cluster."""
RAY_LOCAL_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch for a cluster whose every node is on this machine. Ray rewrites a loopback
address to the machine's own network address before connecting, which a cluster bound to
127.0.0.1 does not listen on; with the switch at 0 it keeps 127.0.0.1."""


def ray_module(address: str) -> Any:
    """Ray, imported for a cluster at `address`; a one-line error naming the extra if absent."""
    host = address.rpartition(":")[0]
    if "ray" not in sys.modules:
        os.environ.setdefault(RAY_LOG_LEVEL, "error")  # the lab says what went wrong, in a line
        if host in LOOPBACK_HOSTS:
            os.environ.setdefault(RAY_LOCAL_ONLY, "0")
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise ConfigError(f"--ray needs Ray, an optional extra: {EXTRA} ({exc})") from exc


def check_address(address: str) -> str:
    """`auto` (the cluster `ray start` left on this machine) or HOST:PORT of its head."""
    host, sep, port = address.rpartition(":")
    if address == "auto" or (sep and host and port.isdigit() and 0 < int(port) < 65_536):
        return address
    raise ConfigError(
        f"--ray {address!r}: expected auto or the head node's HOST:PORT (ray start --head"
        " prints it)"
    )


def probe(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Nothing listening at a named head is the user's to fix, said at once (Ray would retry
    for minutes)."""
    if address == "auto":
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(
            f"--ray {address}: nothing answers there ({exc.strerror or type(exc).__name__});"
            " start the head (ray start --head --port PORT) or check the address"
        ) from exc


def connect(address: str, *, timeout_s: float = CONNECT_TIMEOUT_S) -> RayCluster:
    """Join the Ray cluster at `address` as its driver, or say in one line why not."""
    ray = ray_module(check_address(address))
    if not ray.is_initialized():
        probe(address)
        outcome: list[BaseException | None] = []

        def init() -> None:
            try:
                ray.init(
                    address=address,
                    namespace="field-lab",
                    logging_level=logging.ERROR,  # its warnings are for its own scripts
                    log_to_driver=False,
                )
                outcome.append(None)
            except Exception as exc:  # whatever Ray raises, the message is the user's
                outcome.append(exc)

        # Ray's own connect retries for minutes: a daemon thread lets the lab give up first
        thread = threading.Thread(target=init, name="ray-connect", daemon=True)
        thread.start()
        thread.join(timeout_s)
        if not outcome:
            raise ConfigError(
                f"--ray {address}: no Ray cluster answered within {timeout_s:.0f} s; start one"
                " (ray start --head) or check the address"
            )
        if outcome[0] is not None:
            first = str(outcome[0]).strip().splitlines()[0] if str(outcome[0]).strip() else ""
            raise ConfigError(
                f"--ray {address}: cannot join the Ray cluster ({type(outcome[0]).__name__}:"
                f" {first}); start one with ray start --head, or check the address"
            )
    return RayCluster(ray)


class ShardActor:
    """One shard inside a Ray async actor: an inbox of lines in, an outbox of lines out."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="field-lab-ray-")
        self._inbox: asyncio.StreamReader | None = None
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._task: asyncio.Task[int] | None = None

    async def start(self, orders: dict[str, Any], fixture: str, project: str) -> None:
        """Start the shard on `orders`, with the fixture's text; `project`: the driver's
        working directory, where behaviours named as modules are found (if this node has it)."""
        if project not in sys.path:
            sys.path.insert(0, project)
        path = Path(self._dir.name) / "fixture.json"
        await asyncio.to_thread(path.write_text, fixture)
        self._inbox = asyncio.StreamReader(limit=INBOX_LIMIT)
        self._inbox.feed_data(json.dumps({**orders, "fixture": str(path)}).encode() + b"\n")
        self._task = asyncio.create_task(self._serve(self._inbox))

    async def node(self) -> str:
        """The Ray node this actor runs on."""
        return str(importlib.import_module("ray").get_runtime_context().get_node_id())

    async def _serve(self, inbox: asyncio.StreamReader) -> int:
        from field_lab.lab.shard import serve  # here: the shard imports the command line's

        def send(doc: dict[str, Any]) -> None:
            self._outbox.put_nowait(json.dumps(doc, separators=(",", ":")).encode() + b"\n")

        try:
            return await serve(inbox, send)
        finally:
            self._outbox.put_nowait(b"")  # the end of what this shard says
            self._dir.cleanup()

    async def tell(self, line: bytes) -> None:
        if self._inbox is not None:
            self._inbox.feed_data(line)

    async def lines(self) -> list[bytes]:
        """What the shard said since last asked: at least one line (b"": it has finished)."""
        got = [await self._outbox.get()]
        while got[-1] and not self._outbox.empty():
            got.append(self._outbox.get_nowait())
        return got


class RayShard:
    """A shard on the Ray cluster as the parent sees it."""

    def __init__(self, ray: Any, actor: Any, node: str) -> None:
        self._ray = ray
        self.actor = actor
        self.node = node
        self._pending: deque[bytes] = deque()
        self._why = "ended without its last word"

    def tell(self, line: bytes) -> None:
        self.actor.tell.remote(line)

    async def readline(self) -> bytes:
        if not self._pending:
            try:
                self._pending.extend(await self.actor.lines.remote())
            except self._ray.exceptions.RayError as exc:
                self._why = f"died on Ray node {self.node[:12]}: {_first_line(exc)}"
                return b""
        return self._pending.popleft()

    async def death(self) -> str:
        return self._why


class RayCluster:
    """The launcher for a Ray run: one actor per shard, one CPU each, spread across nodes."""

    def __init__(self, ray: Any, *, start_timeout_s: float = START_TIMEOUT_S) -> None:
        self._ray = ray
        self.start_timeout_s = start_timeout_s
        self.nodes: list[str] = []
        """Where the last run's shards ran (Ray node ids), in shard order."""

    @property
    def host(self) -> str:
        """This (the head) node's address on the cluster: the embedded platform listens there."""
        return str(self._ray.util.get_node_ip_address())

    def cores(self) -> int:
        return int(self._ray.cluster_resources().get("CPU", 0))

    def placed(self) -> str:
        return f"as Ray actors on {len(set(self.nodes))} nodes"

    @asynccontextmanager
    async def started(self, orders: list[dict[str, Any]]) -> AsyncIterator[list[ShardLink]]:
        ray = self._ray
        cores = self.cores()
        if len(orders) > cores:
            raise ConfigError(
                f"--shards {len(orders)} is more than the Ray cluster's {cores} CPUs (one shard"
                " per CPU): run fewer shards, or add nodes (ray start --address HEAD:PORT)"
            )
        fixture = ray.put(await asyncio.to_thread(Path(orders[0]["fixture"]).read_text))
        kind = ray.remote(ShardActor).options(num_cpus=1, scheduling_strategy="SPREAD")
        actors = [kind.remote() for _ in orders]
        try:
            here = os.getcwd()
            starts = [a.start.remote(o, fixture, here) for a, o in zip(actors, orders, strict=True)]
            try:
                async with asyncio.timeout(self.start_timeout_s):
                    await asyncio.gather(*starts)
                    self.nodes = list(await asyncio.gather(*(a.node.remote() for a in actors)))
            except TimeoutError:
                raise HarnessError(
                    f"the Ray cluster did not start {len(orders)} shards within"
                    f" {self.start_timeout_s:.0f} s (ray status shows what holds its CPUs)"
                ) from None
            except ray.exceptions.RayError as exc:
                raise ConfigError(
                    f"a shard could not start on the Ray cluster ({_first_line(exc)}): is"
                    f" payg-field-lab installed on every node? ({EXTRA})"
                ) from exc
            yield [RayShard(ray, a, n) for a, n in zip(actors, self.nodes, strict=True)]
        finally:  # whatever happened, no shard outlives the run
            for actor in actors:
                ray.kill(actor)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


__all__ = ["EXTRA", "RayCluster", "ShardActor", "connect"]
