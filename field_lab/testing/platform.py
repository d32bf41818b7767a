"""A seeded `server_stub` on 127.0.0.1 for one test, built from the lab's own parts: the one
seeder (`world.fixture.seed`), the one way to serve it (`world.platform.serving`), the one
bridge from a device secret to a meter (`world.sites.meter_for`) and the judge's audit client.

`PlatformSpec` is what a test may ask for (validated when made, before anything runs);
`running_platform` serves it and yields a `PaygPlatform`.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from field_lab.check.evidence import AuditClient
from field_lab.errors import HarnessError
from field_lab.protocols import SCENARIO_PROTOCOLS
from field_lab.testing.errors import FixtureError
from field_lab.world.fixture import PRICE_PER_DAY, AgentSpec, Fixture, Stocking, seed
from field_lab.world.mno import Final, MnoConfig, MnoSimulator, Txn
from field_lab.world.platform import serving
from field_lab.world.sites import meter_for, phone_of
from meter_sim import Meter
from server_stub.app import Platform as StubConfig
from server_stub.faults import PlatformFaults

MAX_AGENTS = 10_000
MAX_DEVICES = 100_000
PROMPT_OPERATOR = MnoConfig(delay_s=(0.0, 0.0), seed=0)
"""The fixture's operator: calls back at once, once, and never fails (a test that wants a
misbehaving operator builds its own `MnoSimulator` with `mm_secret`)."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, kw_only=True)
class PlatformSpec:
    """What a test asks of `payg_platform` (every argument keyword-only, checked at once)."""

    agents: int = 2
    devices: int = 6
    """Split over the agents in order; every agent holds at least one."""
    protocols: Mapping[str, float] = field(default_factory=lambda: {"nexus-full": 1.0})
    """Weights of the keycode protocols devices are drawn from (seeded): nexus-full,
    nexus-small, openpaygo (the lab's seeder sells no restricted-digit OpenPAYGO)."""
    price_per_day: int = PRICE_PER_DAY
    seed: int = 1
    """Same seed, same agents' codes, devices and keys."""
    faults: PlatformFaults | None = None
    """Bugs built in on purpose (the platform's fault seam), to prove a check can fail."""
    mobile_money: bool = True
    mm_secret: bytes | str | None = None
    """The operator's shared secret; None: a random one (when `mobile_money`)."""
    audit: bool = True
    audit_token: str | None = None
    """The audit API's bearer token; None: a random one (when `audit`)."""

    def __post_init__(self) -> None:
        def need(ok: bool, problem: str) -> None:
            if not ok:
                raise FixtureError(f"payg_platform: {problem}")

        for name in ("agents", "devices", "price_per_day", "seed"):
            value = getattr(self, name)
            need(_is_int(value), f"{name} must be an int, got {value!r}")
        need(1 <= self.agents <= MAX_AGENTS, f"agents must be 1..{MAX_AGENTS}, got {self.agents}")
        need(
            self.agents <= self.devices <= MAX_DEVICES,
            f"devices must be {self.agents}..{MAX_DEVICES} (at least one per agent),"
            f" got {self.devices}",
        )
        need(self.price_per_day >= 1, f"price_per_day must be >= 1, got {self.price_per_day}")
        need(
            isinstance(self.protocols, Mapping) and bool(self.protocols),
            f"protocols must be a non-empty mapping of name to weight, got {self.protocols!r}",
        )
        for name, weight in self.protocols.items():
            need(
                name in SCENARIO_PROTOCOLS,
                f"unknown protocol {name!r}; known: {', '.join(SCENARIO_PROTOCOLS)}",
            )
            need(
                isinstance(weight, int | float)
                and not isinstance(weight, bool)
                and math.isfinite(weight)
                and weight > 0,
                f"protocol {name!r}: weight must be a finite number > 0, got {weight!r}",
            )
        need(
            self.faults is None or isinstance(self.faults, PlatformFaults),
            f"faults must be a server_stub.faults.PlatformFaults, got {self.faults!r}",
        )
        for flag in ("mobile_money", "audit"):
            value = getattr(self, flag)
            need(isinstance(value, bool), f"{flag} must be True or False, got {value!r}")
        secret = self.mm_secret
        need(
            secret is None or (isinstance(secret, bytes | str) and len(secret) > 0),
            f"mm_secret must be non-empty bytes or str, got {secret!r}",
        )
        need(secret is None or self.mobile_money, "mm_secret given with mobile_money=False")
        token = self.audit_token
        need(
            token is None
            or (isinstance(token, str) and bool(token) and all("!" <= c <= "~" for c in token)),
            f"audit_token must be non-empty visible ASCII without spaces, got {token!r}",
        )
        need(token is None or self.audit, "audit_token given with audit=False")

    @classmethod
    def of(cls, options: Mapping[str, Any], where: str = "payg_platform") -> PlatformSpec:
        """From a marker's or parameter's keyword arguments; unknown names are refused."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise FixtureError(f"{where}: unknown argument(s) {unknown}; known: {known}")
        return cls(**options)

    def stocking(self) -> Stocking:
        return Stocking(
            self.agents,
            self.devices,
            {name: float(weight) for name, weight in self.protocols.items()},
            self.price_per_day,
            self.seed,
        )


@dataclass(frozen=True)
class PaygPlatform:
    """A running, seeded platform stand-in (`server_stub`) on 127.0.0.1."""

    url: str
    """Base URL, e.g. ``http://127.0.0.1:41234``; point a handset's `server_url` here."""
    db: Path
    """The platform's SQLite file (for tests of the platform itself)."""
    fixture: Fixture
    """Agents (name, provisioning code, devices), device secrets, plan and price."""
    audit_token: str | None
    """Bearer token of the audit API; None: the platform has none."""
    mm_secret: bytes | None
    """The mobile-money operator's shared secret; None: no callback endpoint."""
    operator: MnoSimulator | None = field(default=None, repr=False)
    """The operator `pay` goes through (prompt and faultless)."""

    @property
    def plan(self) -> int:
        return self.fixture.plan

    @property
    def price_per_day(self) -> int:
        return self.fixture.price_per_day

    @property
    def agents(self) -> tuple[AgentSpec, ...]:
        return self.fixture.agents

    @property
    def devices(self) -> tuple[int, ...]:
        """Every device serial, in the agents' order."""
        return tuple(d for agent in self.fixture.agents for d in agent.devices)

    def audit(self) -> AuditClient:
        """The judge's client for this platform's audit API."""
        if self.audit_token is None:
            raise FixtureError("payg_platform: this platform has no audit API (marker audit=False)")
        return AuditClient(self.url, self.audit_token)

    def meter(self, serial: int, now: float = 0.0) -> Meter:
        """A fresh simulated meter holding device `serial`'s secret, its clock at `now`."""
        secret = self.fixture.secrets.get(serial) if _is_int(serial) else None
        if secret is None:
            serials = sorted(self.fixture.secrets)
            raise FixtureError(
                f"device {serial!r} is not on this platform; its {len(serials)} devices are"
                f" {serials[0]}..{serials[-1]}"
            )
        return meter_for(secret, now)

    async def pay(
        self, device: int, amount: int, msisdn: str | None = None, *, timeout_s: float = 10.0
    ) -> Txn:
        """A customer pays `amount` for `device` by mobile money; returns the operator's
        record (`.txn`, `.final`) once the platform's answer is in (at most `timeout_s`).
        `msisdn` defaults to the device's customer's phone."""
        if self.operator is None:
            raise FixtureError(
                "payg_platform: this platform takes no mobile money (marker mobile_money=False)"
            )
        if not _is_int(amount) or amount <= 0:
            raise FixtureError(f"pay: amount must be a positive int, got {amount!r}")
        txn_id = self.operator.pay(device, amount, msisdn or phone_of(device))
        await self.operator.drain(timeout_s)
        txn = self.operator.history[txn_id]
        if txn.final is Final.PENDING:
            raise HarnessError(
                f"pay: the platform did not answer payment {txn_id} in {timeout_s} s"
            )
        return txn


@asynccontextmanager
async def running_platform(workdir: Path, spec: PlatformSpec) -> AsyncIterator[PaygPlatform]:
    """Seed a fresh database in `workdir` as `spec` says and serve it until the block ends."""
    db = workdir / "platform.db"
    fixture = await asyncio.to_thread(seed, db, spec.stocking())
    mm_secret: bytes | None = None
    if spec.mobile_money:
        given = spec.mm_secret
        mm_secret = given.encode() if isinstance(given, str) else given or secrets.token_bytes(16)
    audit_token = (spec.audit_token or secrets.token_urlsafe(24)) if spec.audit else None
    config = StubConfig(mm_secret=mm_secret, audit_token=audit_token)
    async with serving(db, config=config, faults=spec.faults) as url:
        operator = None
        if mm_secret is not None:
            operator = MnoSimulator(url + "/v1/mm/callback", mm_secret, PROMPT_OPERATOR)
            await operator.start()
        try:
            yield PaygPlatform(url, db, fixture, audit_token, mm_secret, operator)
        finally:
            if operator is not None:
                await operator.stop(timeout_s=5.0)
