"""Handsets set up in worker processes, so that set-up's CPU is spread over the machine's cores.

Set-up (each handset's file written, provisioned, its installed base recorded and drained) is
the real `agent_client` code, statement for statement, and most of it is one handset's own
work: `SETUP_WORKERS` processes (`python -m field_lab.world.prepare`) do it in parallel, each
for its share of the handsets, over its own pool of connections to the platform. The lab's
process decides everything that is drawn (the sales, their down payments) before they start,
and opens each handset's prepared file as its worker reports it done: the lab's bookkeeping
(history, claims, the customers typing the installed base's keycodes into their meters) is then
recorded as if the handset had been set up in the lab's own process.

The wire between them is JSON lines: the worker reads its settings and its orders on stdin
(a file the lab wrote, so the lab does its own work while the workers start) and writes a line
per handset set up (`ready`), then its CPU (`end`); any failure is one `error` line carrying the
exception (pickled: `ServerRefused` and the other `AgentError`s reach the lab as they were
raised), and the worker exits 1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import pickle
import resource
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_client.agent import NewSale
from agent_client.protocol.frames import Keycode
from agent_client.protocol.keycodes import KeycodeFormat
from field_lab.errors import HarnessError
from field_lab.lab.collector import setup_collector
from field_lab.link import get_profile
from field_lab.world.fixture import AgentSpec

SETUP_WORKERS = 2
"""Processes that set handsets up beside the lab's (this machine has two cores; the platform
and the lab's own bookkeeping take their share of them)."""
MIN_HANDSETS = 500
"""Fewer handsets are set up in the lab's own process: starting a worker (importing the lab)
costs about a second of CPU, what 150 handsets' set-up costs."""
WORKER = (sys.executable, "-m", __name__)
PIPE_BYTES = 1 << 20
"""A worker's pipe to the lab holds this much (about 4,000 handsets' reports), so that it does
not wait while the lab builds its sites (`prepare`'s `meanwhile`)."""
STDERR_TAIL = 2000
"""Characters of a dead worker's stderr quoted in the lab's error."""


@dataclass(frozen=True)
class Order:
    """Set up handset `index` for `spec`'s agent, and record `sales` on it (then drain it)."""

    index: int
    spec: AgentSpec
    profile: str
    sales: tuple[NewSale, ...]

    def line(self) -> bytes:
        s = self.spec
        sales = [[n.name, n.phone, n.device, n.plan, n.down_payment] for n in self.sales]
        doc = [self.index, s.name, s.code, list(s.devices), s.distributor, s.plan]
        return json.dumps([*doc, self.profile, sales]).encode() + b"\n"

    @classmethod
    def of(cls, line: bytes) -> Order:
        index, name, code, devices, distributor, plan, profile, sales = json.loads(line)
        spec = AgentSpec(name, code, tuple(devices), distributor, plan)
        return cls(index, spec, profile, tuple(NewSale(*sale) for sale in sales))


@dataclass(frozen=True)
class Prepared:
    """What set-up did on handset `index`: the (customer, sale) seqs of its sales, the keycodes
    its syncs brought, and its counters (syncs, refused, finished: `Handset`'s)."""

    index: int
    made: list[tuple[int, int]]
    keycodes: list[Keycode]
    counters: tuple[int, int, int]

    def line(self) -> bytes:
        codes = [[k.op_seq, k.device, int(k.format), k.number, k.credit_s] for k in self.keycodes]
        doc = [self.index, self.made, codes, *self.counters]
        return json.dumps({"t": "ready", "h": doc}).encode() + b"\n"

    @classmethod
    def of(cls, doc: list[Any]) -> Prepared:
        index, made, codes, syncs, refused, finished = doc
        keycodes = [Keycode(s, d, KeycodeFormat(f), n, c) for s, d, f, n, c in codes]
        return cls(index, [(c, s) for c, s in made], keycodes, (syncs, refused, finished))


@dataclass(frozen=True)
class Settings:
    """What every worker is told before its orders."""

    url: str
    adapter: str
    workdir: Path
    concurrency: int

    def line(self) -> bytes:
        doc = [self.url, self.adapter, str(self.workdir), self.concurrency]
        return json.dumps(doc).encode() + b"\n"

    @classmethod
    def of(cls, line: bytes) -> Settings:
        url, adapter, workdir, concurrency = json.loads(line)
        return cls(url, adapter, Path(workdir), concurrency)


def workers_for(handsets: int, shards: int) -> int:
    """Set-up workers for a lab of `handsets` that is one of `shards` (shards spread their
    own set-up over the cores already)."""
    return SETUP_WORKERS if shards == 1 and handsets >= MIN_HANDSETS else 0


