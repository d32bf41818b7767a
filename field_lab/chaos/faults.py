"""Network faults: the same seeded workload runs once cleanly and once under each fault
(connections cut after N bytes up or down, responses lost after the server committed, a long
outage, a handset clock hours or days off); every run must end in the same business state.

The workload has three phases, each settled before the next so the order of keycodes is
fixed: the agent registers customers, sells and takes cash; customers pay by mobile money;
the agent takes more cash.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from agent_client.agent import Agent
from agent_client.protocol.sync import SyncConfig
from field_lab.check.evidence import HandsetEvidence, learn_from_handset, learn_from_operator
from field_lab.check.judge import Claim
from field_lab.check.keys import MOBILE_MONEY, mm_key, op_key
from field_lab.measure.history import History
from field_lab.net import LOOPBACK
from field_lab.world.mno import MnoConfig, MnoSimulator
from field_lab.world.platform import serving

from . import ChaosError
from .proxy import DOWN, UP, FaultProxy
from .world import CONFIG, MM_SECRET, PRICE, claim, digest, stock, verdict

QUICK = SyncConfig(
    initial_batch=4, min_batch=1, max_batch=4, backoff_base_s=0.05, backoff_cap_s=0.5
)
MAX_ROUNDS = 200
HOUR, DAY = 3600.0, 86400.0


@dataclass(frozen=True)
class Fault:
    """One way the network or the handset misbehaves during every phase of the workload."""

    name: str
    cut: tuple[str, int] | None = None  # (direction, bytes) for the first `repeat` exchanges
    repeat: int = 0
    outage_s: float = 0.0  # the link is down this long at the start of each phase
    skew_s: float = 0.0  # the handset's clock jumps by this much once provisioned

    def arm(self, proxy: FaultProxy, round_: int) -> None:
        if self.cut is not None and round_ < self.repeat:
            proxy.arm(*self.cut)
        if self.outage_s and round_ == 0:
            proxy.outage(self.outage_s)


def catalogue(outage_s: float) -> list[Fault]:
    faults = [Fault("none")]
    faults += [Fault(f"cut-up-{n}", (UP, n), 3) for n in (0, 40, 180, 400)]
    faults += [Fault(f"cut-down-{n}", (DOWN, n), 3) for n in (1, 60, 200)]
    faults += [Fault("lost-response", (DOWN, 0), 4)]
    faults += [Fault(f"outage-{outage_s:g}s", outage_s=outage_s)]
    skews = {"skew+3h": 3 * HOUR, "skew-5h": -5 * HOUR, "skew+2d": 2 * DAY, "skew-9d": -9 * DAY}
    faults += [Fault(name, skew_s=skew) for name, skew in skews.items()]
    return faults


@dataclass(frozen=True)
class Outcome:
    fault: str
    digest: str
    faults_fired: int
    rounds: int
    seconds: float
    valid: bool
    """The judge found nothing lost, duplicated, unexpected or mis-credited."""
    failures: int


@dataclass
class Recorder:
    """What the workload attempted, for the judge."""

    history: History
    claims: dict[str, Claim]

    def attempt(self, key: str, kind: str, device: int, amount: int) -> None:
        self.history.invoke(key, kind, time.time())
        if amount:
            self.claims[key] = claim(device, amount)


async def run_fault(fault: Fault, workdir: Path, seed_: int = 3) -> Outcome:
    began = time.monotonic()
    rng = random.Random(seed_)
    server_db, handset_db = workdir / "server.db", workdir / "handset.db"
    fixture = stock(server_db, 4, seed_)
    spec = fixture.agents[0]
    devices = list(spec.devices)
    record = Recorder(History(), {})
    shift = [0.0]  # the handset's clock jumps after provisioning, as a drained battery does
    clock: Callable[[], float] = lambda: time.time() + shift[0]  # noqa: E731
    async with serving(server_db, config=CONFIG) as url:
        port = urlsplit(url).port
        assert port is not None
        sync_proxy, mm_proxy = FaultProxy((LOOPBACK, port)), FaultProxy((LOOPBACK, port))
        sync_url = f"http://{LOOPBACK}:{await sync_proxy.start()}"
        mm_url = f"http://{LOOPBACK}:{await mm_proxy.start()}/v1/mm/callback"
        config = MnoConfig(delay_s=(0.0, 0.0), timeout_s=5.0, retry_s=(0.05,) * 3 + (0.5,) * 17)
        mno = MnoSimulator(mm_url, MM_SECRET, config, prefix="NF")
        await mno.start()
        agent = await Agent.provision(
            handset_db, sync_url, spec.name, spec.code, clock=clock, config=QUICK
        )
        shift[0] = fault.skew_s
        rounds = 0
        h = agent.handset
        try:
            for i, device in enumerate(devices):
                customer = await agent.register_customer(f"Customer {i}", f"+2332400{i:05d}")
                record.attempt(op_key(h, customer), "register_customer", device, 0)
                sale = await agent.record_sale(customer, device, fixture.plan, 2 * PRICE)
                record.attempt(op_key(h, sale), "record_sale", device, 2 * PRICE)
                amount = PRICE * rng.randint(1, 3)
                paid = await agent.record_payment(device, amount)
                record.attempt(op_key(h, paid), "record_payment", device, amount)
            rounds += await _settle(agent, fault, sync_proxy)
            for n, device in enumerate(rng.choices(devices, k=4)):
                fault.arm(mm_proxy, n)
                amount = PRICE * rng.randint(1, 3)
                record.attempt(
                    mm_key(mno.pay(device, amount, "+233240000009")), MOBILE_MONEY, device, amount
                )
                if not await mno.drain(60.0):
                    raise ChaosError(f"{fault.name}: a callback did not settle")
            for device in rng.choices(devices, k=6):
                amount = PRICE * rng.randint(1, 3)
                paid = await agent.record_payment(device, amount)
                record.attempt(op_key(h, paid), "record_payment", device, amount)
            rounds += await _settle(agent, fault, sync_proxy)
            handset = await HandsetEvidence.read(agent.store)
            learn_from_handset(record.history, handset, time.time())
            learn_from_operator(record.history, mno, time.time())
            found, evidence = await verdict(
                url, record.history, record.claims, [handset], fixture.secrets
            )
        finally:
            await agent.close()
            await mno.stop()
            fired = sync_proxy.cuts + mm_proxy.cuts + sync_proxy.refused
            await sync_proxy.aclose()
            await mm_proxy.aclose()
    return Outcome(
        fault.name,
        digest(evidence),
        fired,
        rounds,
        time.monotonic() - began,
        found.valid,
        sum(v or 0 for v in found.figures().values()),
    )


async def _settle(agent: Agent, fault: Fault, proxy: FaultProxy) -> int:
    """Sync until the queue is empty and the downlink fetched, the fault striking as planned."""
    for round_ in range(MAX_ROUNDS):
        fault.arm(proxy, round_)
        report = await agent.sync(max_exchanges=4, max_wait_s=max(1.0, fault.outage_s + 1))
        proxy.disarm()
        if not report.pending and not report.failures:
            return round_ + 1
    raise ChaosError(f"{fault.name}: the handset did not settle in {MAX_ROUNDS} rounds")


async def converge(faults: list[Fault]) -> list[Outcome]:
    """Run every fault on a fresh platform; the first should be the clean run."""
    outcomes = []
    for fault in faults:
        with tempfile.TemporaryDirectory(prefix="payg-fault-") as tmp:
            outcomes.append(await run_fault(fault, Path(tmp)))
    return outcomes
