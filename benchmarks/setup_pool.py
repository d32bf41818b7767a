"""Set-up's shared connections, aiohttp's pool against agent_client's: CPU on each side.

Seeds a platform for 2 x N agents, starts `server-stub serve` in its own process, then
provisions N fresh handsets and makes each one's first sync (the real `Agent`, its store as
the lab keeps it) over each pool in turn, 64 at a time: an aiohttp session (`HttpTransport`
on `client_session`) and the lab's `SetupPool` (`Http1Transport` connections). Prints one JSON
line per pool: the lab's CPU, the platform's CPU and its threads' context switches. `--order`
picks which pool goes first (the second finds the platform warm and more handsets in it).

    python benchmarks/setup_pool.py [--handsets 1000] [--order aiohttp,http1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import aiohttp

from agent_client.agent import Agent
from agent_client.transport import HttpTransport, Transport, client_session
from field_lab.scenario import DEFAULT
from field_lab.world.fixture import Fixture, Stocking, seed
from field_lab.world.handset import STORAGE
from field_lab.world.pool import SetupPool

sys.path.insert(0, str(Path(__file__).parent))
from lab_scale import platform, process_cpu_seconds

POOL = 64


def context_switches(pid: int) -> int:
    """Voluntary and involuntary switches of every thread of `pid` so far."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as status:
            total += sum(int(line.split()[1]) for line in status if "ctxt_switches" in line)
    return total


async def provision_all(
    kind: str, url: str, fixture: Fixture, workdir: Path, pid: int
) -> dict[str, object]:
    session: aiohttp.ClientSession | None = None
    pool: SetupPool | None = None
    transport: Callable[[], Transport]
    if kind == "aiohttp":
        session = client_session(aiohttp.TCPConnector(limit=POOL))
        transport = lambda: HttpTransport(url, session=session)  # noqa: E731
    else:
        pool = SetupPool(url, POOL)
        transport = pool.transport
    gate = asyncio.Semaphore(POOL)

    async def one(index: int) -> None:
        spec = fixture.agents[index]
        async with gate:
            agent = await Agent.provision(
                workdir / f"{kind}-{index:05d}.db",
                url,
                spec.name,
                spec.code,
                transport=transport(),
                storage=STORAGE,
            )
            try:
                await agent.sync()
            finally:
                await agent.close()

    switches, platform_cpu = context_switches(pid), process_cpu_seconds(pid)
    lab_cpu = time.process_time()
    await asyncio.gather(*(one(i) for i in range(len(fixture.agents))))
    figures = {
        "pool": kind,
        "handsets": len(fixture.agents),
        "lab_cpu_s": round(time.process_time() - lab_cpu, 2),
        "platform_cpu_s": round(process_cpu_seconds(pid) - platform_cpu, 2),
        "platform_context_switches": context_switches(pid) - switches,
        "load_average": os.getloadavg()[0],
    }
    if session is not None:
        await session.close()
    if pool is not None:
        await pool.close()
    return figures


async def main(handsets: int, order: list[str]) -> None:
    scenario = DEFAULT.with_overrides(
        agents=2 * handsets, devices=20 * handsets, duration_s=5, seed=7
    )
    with tempfile.TemporaryDirectory(prefix="setup-pool-") as tmp:
        workdir = Path(tmp)
        fixture = seed(workdir / "server.db", Stocking.of(scenario))
        halves = [fixture.agents[:handsets], fixture.agents[handsets:]]
        with platform(workdir / "server.db", os.urandom(16).hex().encode(), "token") as (url, pid):
            for kind, agents in zip(order, halves, strict=True):
                part = replace(fixture, agents=agents)
                print(json.dumps(await provision_all(kind, url, part, workdir, pid)), flush=True)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handsets", type=int, default=1000)
    parser.add_argument("--order", default="aiohttp,http1")
    args = parser.parse_args()
    order = args.order.split(",")
    if sorted(order) != ["aiohttp", "http1"]:
        parser.error("--order names both pools once: aiohttp,http1 or http1,aiohttp")
    asyncio.run(main(args.handsets, order))


if __name__ == "__main__":
    cli()
