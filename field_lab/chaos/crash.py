"""Crash consistency: kill the handset and, separately, the platform at random points of syncs
and payment callbacks, restart them, let everything settle, and judge with the lab's checkers.

Three kinds of trial share one platform database, one handset and one history:

- ``cut``: the platform runs in this process behind a `FaultProxy`; the kill point is a byte
  offset of the exchange (the next sync or operator callback is reset after N bytes up or
  down), and the handset is restarted from its SQLite file after every trial. Cheap, so most
  trials are of this kind, and the kill points cover every byte of an exchange.
- ``server-kill``: ``server-stub serve`` runs as its own process and gets SIGKILL at a random
  moment while the handset syncs and the operator simulator delivers callbacks; then restarts.
- ``handset-kill``: ``agent-client sync`` runs as its own process and gets SIGKILL, mostly once
  it has frozen a batch and put it on the wire (as tests/e2e/test_crash.py does).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from agent_client.agent import Agent
from agent_client.protocol.sync import SyncConfig
from agent_client.store import HandsetStore, OpState
from field_lab.check.evidence import HandsetEvidence, learn_from_handset, learn_from_operator
from field_lab.check.judge import Claim, Verdict
from field_lab.check.keys import MOBILE_MONEY, mm_key, op_key
from field_lab.errors import ConfigError
from field_lab.measure.history import History
from field_lab.net import LOOPBACK, free_port, listening
from field_lab.world.fixture import Fixture
from field_lab.world.mno import MnoConfig, MnoSimulator
from field_lab.world.platform import serving
from server_stub.cli import AUDIT_TOKEN_ENV, SECRET_ENV
from server_stub.faults import PlatformFaults

from . import ChaosError
from .children import Child, spawn
from .proxy import DOWN, UP, FaultProxy
from .world import AUDIT_TOKEN, CONFIG, MM_SECRET, PRICE, claim, digest, stock, verdict

SETTLE_S = 60.0
ONE_BY_ONE = SyncConfig(initial_batch=1, min_batch=1, max_batch=1)  # more exchanges to hit
INJECTED: dict[str, PlatformFaults] = {
    "replays-apply-again": PlatformFaults(replays_apply_again=True),
    "lost-ack": PlatformFaults(lose_ack_every=5),
    "keycode-twice": PlatformFaults(apply_twice_every=7),
    "double-days": PlatformFaults(credit_factor=2),
}
"""Platform bugs the harness must find, each built in through the constructor seam."""
INJECTED_PLAN = {"cut": 40, "server_kills": 0, "handset_kills": 0}


@dataclass(frozen=True)
class CrashPlan:
    cut: int = 180
    server_kills: int = 10
    handset_kills: int = 12
    seed: int = 20261126
    devices: int = 12
    faults: PlatformFaults | None = None
    """A deliberately broken platform (cut trials only: kills run the real `server-stub`)."""

    def __post_init__(self) -> None:
        if min(self.cut, self.server_kills, self.handset_kills) < 0 or self.devices < 1:
            raise ConfigError("trial counts must be >= 0 and devices >= 1")
        if self.faults is not None and (self.server_kills or self.handset_kills):
            raise ConfigError(
                "injected platform faults need the in-process platform: cut trials only"
            )

    @property
    def trials(self) -> int:
        return self.cut + self.server_kills + self.handset_kills


@dataclass
class CrashReport:
    plan: CrashPlan
    trials: Counter[str] = field(default_factory=Counter)
    landed: Counter[str] = field(default_factory=Counter)  # the fault hit mid-exchange
    seconds: float = 0.0
    verdict: Verdict | None = None
    digest: str = ""

    def summary(self) -> dict[str, object]:
        assert self.verdict is not None
        figures = self.verdict.figures()
        ops, payments = self.verdict.ops, self.verdict.payments
        return {
            "trials": sum(self.trials.values()),
            "by_kind": dict(self.trials),
            "faults_landed": dict(self.landed),
            "failures": sum(v or 0 for v in figures.values()),
            "valid": self.verdict.valid,
            "unchecked": list(self.verdict.unchecked),
            "seconds": round(self.seconds, 1),
            "ops_attempted": ops.attempted if ops else None,
            "ops_acknowledged": ops.acknowledged if ops else None,
            "payments_attempted": payments.attempted if payments else None,
            "payments_acknowledged": payments.acknowledged if payments else None,
            "recovered_unknown": (ops.recovered + payments.recovered) if ops and payments else None,
            "meters": self.verdict.credit.checked if self.verdict.credit else None,
            **figures,
            "digest": self.digest,
            "details": self.verdict.details(),
        }


class Run:
    """One crash run's shared state: the files, the history, what each payment buys."""

    def __init__(self, plan: CrashPlan, workdir: Path) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.server_db = workdir / "server.db"
        self.handset_db = workdir / "handset.db"
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.history = History()
        self.claims: dict[str, Claim] = {}
        self.report = CrashReport(plan)
        self.fixture: Fixture | None = None
        self.handset = 0
        self.devices: list[int] = []
        self.operators: list[MnoSimulator] = []
        self._reader: HandsetStore | None = None

    # -- recording ---------------------------------------------------------------------------

    def attempt(self, key: str, kind: str, device: int, amount: int) -> None:
        self.history.invoke(key, kind, time.time())
        self.claims[key] = claim(device, amount)

    async def pay_offline(self, agent: Agent, payments: int) -> None:
        for _ in range(payments):
            device = self.rng.choice(self.devices)
            amount = PRICE * self.rng.randint(1, 3)
            seq = await agent.record_payment(device, amount)
            self.attempt(op_key(self.handset, seq), "record_payment", device, amount)

    def pay_mm(self, mno: MnoSimulator) -> None:
        device = self.rng.choice(self.devices)
        amount = PRICE * self.rng.randint(1, 3)
        txn = mno.pay(device, amount, "+233240000001")
        self.attempt(mm_key(txn), MOBILE_MONEY, device, amount)

    async def reader(self) -> HandsetStore:
        """One connection that only reads the handset's file, kept for the whole run: the
        handset itself is reopened every trial, its evidence need not be."""
        if self._reader is None:
            self._reader = await HandsetStore.open(self.handset_db)
        return self._reader

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.close()
            self._reader = None

    async def observe(self) -> None:
        """Complete what the handset and the operator now know; the rest stays unknown."""
        evidence = await HandsetEvidence.read(await self.reader())
        now = time.time()
        learn_from_handset(self.history, evidence, now)
        for mno in self.operators:
            learn_from_operator(self.history, mno, now)

    def operator(self, url: str, prefix: str) -> MnoSimulator:
        mno = MnoSimulator(url + "/v1/mm/callback", MM_SECRET, _operator(), prefix=prefix)
        self.operators.append(mno)
        return mno

    # -- phases ------------------------------------------------------------------------------

    async def setup(self) -> None:
        """Provision the handset and sell every device, with no fault."""
        self.fixture = stock(self.server_db, self.plan.devices, self.plan.seed)
        spec = self.fixture.agents[0]
        self.devices = list(spec.devices)
        async with serving(self.server_db, config=CONFIG, port=self.port):
            agent = await Agent.provision(self.handset_db, self.url, spec.name, spec.code)
            self.handset = agent.handset
            for i, device in enumerate(self.devices):
                customer = await agent.register_customer(f"Customer {i}", f"+2332400{i:05d}")
                sale = await agent.record_sale(customer, device, self.fixture.plan, 2 * PRICE)
                self.history.invoke(
                    op_key(self.handset, customer), "register_customer", time.time()
                )
                self.attempt(op_key(self.handset, sale), "record_sale", device, 2 * PRICE)
            report = await agent.sync(max_wait_s=10)
            await agent.close()
            if report.pending:
                raise ChaosError(f"setup left {report.pending} operations unsynced")
        await self.observe()

    async def cuts(self) -> None:
        async with serving(self.server_db, config=CONFIG, faults=self.plan.faults) as url:
            port = urlsplit(url).port
            assert port is not None
            sync_proxy, mm_proxy = FaultProxy((LOOPBACK, port)), FaultProxy((LOOPBACK, port))
            sync_url = f"http://{LOOPBACK}:{await sync_proxy.start()}"
            mno = self.operator(f"http://{LOOPBACK}:{await mm_proxy.start()}", "MC")
            await mno.start()
            estimate = {UP: 600, DOWN: 600}
            try:
                for _ in range(self.plan.cut):
                    direction = self.rng.choice((UP, DOWN))
                    if self.rng.random() < 0.5:
                        kind, proxy = "cut-sync", sync_proxy
                        agent = await Agent.open(self.handset_db, server_url=sync_url)
                        await self.pay_offline(agent, self.rng.randint(1, 2))
                        proxy.arm(direction, self.rng.randrange(estimate[direction]))
                        await agent.sync(max_exchanges=2)
                        await agent.close()  # the restart: in-memory state is gone
                    else:
                        kind, proxy = "cut-callback", mm_proxy
                        self.pay_mm(mno)
                        proxy.arm(direction, self.rng.randrange(estimate[direction]))
                        await mno.drain(SETTLE_S)
                    landed = not proxy.disarm()
                    if not landed:
                        estimate[direction] = max(64, proxy.since_arm[direction])
                    self.report.trials[kind] += 1
                    self.report.landed[kind] += landed
                    await self.observe()
                await self.settle(mno, sync_url)
            finally:
                await mno.stop()
                await sync_proxy.aclose()
                await mm_proxy.aclose()

    async def kills(self) -> None:
        if not (self.plan.server_kills or self.plan.handset_kills):
            return
        server = await self.start_server()
        mno = self.operator(self.url, "MK")
        await mno.start()
        try:
            kinds = ["server-kill"] * self.plan.server_kills
            kinds += ["handset-kill"] * self.plan.handset_kills
            self.rng.shuffle(kinds)
            for kind in kinds:
                if server.returncode is not None:
                    server = await self.start_server()
                if kind == "server-kill":
                    server = await self.kill_server(server, mno)
                else:
                    await self.kill_handset()
                self.report.trials[kind] += 1
                await self.observe()
            if server.returncode is not None:
                server = await self.start_server()
            await self.settle(mno, self.url)
        finally:
            await mno.stop()
            server.terminate()
            await server.wait()

    async def kill_server(self, server: Child, mno: MnoSimulator) -> Child:
        agent = await Agent.open(self.handset_db, server_url=self.url, config=ONE_BY_ONE)
        await self.pay_offline(agent, self.rng.randint(1, 4))
        self.pay_mm(mno)
        syncing = asyncio.create_task(agent.sync(max_exchanges=8))
        await asyncio.sleep(self.rng.uniform(0.0, 0.06))
        landed = not syncing.done() or mno.busy > 0
        os.kill(server.pid, signal.SIGKILL)
        await server.wait()
        self.report.landed["server-kill"] += landed
        try:
            await asyncio.wait_for(syncing, 60)
        finally:
            await agent.close()
        return await self.start_server()  # the operator keeps retrying meanwhile

    async def kill_handset(self) -> None:
        agent = await Agent.open(self.handset_db, server_url=self.url)
        await self.pay_offline(agent, self.rng.randint(1, 3))
        await agent.close()
        store = await self.reader()
        before = await _attempts(store)
        proc = spawn("agent-client", ["--db", str(self.handset_db), "sync", "--batch", "1"])
        if self.rng.random() < 0.2:  # sometimes while it starts up (opens its store, signs)
            await asyncio.sleep(self.rng.uniform(0.0, 0.03))
        else:  # mostly once a batch is frozen and on the wire
            end = time.monotonic() + 10.0
            while proc.returncode is None and time.monotonic() < end:
                if await _attempts(store) > before:
                    break
                await asyncio.sleep(0.002)
            await asyncio.sleep(self.rng.uniform(0.0, 0.01))
        self.report.landed["handset-kill"] += proc.returncode is None
        with contextlib.suppress(ProcessLookupError):  # it may have finished on its own
            proc.kill()
        await proc.wait()

    async def start_server(self) -> Child:
        env = {**os.environ, SECRET_ENV: MM_SECRET.decode(), AUDIT_TOKEN_ENV: AUDIT_TOKEN}
        args = ["--db", str(self.server_db), "serve", "--port", str(self.port)]
        proc = spawn("server-stub", args, env)
        if not await _until(lambda: listening(self.port) or proc.returncode is not None, 30.0):
            proc.kill()
            await proc.wait()
            raise ChaosError(f"server-stub did not listen on {self.port}")
        if proc.returncode is not None:
            raise ChaosError(f"server-stub exited with {proc.returncode}")
        return proc

    async def settle(self, mno: MnoSimulator, url: str) -> None:
        """The operator's last retries land first; then the handset fetches what they made."""
        await mno.drain(SETTLE_S)
        agent = await Agent.open(self.handset_db, server_url=url)
        try:
            for _ in range(10):
                report = await agent.sync(max_wait_s=30)
                if not report.pending:
                    break
        finally:
            await agent.close()
        await self.observe()

    async def judge(self) -> None:
        """Read the settled platform as an outsider would, and judge."""
        assert self.fixture is not None
        handset = await HandsetEvidence.read(await self.reader())
        async with serving(self.server_db, config=CONFIG) as url:
            found, evidence = await verdict(
                url, self.history, self.claims, [handset], self.fixture.secrets
            )
        self.report.verdict = found
        self.report.digest = digest(evidence)


