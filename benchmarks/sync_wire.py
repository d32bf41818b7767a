"""Bytes, round trips and seconds on the wire: the compact sync client vs a naive REST client.

Both clients sync the same workload (customers registered, devices sold, payments collected:
1 register, 1 sale, 3 payments per customer) of 1, 20 and 200 queued operations against one
in-process server-stub, over an emulated clean GPRS link (field_lab.link: gprs-typ with jitter,
loss and wake-up off) and then a counting TCP proxy on 127.0.0.1 that sees every byte of the
HTTP exchanges (request lines, headers, bodies; not TCP/IP headers). Connections are warm for
both (provisioning, the sync key and the first stock download happen before counting starts).

    compact  agent_client.Agent.sync(): sync v2, msgpack frames in a MAC'd envelope, sized by
             what the measured link moves in a few seconds, one POST per batch
    naive    one JSON POST per operation with named fields (aiohttp defaults, as common REST
             clients do), Ed25519 request signing in headers, keycodes in each JSON answer

`seconds` is the sync's wall time through the link; `floor_s` the physical floor of one
exchange of those bytes on that link (field_lab.link.floor_seconds: RTT + bytes/rate each way,
warm); `floor_ratio` their quotient. Prints one JSON object per line:
    {"client": ..., "ops": N, "bytes_up": B, "bytes_down": B, "round_trips": R, "bytes_per_op": X,
     "seconds": S, "floor_s": F, "floor_ratio": Q}
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
from aiohttp import web

from agent_client.agent import Agent
from agent_client.protocol.auth import HandsetKey
from agent_client.protocol.keycodes import KeycodeFormat
from agent_client.protocol.ops import SCHEMAS, Kind
from field_lab.link import LinkProxy, floor_seconds, get_profile
from server_stub.app import OPS_PATH, STATS, create_app
from server_stub.devices import make_devices
from server_stub.store import Store

SIZES = (1, 20, 200)
PRICE = 100
SEED = 7
CLEAN_GPRS = replace(
    get_profile("gprs-typ"), name="gprs-clean", jitter_s=0.0, loss=None, wakeup_s=0.0
)


@dataclass
class Meter:
    up: int = 0
    down: int = 0


async def pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, meter: Meter, up: bool
) -> None:
    try:
        while data := await reader.read(65536):
            if up:
                meter.up += len(data)
            else:
                meter.down += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def start_proxy(target_port: int, meter: Meter) -> asyncio.Server:
    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        s_reader, s_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(
            pump(c_reader, s_writer, meter, True), pump(s_reader, c_writer, meter, False)
        )

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def workload(n: int, devices: list[int], plan: int) -> list[tuple[Kind, tuple[object, ...]]]:
    """n operations: per customer register, sale (7 days), three payments (1-5 days)."""
    rng = random.Random(SEED)
    ops: list[tuple[Kind, tuple[object, ...]]] = []
    customer = device = 0
    while len(ops) < n:
        step = len(ops) % 5
        if step == 0:
            customer = len(ops) + 1
            ops.append(
                (
                    Kind.REGISTER_CUSTOMER,
                    (f"Customer {customer}", f"+2332{rng.randrange(10**8):08d}"),
                )
            )
        elif step == 1:
            device = devices[len(ops) // 5]
            ops.append((Kind.RECORD_SALE, (customer, device, plan, 7 * PRICE)))
        else:
            ops.append((Kind.RECORD_PAYMENT, (device, rng.randint(1, 5) * PRICE)))
    return ops


def seed(db: Path) -> tuple[int, dict[str, list[int]]]:
    store = Store.open(db)
    plan = store.add_plan("solar-home-10w", PRICE)
    rng = random.Random(SEED)
    stock: dict[str, list[int]] = {}
    serial = 20_000_000
    for client in ("compact", "naive"):
        for n in SIZES:
            name = f"{client}-{n}"
            agent, _ = store.add_agent(name, code=f"{name}-Bench-1")
            count = max(1, n // 5 + 1)
            records = []
            for i in range(count):
                fmt = list(KeycodeFormat)[i % len(KeycodeFormat)]
                records += make_devices(serial, 1, fmt, rng)
                serial += 1
            store.add_devices(agent, records)
            stock[name] = [r.device for r in records]
    store.close()
    return plan, stock


async def compact(
    url: str,
    db: Path,
    name: str,
    ops: list[tuple[Kind, tuple[object, ...]]],
    meter: Meter,
    app: web.Application,
) -> dict[str, object]:
    agent = await Agent.provision(db, url, name, f"{name}-Bench-1")
    await agent.sync()  # stock and catalog: setup, not counted
    record = {
        Kind.REGISTER_CUSTOMER: agent.register_customer,
        Kind.RECORD_SALE: agent.record_sale,
        Kind.RECORD_PAYMENT: agent.record_payment,
    }
    for kind, fields in ops:
        await record[kind](*fields)  # type: ignore[operator]
    start_requests, meter.up, meter.down = app[STATS]["requests"], 0, 0
    began = time.perf_counter()
    report = await agent.sync()
    seconds = time.perf_counter() - began
    if report.pending or len(report.acked) != len(ops):
        raise RuntimeError(f"compact sync did not settle: {report}")
    trips = app[STATS]["requests"] - start_requests
    result = summary("compact", len(ops), meter, trips, seconds)
    await agent.close()
    return result


async def naive(
    url: str,
    name: str,
    ops: list[tuple[Kind, tuple[object, ...]]],
    meter: Meter,
    app: web.Application,
) -> dict[str, object]:
    key = HandsetKey.generate()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        doc = {"agent": name, "code": f"{name}-Bench-1", "public_key": key.public.hex()}
        async with session.post(url + "/v1/provision", json=doc) as response:
            handset = (await response.json())["handset"]
        start_requests, meter.up, meter.down = app[STATS]["requests"], 0, 0
        began = time.perf_counter()
        ts = int(time.time() * 1000)
        for seq, (kind, fields) in enumerate(ops, start=1):
            named = {f.name: v for f, v in zip(SCHEMAS[kind], fields, strict=True)}
            op = {
                "seq": seq,
                "type": kind.name.lower(),
                "recorded_at": int(time.time()),
                "fields": named,
            }
            body = json.dumps(op).encode()
            ts += 1
            headers = {
                "Content-Type": "application/json",
                **key.headers("POST", OPS_PATH, body, handset, ts),
            }
            async with session.post(url + OPS_PATH, data=body, headers=headers) as response:
                answer = await response.json()
                if response.status != 200:
                    raise RuntimeError(f"naive op {seq} refused: {answer}")
        seconds = time.perf_counter() - began
        trips = app[STATS]["requests"] - start_requests
        return summary("naive", len(ops), meter, trips, seconds)


def summary(
    client: str, n: int, meter: Meter, round_trips: int, seconds: float
) -> dict[str, object]:
    floor = floor_seconds(CLEAN_GPRS, meter.up, meter.down, warm=True)
    return {
        "client": client,
        "ops": n,
        "bytes_up": meter.up,
        "bytes_down": meter.down,
        "round_trips": round_trips,
        "bytes_per_op": round((meter.up + meter.down) / n, 1),
        "seconds": round(seconds, 3),
        "floor_s": round(floor, 3),
        "floor_ratio": round(seconds / floor, 3),
    }


async def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        plan, stock = seed(base / "server.db")
        app = create_app(base / "server.db")
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        meter = Meter()
        proxy = await start_proxy(port, meter)
        link = LinkProxy(CLEAN_GPRS, ("127.0.0.1", proxy.sockets[0].getsockname()[1]), seed=SEED)
        host, link_port = await link.start()
        url = f"http://{host}:{link_port}"
        try:
            for n in SIZES:
                name = f"compact-{n}"
                line = await compact(
                    url, base / f"{name}.db", name, workload(n, stock[name], plan), meter, app
                )
                print(json.dumps(line), flush=True)
                name = f"naive-{n}"
                line = await naive(url, name, workload(n, stock[name], plan), meter, app)
                print(json.dumps(line), flush=True)
        finally:
            await link.aclose()
            proxy.close()
            await runner.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
