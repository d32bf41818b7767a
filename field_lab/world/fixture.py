"""What the lab needs to know about a platform: agents, their codes, devices and secrets, and
the one seeder that creates them in a `server_stub` database.

An embedded run seeds a fresh database and builds the fixture from it; a run against another
platform (`--target`) reads the same fixture from a JSON file, which `field-lab seed` writes
for a server-stub database. The fault harness seeds through the same function.

Agents work for distributors (the platform's tenants): each distributor has its own plan and
report token, and the lab's report readers read as one distributor each, so question 3 is
answered per distributor. A fixture without distributors (an older file, or a platform that
has none) reads reports with the token given on the command line, if any.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent_client.protocol.keycodes import KeycodeFormat
from field_lab.errors import ConfigError
from field_lab.protocols import FORMATS, NAMES, format_named
from field_lab.scenario import Scenario
from server_stub.errors import SetupError
from server_stub.keycodes import DeviceSecret
from server_stub.store import DeviceRecord, Store

PRICE_PER_DAY = 500
FIRST_SERIAL = 20_000_001
PLAN_NAME = "solar-home"
SEED_GROUP = 500
"""Agents (with their devices) seeded per commit."""


class FixtureError(ConfigError):
    """The fixture file is unreadable or inconsistent (the file's fault)."""


@dataclass(frozen=True)
class AgentSpec:
    name: str
    code: str
    devices: tuple[int, ...]
    distributor: str | None = None
    """Who the agent works for; None: the fixture does not say (one tenant)."""
    plan: int | None = None
    """The plan its sales use (its distributor's); None: the fixture's `plan`."""


@dataclass(frozen=True)
class DistributorSpec:
    name: str
    token: str
    """Its report API token (a secret, like the agents' codes in the same file)."""


Reader = tuple[str | None, str | None]
"""Which distributor a report reader reads as (None: unnamed), and the token it sends."""


@dataclass(frozen=True)
class Fixture:
    plan: int
    price_per_day: int
    agents: tuple[AgentSpec, ...]
    secrets: dict[int, DeviceSecret]
    distributors: tuple[DistributorSpec, ...] = ()

    def plan_of(self, agent: AgentSpec) -> int:
        return self.plan if agent.plan is None else agent.plan

    def readers(self, count: int, token: str | None = None) -> list[Reader]:
        """Report reader i reads as distributor i mod n with its token, and every distributor
        reads (so `count` > 0 gives at least one reader each); without distributors every
        reader sends `token` (None: no token, and a tenant-aware platform answers 401)."""
        if not self.distributors:
            return [(None, token)] * count
        ds = self.distributors
        count = max(count, len(ds)) if count > 0 else 0
        return [(ds[i % len(ds)].name, ds[i % len(ds)].token) for i in range(count)]

    def to_json(self) -> str:
        return json.dumps(
            {
                "plan": self.plan,
                "price_per_day": self.price_per_day,
                "distributors": [{"name": d.name, "token": d.token} for d in self.distributors],
                "agents": [
                    {
                        "name": a.name,
                        "code": a.code,
                        "devices": list(a.devices),
                        **({} if a.distributor is None else {"distributor": a.distributor}),
                        **({} if a.plan is None else {"plan": a.plan}),
                    }
                    for a in self.agents
                ],
                "devices": [
                    {
                        "serial": serial,
                        "format": NAMES[s.format],
                        "key": s.key.hex(),
                        "starting_code": s.starting_code,
                        "time_divider": s.time_divider,
                    }
                    for serial, s in sorted(self.secrets.items())
                ],
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> Fixture:
        try:
            doc = json.loads(text)
            secrets = {
                int(d["serial"]): DeviceSecret(
                    format_named(str(d["format"]).lower()),
                    bytes.fromhex(d["key"]),
                    int(d.get("starting_code", 0)),
                    int(d.get("time_divider", 1)),
                )
                for d in doc["devices"]
            }
            agents = tuple(
                AgentSpec(
                    str(a["name"]),
                    str(a["code"]),
                    tuple(int(x) for x in a["devices"]),
                    None if a.get("distributor") is None else str(a["distributor"]),
                    None if a.get("plan") is None else int(a["plan"]),
                )
                for a in doc["agents"]
            )
            distributors = tuple(
                DistributorSpec(str(d["name"]), str(d["token"]))
                for d in doc.get("distributors", ())
            )
            fixture = cls(
                int(doc["plan"]), int(doc["price_per_day"]), agents, secrets, distributors
            )
        except (ValueError, KeyError, TypeError, AttributeError, SetupError) as exc:
            raise FixtureError(f"fixture is not valid: {type(exc).__name__}: {exc}") from exc
        names = {d.name for d in fixture.distributors}
        for agent in agents:
            if agent.distributor is not None and agent.distributor not in names:
                raise FixtureError(
                    f"agent {agent.name}: distributor {agent.distributor!r} is not in the"
                    " fixture's distributors"
                )
        for agent in agents:
            missing = [d for d in agent.devices if d not in secrets]
            if missing:
                raise FixtureError(f"agent {agent.name}: devices {missing[:5]} have no secret")
        if not agents:
            raise FixtureError("fixture has no agents")
        return fixture

    @classmethod
    def load(cls, path: str | Path) -> Fixture:
        try:
            return cls.from_json(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise FixtureError(f"cannot read fixture {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise FixtureError(f"fixture {path} is not UTF-8 text") from exc


@dataclass(frozen=True)
class Stocking:
    """What to put on a fresh platform: agents, their devices (protocol mix), and the
    distributors they work for (round robin), each with one plan and a report token."""

    agents: int
    devices: int
    protocols: Mapping[str, float] = field(default_factory=lambda: {"nexus-full": 1.0})
    price_per_day: int = PRICE_PER_DAY
    seed: int = 1
    distributors: int = 1
    """1: every agent works for the database's `default` distributor; more: for
    distributor-1 .. distributor-N (at most one per agent)."""

    @classmethod
    def of(cls, scenario: Scenario) -> Stocking:
        return cls(
            scenario.fleet.agents,
            scenario.fleet.devices,
            dict(scenario.devices.protocols),
            PRICE_PER_DAY,
            scenario.seed,
            scenario.fleet.distributors,
        )


def _secret(rng: random.Random, fmt: KeycodeFormat) -> DeviceSecret:
    key = rng.randbytes(16)
    if fmt in (KeycodeFormat.OPENPAYGO, KeycodeFormat.OPENPAYGO_RESTRICTED):
        return DeviceSecret(fmt, key, rng.randrange(1, 10**9), 1)
    return DeviceSecret(fmt, key)


def distributor_token(db_path: str | Path, name: str = "default") -> str:
    """A fresh report token for a distributor of a server-stub database (the seeded agents
    work for ``default``)."""
    store = Store.open(db_path)
    try:
        return store.issue_token(name, 0)
    finally:
        store.close()


def seed(db_path: str | Path, stocking: Stocking) -> Fixture:
    """Create the plan, agents and devices in a server-stub database (same keys per seed)."""
    rng = random.Random(f"{stocking.seed}:fixture")
    names = list(stocking.protocols)
    weights = [stocking.protocols[n] for n in names]
    store = Store.open(db_path)
    # a seed that does not finish is seeded again: no commit needs the disk until the end
    store.db.execute("PRAGMA synchronous=OFF")
    try:
        tenants = _tenants(store, stocking)
        agents: list[AgentSpec] = []
        secrets: dict[int, DeviceSecret] = {}
        serial = FIRST_SERIAL
        per_agent, extra = divmod(stocking.devices, stocking.agents)
        for first in range(0, stocking.agents, SEED_GROUP):
            with store.group():  # one commit for the group's agents and their devices
                for index in range(first, min(first + SEED_GROUP, stocking.agents)):
                    name = f"agent-{index:05d}"
                    tenant, owner, plan = tenants[index % len(tenants)]
                    code_text = f"code-{index:05d}-{rng.randbytes(8).hex()}"
                    agent, code = store.add_agent(name, code_text, owner)
                    records = []
                    for _ in range(per_agent + (1 if index < extra else 0)):
                        fmt = FORMATS[rng.choices(names, weights)[0]]
                        secrets[serial] = _secret(rng, fmt)
                        records.append(DeviceRecord(serial, secrets[serial]))
                        serial += 1
                    store.add_devices(agent, records)
                    devices = tuple(r.device for r in records)
                    agents.append(AgentSpec(name, code, devices, tenant.name, plan))
        store.db.execute("PRAGMA synchronous=FULL")
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # now all of it is on the disk
        first_plan = tenants[0][2]
        ds = tuple(t for t, _, _ in tenants)
        return Fixture(first_plan, stocking.price_per_day, tuple(agents), secrets, ds)
    finally:
        store.close()


def _tenants(store: Store, stocking: Stocking) -> list[tuple[DistributorSpec, int, int]]:
    """The distributors to stock: (spec with its token, id, its plan)."""
    count = max(1, min(stocking.distributors, stocking.agents))
    made: list[tuple[DistributorSpec, int, int]] = []
    for n in range(count):
        if count == 1:
            name = "default"
            owner, token = store.distributor_id(name), store.issue_token(name, 0)
        else:
            name = f"distributor-{n + 1}"
            owner, token = store.add_distributor(name, 0)
        plan = store.add_plan(PLAN_NAME, stocking.price_per_day, owner)
        made.append((DistributorSpec(name, token), owner, plan))
    return made