async def prepare(
    settings: Settings,
    orders: Sequence[Order],
    workers: int,
    ready: Callable[[Prepared], Awaitable[None]],
    command: Sequence[str] = WORKER,
    meanwhile: Callable[[], None] | None = None,
) -> float:
    """Set up every handset of `orders` in `workers` processes (order i in worker i mod
    `workers`), awaiting `ready` for each as its worker reports it; returns the workers' CPU
    seconds. The first failure stops every worker and is raised here. `command`: what a
    worker runs (this module's `main`); `meanwhile`: the lab's own work, done once the
    workers are started (they read their orders from a file, not from this process, and have
    room in their pipes for what they report before it is read)."""
    procs: list[asyncio.subprocess.Process] = []
    tasks: list[asyncio.Future[float]] = []
    try:
        for part in [orders[i::workers] for i in range(workers)]:
            with tempfile.TemporaryFile(dir=settings.workdir) as feed:  # gone once read
                feed.writelines([settings.line(), *(o.line() for o in part)])
                feed.seek(0)
                procs.append(
                    await asyncio.create_subprocess_exec(
                        *command,
                        stdin=feed,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.PIPE,
                    )
                )
        if meanwhile is not None:
            meanwhile()
        tasks = [asyncio.ensure_future(_follow(proc, ready)) for proc in procs]
        return sum(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def _follow(
    proc: asyncio.subprocess.Process, ready: Callable[[Prepared], Awaitable[None]]
) -> float:
    """Hand on what one worker reports; its CPU seconds at the end."""
    stdout, stderr = proc.stdout, proc.stderr
    assert stdout is not None
    assert stderr is not None
    complaint = asyncio.ensure_future(stderr.read())
    try:
        async for line in stdout:
            doc = json.loads(line)
            if doc["t"] == "ready":
                await ready(Prepared.of(doc["h"]))
            elif doc["t"] == "end":
                return float(doc["cpu_s"])
            else:  # an error: the worker's own exception, raised as it was raised there
                raise pickle.loads(base64.b64decode(doc["exc"]))
        code = await proc.wait()
        said = (await complaint).decode(errors="replace")[-STDERR_TAIL:]
        raise HarnessError(f"a set-up worker exited with {code} before it was done: {said}")
    finally:
        complaint.cancel()
        await asyncio.gather(complaint, return_exceptions=True)


# -- the worker --------------------------------------------------------------------------------


async def serve(settings: Settings, orders: list[Order], write: Callable[[bytes], None]) -> None:
    """Set up each of `orders`, `settings.concurrency` at a time; a line for each when done."""
    from field_lab.world.adapters import platform_adapter
    from field_lab.world.fleet import Fleet
    from field_lab.world.handset import Handset

    fleet = Fleet(settings.workdir, platform_adapter(settings.adapter), settings.concurrency)
    pool = fleet.pool(settings.url)
    image = (settings.workdir / "handset-template.db").read_bytes()
    heard: dict[int, list[Keycode]] = {}

    def on_keycodes(handset: Handset, keycodes: list[Keycode]) -> None:
        heard.setdefault(handset.index, []).extend(keycodes)

    async def one(order: Order) -> None:
        profile = get_profile(order.profile)
        handset = await fleet.provision_one(
            order.index, order.spec, profile, pool, image, on_keycodes
        )
        try:
            made = await handset.agent.sell_to_new_customers(order.sales)
            await fleet.drain_one(handset)
        finally:
            await handset.close()  # the lab's process opens it next
        keycodes = heard.pop(order.index, [])
        counters = (handset.syncs, handset.refused, handset.finished)
        done = Prepared(order.index, made, keycodes, counters)
        write(done.line())

    try:
        await asyncio.gather(*(one(order) for order in orders))
    finally:
        await fleet.close()


def main() -> int:
    lines = sys.stdin.buffer.read().splitlines()
    out = sys.stdout.buffer
    with contextlib.suppress(AttributeError, OSError):  # Linux; elsewhere the pipe as it is
        fcntl.fcntl(out.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)

    def write(line: bytes) -> None:
        out.write(line)
        out.flush()

    try:
        settings = Settings.of(lines[0])
        with setup_collector():  # as set-up in the lab's process: almost nothing is in a cycle
            asyncio.run(serve(settings, [Order.of(line) for line in lines[1:]], write))
    except BaseException as exc:  # the lab raises it: its type says whose fault it is
        try:
            blob = pickle.dumps(exc)
        except Exception:  # an exception that does not pickle is reported by its text
            blob = pickle.dumps(HarnessError(f"a set-up worker failed: {exc!r}"))
        write(json.dumps({"t": "error", "exc": base64.b64encode(blob).decode()}).encode() + b"\n")
        return 1
    usage = resource.getrusage(resource.RUSAGE_SELF)
    write(json.dumps({"t": "end", "cpu_s": usage.ru_utime + usage.ru_stime}).encode() + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
