"""A seeded store for the platform's own tests: one plan, agents "ama" and "kofi" with stock
of every keycode format, OpenPAYGO time dividers 1, 2 and 4 among them (what the lab's seeder,
behind `payg_platform`, does not make). A running platform is `payg_platform`."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from agent_client.protocol.keycodes import KeycodeFormat
from field_lab.world import sites
from meter_sim.meter import Meter
from server_stub.keycodes import DeviceSecret
from server_stub.store import DeviceRecord, Store

PRICE_PER_DAY = 100


@dataclass(frozen=True)
class Seeded:
    plan: int
    agents: dict[str, tuple[int, str]]  # name -> (agent id, provisioning code)
    stock: dict[str, list[int]]  # name -> devices
    secrets: dict[int, DeviceSecret]


def secret_for(rng: random.Random, fmt: KeycodeFormat) -> DeviceSecret:
    key = rng.randbytes(16)
    if fmt in (KeycodeFormat.OPENPAYGO, KeycodeFormat.OPENPAYGO_RESTRICTED):
        return DeviceSecret(fmt, key, rng.randrange(10**8, 10**9), rng.choice([1, 2, 4]))
    return DeviceSecret(fmt, key)


def seed_platform(
    path: Path, agents: tuple[str, ...] = ("ama", "kofi"), per_format: int = 3, seed: int = 1
) -> Seeded:
    rng = random.Random(seed)
    store = Store.open(path)
    try:
        plan = store.add_plan("solar-home-10w", PRICE_PER_DAY)
        made: dict[str, tuple[int, str]] = {}
        stock: dict[str, list[int]] = {}
        secrets: dict[int, DeviceSecret] = {}
        serial = 10_000_000
        for name in agents:
            made[name] = store.add_agent(name, code=f"code-{name}-7f3a9c")
            records = []
            for fmt in KeycodeFormat:
                for _ in range(per_format):
                    serial += 1
                    secrets[serial] = secret_for(rng, fmt)
                    records.append(DeviceRecord(serial, secrets[serial]))
            store.add_devices(made[name][0], records)
            stock[name] = [r.device for r in records]
        return Seeded(plan, made, stock, secrets)
    finally:
        store.close()


def meter_for(secret: DeviceSecret) -> Meter:
    """A fresh meter_sim meter holding the same secret (and OpenPAYGO setup) as the platform:
    the lab's one bridge from a secret to a meter, its clock at 0."""
    return sites.meter_for(secret, 0.0)