async def _attempts(store: HandsetStore) -> int:
    """Sends started of the operations still open: grows when a batch goes on the wire."""
    rows = await store.queue((OpState.PENDING, OpState.IN_FLIGHT))
    return sum(row.attempts for row in rows)


def _operator() -> MnoConfig:
    """The operator retries at once, then backs off long enough to outlast a restart."""
    return MnoConfig(delay_s=(0.0, 0.0), timeout_s=10.0, retry_s=(0.0, 0.05, 0.2, 0.5, 1, 2, 4, 8))


async def _until(done: Callable[[], bool], deadline_s: float) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if done():
            return True
        await asyncio.sleep(0.002)
    return False


async def run_crash(plan: CrashPlan, workdir: Path) -> CrashReport:
    began = time.monotonic()
    run = Run(plan, workdir)
    phases: list[Callable[[], Awaitable[None]]] = [run.setup, run.cuts, run.kills, run.judge]
    try:
        for phase in phases:
            await phase()
    finally:
        await run.close()
    run.report.seconds = time.monotonic() - began
    return run.report


async def injected(
    faults: Mapping[str, PlatformFaults] = INJECTED, *, seed: int = CrashPlan.seed
) -> dict[str, dict[str, object]]:
    """Each deliberately broken platform under a small crash run: the judge must find it."""
    out = {}
    for name, fault in faults.items():
        plan = CrashPlan(**INJECTED_PLAN, seed=seed, faults=fault)
        with tempfile.TemporaryDirectory(prefix="payg-injected-") as tmp:
            out[name] = (await run_crash(plan, Path(tmp))).summary()
    return out
