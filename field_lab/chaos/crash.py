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

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from asyncio.subprocess import Process
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import DEVNULL

from agent_client.agent import Agent
from agent_client.protocol.sync import SyncConfig
from agent_client.store import OpState
from field_lab.measure.history import History, Status
from server_stub.cli import SECRET_ENV
from server_stub.mno import Final, MnoConfig, MnoSimulator

from . import ChaosError
from .proxy import DOWN, UP, FaultProxy
from .world import AGENT, CODE, MM, MM_SECRET, OP, PRICE, Ledger, Verdict, judge, seed, serving

BIN = Path(sys.executable).parent
SETTLE_S = 60.0
VIOLATIONS = [
    "lost",
    "duplicated",
    "unexpected",
    "failed_but_applied",
    "credit_over",
    "credit_under",
]
VIOLATIONS += ["unpaid_keycodes", "keycodes_twice", "undelivered", "pending"]
ONE_BY_ONE = SyncConfig(initial_batch=1, min_batch=1, max_batch=1)  # more exchanges to hit


@dataclass(frozen=True)
class CrashPlan:
    cut: int = 180
    server_kills: int = 10
    handset_kills: int = 12
    seed: int = 20261126
    devices: int = 12

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

    def summary(self) -> dict[str, object]:
        assert self.verdict is not None
        verdict = self.verdict.summary()
        return {
            "trials": sum(self.trials.values()),
            "by_kind": dict(self.trials),
            "faults_landed": dict(self.landed),
            "failures": sum(int(str(verdict[v])) for v in VIOLATIONS),
            "seconds": round(self.seconds, 1),
            **verdict,
        }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Run:
    """One crash run's shared state: the files, the history, what was paid for."""

    def __init__(self, plan: CrashPlan, workdir: Path) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.server_db = workdir / "server.db"
        self.handset_db = workdir / "handset.db"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.history = History()
        self.ledger = Ledger()
        self.report = CrashReport(plan)
        self.handset = 0
        self.devices: list[int] = []
        self.open_ops: set[str] = set()
        self.open_mm: dict[str, MnoSimulator] = {}

    # -- recording ---------------------------------------------------------------------------

    async def pay_offline(self, agent: Agent, payments: int) -> None:
        for _ in range(payments):
            device = self.rng.choice(self.devices)
            amount = PRICE * self.rng.randint(1, 3)
            key = f"{self.handset}:{await agent.record_payment(device, amount)}"
            self.history.invoke(key, OP, time.time())
            self.ledger.attempt(key, device, amount)
            self.open_ops.add(key)

    def pay_mm(self, mno: MnoSimulator) -> None:
        device = self.rng.choice(self.devices)
        amount = PRICE * self.rng.randint(1, 3)
        txn = mno.pay(device, amount, "+233240000001")
        self.history.invoke(txn, MM, time.time())
        self.ledger.attempt(txn, device, amount)
        self.open_mm[txn] = mno

    def observe(self) -> None:
        """Complete what the handset and the operator now know; the rest stays unknown."""
        with sqlite3.connect(self.handset_db) as db:
            states = dict(db.execute("SELECT seq, state FROM outbox").fetchall())
        now = time.time()
        for key in sorted(self.open_ops):
            state = states.get(int(key.split(":")[1]))
            if state == OpState.ACKNOWLEDGED:
                self.history.ok(key, now)
                self.open_ops.discard(key)
            elif state == OpState.REJECTED:
                self.history.fail(key, now)
                self.open_ops.discard(key)
            elif self.history.final(key) is Status.INVOKE:
                self.history.info(key, now, "unknown after a fault")
        for txn, mno in list(self.open_mm.items()):
            final = mno.history[txn].final
            if final is Final.ACKNOWLEDGED:
                self.history.ok(txn, now)
            elif final is Final.REFUSED:
                self.history.fail(txn, now)
            elif final is not Final.PENDING and self.history.final(txn) is Status.INVOKE:
                self.history.info(txn, now, final.value)
            if final is not Final.PENDING:
                del self.open_mm[txn]

    # -- phases ------------------------------------------------------------------------------

    async def setup(self) -> None:
        """Provision the handset and sell every device, with no fault."""
        self.devices = seed(self.server_db, self.plan.devices, self.plan.seed)
        async with serving(self.server_db, self.port):
            agent = await Agent.provision(self.handset_db, self.url, AGENT, CODE)
            self.handset = agent.handset
            for i, device in enumerate(self.devices):
                customer = await agent.register_customer(f"Customer {i}", f"+2332400{i:05d}")
                sale = await agent.record_sale(customer, device, 1, 2 * PRICE)
                for seq in (customer, sale):
                    self.history.invoke(f"{self.handset}:{seq}", OP, time.time())
                    self.open_ops.add(f"{self.handset}:{seq}")
                self.ledger.attempt(f"{self.handset}:{sale}", device, 2 * PRICE)
            report = await agent.sync(max_wait_s=10)
            await agent.close()
            if report.pending:
                raise ChaosError(f"setup left {report.pending} operations unsynced")
        self.observe()

    async def cuts(self) -> None:
        async with serving(self.server_db, self.port) as port:
            sync_proxy, mm_proxy = FaultProxy(("127.0.0.1", port)), FaultProxy(("127.0.0.1", port))
            sync_url = f"http://127.0.0.1:{await sync_proxy.start()}"
            mm_url = f"http://127.0.0.1:{await mm_proxy.start()}/v1/mm/callback"
            mno = MnoSimulator(mm_url, MM_SECRET, _operator(), prefix="MC")
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
                        estimate[direction] = max(64, proxy.last_bytes[direction])
                    self.report.trials[kind] += 1
                    self.report.landed[kind] += landed
                    self.observe()
            finally:
                await mno.stop()
                await sync_proxy.aclose()
                await mm_proxy.aclose()

    async def kills(self) -> None:
        server = await self.start_server()
        mno = MnoSimulator(f"{self.url}/v1/mm/callback", MM_SECRET, _operator(), prefix="MK")
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
                self.observe()
            if server.returncode is not None:
                server = await self.start_server()
            await self.settle(mno)
        finally:
            await mno.stop()
            server.terminate()
            await server.wait()

    async def kill_server(self, server: Process, mno: MnoSimulator) -> Process:
        agent = await Agent.open(self.handset_db, config=ONE_BY_ONE)
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
        agent = await Agent.open(self.handset_db)
        await self.pay_offline(agent, self.rng.randint(1, 3))
        await agent.close()
        before = self._sent()
        proc = await _spawn("agent-client", "--db", str(self.handset_db), "sync", "--batch", "1")
        if self.rng.random() < 0.2:  # sometimes while it starts up
            await asyncio.sleep(self.rng.uniform(0.0, 0.3))
        else:  # mostly once a batch is frozen and on the wire
            await _until(lambda: self._sent() > before or proc.returncode is not None, 10.0)
            await asyncio.sleep(self.rng.uniform(0.0, 0.01))
        self.report.landed["handset-kill"] += proc.returncode is None
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()

    def _sent(self) -> int:
        with sqlite3.connect(self.handset_db) as db:
            return int(db.execute("SELECT coalesce(sum(attempts), 0) FROM outbox").fetchone()[0])

    async def start_server(self) -> Process:
        env = {**os.environ, SECRET_ENV: MM_SECRET.decode()}
        args = ("--db", str(self.server_db), "serve", "--port", str(self.port))
        proc = await _spawn("server-stub", *args, env=env)
        if not await _until(lambda: _listening(self.port) or proc.returncode is not None, 30.0):
            proc.kill()
            await proc.wait()
            raise ChaosError(f"server-stub did not listen on {self.port}")
        if proc.returncode is not None:
            raise ChaosError(f"server-stub exited with {proc.returncode}")
        return proc

    async def settle(self, mno: MnoSimulator) -> None:
        """The operator's last retries land first; then the handset fetches what they made."""
        await mno.drain(SETTLE_S)
        agent = await Agent.open(self.handset_db)
        try:
            for _ in range(10):
                report = await agent.sync(max_wait_s=30)
                if not report.pending:
                    break
        finally:
            await agent.close()
        self.observe()

    def judge(self) -> Verdict:
        with sqlite3.connect(self.handset_db) as db:
            (pending,) = db.execute(
                "SELECT count(*) FROM outbox WHERE state IN ('pending', 'in_flight')"
            ).fetchone()
        return judge(self.history, self.ledger, self.server_db, [self.handset_db], int(pending))


