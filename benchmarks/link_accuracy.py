"""Measured/model ratios through the real TCP proxy on loopback, per profile.

For each profile (outages off: the model has none) and each of SEEDS seeds, one LinkProxy with
one client connection runs, in order: a cold exchange (connect, 16 B request, 1 KB response,
radio asleep), then warm request/response exchanges of 200 B up and 1 KB, 10 KB, 100 KB down.
Every warm exchange also yields a one-way transfer: from the server's first write to the
client's last byte. Ratios are against `field_lab.link.model` (the formula the lab uses):

- ratio: mean measured / expected_transfer_time (or one_way_time), loss drawn as it fell;
- ratio_given_losses: measured / (lossless model + the retransmission delay the link actually
  drew in that operation), which isolates the proxy's timing from the luck of the loss draw;
- virtual_ratio: mean over VIRTUAL_SEEDS seeds of the same exchange run by the same core in
  virtual time, / the model: whether the loss model's mean lands on the formula. Loss is bursty
  and rare, so a handful of real runs cannot show that; this and ratio_given_losses together do.

All runs go concurrently (they are wall-clock bound, not CPU bound). Prints one JSON line per
(profile, operation, size). Run: .venv/bin/python benchmarks/link_accuracy.py [--seeds N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass

from field_lab.link import BUILTIN_PROFILES, Profile
from field_lab.link.model import expected_transfer_time, floor_seconds, one_way_time
from field_lab.link.proxy import LinkProxy
from field_lab.link.virtual import exchange_time

PROFILES = ("gprs-typ", "gprs-bad", "edge-typ", "3g")
REQUEST = 200
SIZES = (1_000, 10_000, 100_000)
HEADER = 8  # our tiny protocol: 4 bytes request body length, 4 bytes response length
VIRTUAL_SEEDS = 300


@dataclass
class Sample:
    profile: str
    operation: str
    size: int
    measured: float
    model: float
    model_given_losses: float
    floor: float


class Upstream:
    """Server for one connection: answers each request with the asked-for bytes and notes when
    it started writing the answer (the start of the one-way transfer)."""

    def __init__(self) -> None:
        self.write_started = 0.0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while header := await reader.readexactly(HEADER):
                body, answer = int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")
                await reader.readexactly(body)
                self.write_started = time.monotonic()
                writer.write(b"d" * answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


def _retransmit_delay(proxy: LinkProxy) -> float:
    link = proxy.port.link
    return link.up.stats.retransmit_delay_s + link.down.stats.retransmit_delay_s


async def run_seed(profile: Profile, seed: int, upstream: Upstream, port: int) -> list[Sample]:
    proxy = LinkProxy(profile, ("127.0.0.1", port), seed=seed)
    host, listen = await proxy.start("127.0.0.1", 0)
    lossless = profile.replace(loss=None)
    samples: list[Sample] = []
    try:
        start = time.monotonic()
        reader, writer = await asyncio.open_connection(host, listen)
        writer.write((16 - HEADER).to_bytes(4, "big") + (1000).to_bytes(4, "big") + bytes(8))
        await reader.readexactly(1000)
        cold = time.monotonic() - start
        samples.append(
            Sample(
                profile.name, "cold_exchange", 1000, cold,
                expected_transfer_time(profile, 16, 1000, warm=False, awake=False),
                expected_transfer_time(lossless, 16, 1000, warm=False, awake=False)
                + _retransmit_delay(proxy),
                floor_seconds(profile, 16, 1000, warm=False),
            )
        )  # fmt: skip
        for size in SIZES:
            await asyncio.sleep(0.2)
            before = _retransmit_delay(proxy)
            up_before = proxy.port.link.up.stats.retransmit_delay_s
            t0 = time.monotonic()
            writer.write((REQUEST - HEADER).to_bytes(4, "big") + size.to_bytes(4, "big"))
            writer.write(b"u" * (REQUEST - HEADER))
            await reader.readexactly(size)
            t1 = time.monotonic()
            drawn = _retransmit_delay(proxy) - before
            drawn_down = drawn - (proxy.port.link.up.stats.retransmit_delay_s - up_before)
            samples.append(
                Sample(
                    profile.name, "exchange", size, t1 - t0,
                    expected_transfer_time(profile, REQUEST, size),
                    expected_transfer_time(lossless, REQUEST, size) + drawn,
                    floor_seconds(profile, REQUEST, size),
                )
            )  # fmt: skip
            samples.append(
                Sample(
                    profile.name, "transfer_down", size, t1 - upstream.write_started,
                    one_way_time(profile, "down", size),
                    one_way_time(lossless, "down", size) + drawn_down,
                    profile.rtt_s / 2 + size * 8 / profile.down_bps,
                )
            )  # fmt: skip
        writer.close()
    finally:
        await proxy.aclose()
    return samples


def _virtual_ratio(name: str, operation: str, size: int) -> float | None:
    """Many-seed virtual-time mean / model for the same operation (None for one-way rows)."""
    profile = BUILTIN_PROFILES[name].replace(outages=None)
    if operation == "exchange":
        runs = [exchange_time(profile, REQUEST, size, seed=s) for s in range(VIRTUAL_SEEDS)]
        return round(statistics.mean(runs) / expected_transfer_time(profile, REQUEST, size), 4)
    if operation == "cold_exchange":
        runs = [
            exchange_time(profile, 16, size, seed=s, warm=False, awake=False)
            for s in range(VIRTUAL_SEEDS)
        ]
        model = expected_transfer_time(profile, 16, size, warm=False, awake=False)
        return round(statistics.mean(runs) / model, 4)
    return None


async def main(seeds: int) -> None:
    cpu0, wall0 = time.process_time(), time.monotonic()
    jobs = []
    for name in PROFILES:
        profile = BUILTIN_PROFILES[name].replace(outages=None)
        for seed in range(seeds):
            own = Upstream()
            srv = await asyncio.start_server(own.handle, "127.0.0.1", 0)
            jobs.append((run_seed(profile, seed, own, srv.sockets[0].getsockname()[1]), srv))
    results = await asyncio.gather(*(job for job, _ in jobs))
    for _, srv in jobs:
        srv.close()
        await srv.wait_closed()
    await asyncio.sleep(0.1)  # let the upstream handlers see their sockets close
    by_key: dict[tuple[str, str, int], list[Sample]] = defaultdict(list)
    for sample in (s for seed_samples in results for s in seed_samples):
        by_key[(sample.profile, sample.operation, sample.size)].append(sample)
    for (name, operation, size), group in by_key.items():
        ratios = [s.measured / s.model for s in group]
        given = [s.measured / s.model_given_losses for s in group]
        virtual = _virtual_ratio(name, operation, size)
        print(
            json.dumps(
                {
                    "bench": "link_accuracy",
                    "profile": name,
                    "operation": operation,
                    "bytes": size,
                    "seeds": len(group),
                    "measured_mean_s": round(statistics.mean(s.measured for s in group), 4),
                    "model_s": round(group[0].model, 4),
                    "floor_s": round(group[0].floor, 4),
                    "ratio": round(statistics.mean(s.measured for s in group) / group[0].model, 4),
                    "ratio_given_losses": round(statistics.mean(given), 4),
                    "ratio_given_losses_min": round(min(given), 4),
                    "ratio_given_losses_max": round(max(given), 4),
                    "ratio_per_run_max": round(max(ratios), 4),
                    "virtual_ratio": virtual,
                    "within_10pct": abs(statistics.mean(given) - 1.0) <= 0.10
                    and (virtual is None or abs(virtual - 1.0) <= 0.10),
                }
            )
        )
    print(
        json.dumps(
            {
                "bench": "link_accuracy",
                "summary": True,
                "wall_s": round(time.monotonic() - wall0, 1),
                "cpu_s": round(time.process_time() - cpu0, 2),
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    asyncio.run(main(parser.parse_args().seeds))
