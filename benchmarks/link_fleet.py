"""CPU cost of emulated handsets' links, and timing under fleet load.

1. scheduler: N handsets (default 2000), each with its own gprs-typ link on one LinkScheduler
   (one timer), each opening a connection and then sending a 200 B request every 5-15 s
   (seeded); an in-process platform answers each with 500 B. Reports CPU seconds per handset
   per second (time.process_time over the run / (N x wall seconds)), workload included, and
   measured/model for the exchanges (model given the losses each one drew).
2. aiohttp: M handsets (default 200), each with its own aiohttp ClientSession over a
   LinkConnector on the same kind of scheduler, POSTing 200 B for a 1 KB answer to an aiohttp
   server in this process every 5-15 s; the same figures, client and server CPU included, and
   a baseline of the same workload with plain TCPConnectors (no link).

Prints one JSON line per part. Run: .venv/bin/python benchmarks/link_fleet.py [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections.abc import Callable

import aiohttp
from aiohttp import web

from field_lab.link import BUILTIN_PROFILES, DOWN, UP, Arrived, Connection, Established, Event
from field_lab.link.aio import LinkConnector
from field_lab.link.model import expected_transfer_time
from field_lab.link.scheduler import LinkPort, LinkScheduler

PROFILE = BUILTIN_PROFILES["gprs-typ"]
LOSSLESS = PROFILE.replace(loss=None)


def _drawn(port: LinkPort) -> tuple[float, int]:
    """Retransmission delay drawn and radio wake-ups so far: what the model needs given luck."""
    link = port.link
    return link.up.stats.retransmit_delay_s + link.down.stats.retransmit_delay_s, link.radio.wakeups


def _model_given(port: LinkPort, before: tuple[float, int], up: int, down: int) -> float:
    """The lossless model plus the retransmission delay drawn, asleep if the radio woke."""
    delay, wakeups = _drawn(port)
    awake = wakeups == before[1]
    return expected_transfer_time(LOSSLESS, up, down, awake=awake) + delay - before[0]


class Handset:
    """Scheduler part: one handset's request loop driven by link events."""

    def __init__(self, port: LinkPort, rng: random.Random, ratios: list[float]) -> None:
        self.port = port
        self.rng = rng
        self.ratios = ratios
        self.conn: Connection = port.open(self.on_event)
        self.got = {UP: 0, DOWN: 0}
        self.sent_at = 0.0
        self.drawn_at_send = (0.0, 0)
        self.exchanges = 0
        self.stopped = False

    def on_event(self, event: Event) -> None:
        if isinstance(event, Established):
            self.schedule()
        elif isinstance(event, Arrived):
            self.got[event.direction] += len(event.data)
            if event.direction == UP and self.got[UP] == 200:
                self.got[UP] = 0
                self.port.send(self.conn, DOWN, b"a" * 500)  # the platform answers at once
            elif event.direction == DOWN and self.got[DOWN] == 500:
                self.got[DOWN] = 0
                elapsed = self.port.now() - self.sent_at
                model = _model_given(self.port, self.drawn_at_send, 200, 500)
                self.ratios.append(elapsed / model)
                self.exchanges += 1
                self.schedule()

    def schedule(self) -> None:
        if not self.stopped:
            loop = asyncio.get_running_loop()
            loop.call_later(self.rng.uniform(5.0, 15.0), self.request)

    def request(self) -> None:
        if self.stopped or not self.conn.alive:
            return
        self.sent_at = self.port.now()
        self.drawn_at_send = _drawn(self.port)
        self.port.send(self.conn, UP, b"r" * 200)


async def scheduler_fleet(handsets: int, seconds: float) -> dict[str, object]:
    scheduler = LinkScheduler()
    ratios: list[float] = []
    cpu0, wall0 = time.process_time(), time.monotonic()
    fleet = [
        Handset(scheduler.add(PROFILE, seed=i), random.Random(i), ratios) for i in range(handsets)
    ]
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    for handset in fleet:
        handset.stopped = True
    scheduler.close()
    return {
        "bench": "link_fleet",
        "part": "scheduler",
        "profile": PROFILE.name,
        "handsets": handsets,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 3),
        "cpu_s_per_handset_s": cpu / (handsets * wall),
        "exchanges": sum(h.exchanges for h in fleet),
        "polls": scheduler.polls,
        "ratio_given_losses_mean": round(statistics.mean(ratios), 4) if ratios else None,
        "ratio_given_losses_p99": round(sorted(ratios)[int(0.99 * len(ratios))], 4)
        if ratios
        else None,
    }


async def _sync(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=b"k" * 1000)


async def aiohttp_fleet(handsets: int, seconds: float, with_link: bool) -> dict[str, object]:
    app = web.Application()
    app.router.add_post("/sync", _sync)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port_number = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port_number}/sync"
    scheduler = LinkScheduler()
    ratios: list[float] = []
    counts = [0]
    deadline = asyncio.get_running_loop().time() + seconds

    async def handset(i: int) -> None:
        rng = random.Random(i)
        link_port = scheduler.add(PROFILE, seed=i) if with_link else None
        connector: aiohttp.TCPConnector = (
            LinkConnector(link_port) if link_port is not None else aiohttp.TCPConnector()
        )
        now: Callable[[], float] = asyncio.get_running_loop().time
        async with aiohttp.ClientSession(connector=connector) as session:
            first = True
            while True:
                delay = rng.uniform(5.0, 15.0) if not first else rng.uniform(0.0, 5.0)
                if now() + delay >= deadline:
                    break
                await asyncio.sleep(delay)
                before = _drawn(link_port) if link_port is not None else (0.0, 0)
                up0 = link_port.link.up.stats.payload_bytes if link_port else 0
                down0 = link_port.link.down.stats.payload_bytes if link_port else 0
                t0 = now()
                async with session.post(url, data=b"s" * 200) as response:
                    await response.read()
                elapsed = now() - t0
                counts[0] += 1
                if link_port is not None and not first:
                    up = link_port.link.up.stats.payload_bytes - up0
                    down = link_port.link.down.stats.payload_bytes - down0
                    ratios.append(elapsed / _model_given(link_port, before, up, down))
                first = False

    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.gather(*(handset(i) for i in range(handsets)))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    scheduler.close()
    await runner.cleanup()
    return {
        "bench": "link_fleet",
        "part": "aiohttp" if with_link else "aiohttp_baseline_no_link",
        "profile": PROFILE.name if with_link else None,
        "handsets": handsets,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 3),
        "cpu_s_per_handset_s": cpu / (handsets * wall),
        "requests": counts[0],
        "ratio_given_losses_mean": round(statistics.mean(ratios), 4) if ratios else None,
        "ratio_given_losses_max": round(max(ratios), 4) if ratios else None,
    }


async def main(handsets: int, http_handsets: int, seconds: float) -> None:
    print(json.dumps(await scheduler_fleet(handsets, seconds)), flush=True)
    http_seconds = seconds * 2 / 3
    print(json.dumps(await aiohttp_fleet(http_handsets, http_seconds, with_link=True)), flush=True)
    print(json.dumps(await aiohttp_fleet(http_handsets, http_seconds, with_link=False)), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handsets", type=int, default=2000)
    parser.add_argument("--http-handsets", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    asyncio.run(main(args.handsets, args.http_handsets, args.seconds))