async def _spawn(program: str, *args: str, env: dict[str, str] | None = None) -> Process:
    return await asyncio.create_subprocess_exec(
        str(BIN / program), *args, env=env, stdout=DEVNULL, stderr=DEVNULL
    )


def _operator() -> MnoConfig:
    """The operator retries fast at first and long enough to outlast a platform restart."""
    return MnoConfig(delay_s=(0.0, 0.0), timeout_s=10.0, retry_s=(0.05, 0.2, 0.5, 1, 2, 4, 8))


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


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
    phases: list[Callable[[], Awaitable[None]]] = [run.setup, run.cuts, run.kills]
    for phase in phases:
        await phase()
    run.report.verdict = run.judge()
    run.report.seconds = time.monotonic() - began
    return run.report


def main(argv: list[str] | None = None) -> int:
    """``python -m field_lab.chaos.crash``: one crash run; prints its counts as JSON."""
    p = argparse.ArgumentParser(prog="python -m field_lab.chaos.crash", description=__doc__)
    p.add_argument("--cut", type=int, default=800)
    p.add_argument("--server-kills", type=int, default=100)
    p.add_argument("--handset-kills", type=int, default=100)
    p.add_argument("--seed", type=int, default=CrashPlan.seed)
    a = p.parse_args(argv)
    plan = CrashPlan(a.cut, a.server_kills, a.handset_kills, a.seed)
    with tempfile.TemporaryDirectory(prefix="payg-crash-") as tmp:
        report = asyncio.run(run_crash(plan, Path(tmp)))
    print(json.dumps(report.summary()))
    return 0 if report.verdict is not None and report.verdict.valid else 1


if __name__ == "__main__":
    sys.exit(main())
