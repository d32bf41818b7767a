"""A run split into shards (`field-lab run --shards N [--ray ...]`), merged into one result.

The parent holds the platform (the embedded one, or reaches `--target`) and starts N shards
(`field_lab.lab.shard`) through a launcher (`field_lab.lab.launch`: processes on this machine,
or Ray actors across a cluster), each running the handsets whose index is its own modulo N, its part
of the whole fleet's plan, and its own mobile-money operator. The parent forwards each SMS to
the shard whose customer it is for, reads the distributors' reports itself, and merges what
the shards send: every few seconds counters and HdrHistogram blobs for the live view, at the
end their evidence, which it judges with the platform's audit evidence. The summary has the
same schema as a single-process run's, plus the plan's size and digest, which are the same
for every shard count with the same seed.

A shard that fails ends the run with its error and code; one that dies, or a platform that
stops answering, ends it with the harness error (107) within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from field_lab.check.judge import Verdict
from field_lab.errors import ConfigError, HarnessError, PlatformGone
from field_lab.lab.budget import Budget, ProcessLimits
from field_lab.lab.lab import MAX_SYNCING, Target, _watched, judged
from field_lab.lab.launch import Launcher, Processes, ShardLink
from field_lab.lab.stats import RunStats
from field_lab.lab.wire import add_stats, merged_evidence, merged_stats, stats_to_wire
from field_lab.measure.history import History
from field_lab.measure.slo import EXIT_HARNESS_ERROR
from field_lab.measure.slo import Verdict as SloVerdict
from field_lab.scenario import Scenario, to_dict
from field_lab.workload.behaviour import agent_behaviour
from field_lab.workload.behaviour import customer_behaviour as customer_behaviour_of
from field_lab.workload.plan import digest
from field_lab.workload.runner import read_reports
from field_lab.world.adapters import platform_adapter
from field_lab.world.clock import LabClock
from field_lab.world.fleet import SETUP_CONCURRENCY
from field_lab.world.platform import Platform, embedded
from field_lab.world.sms import Message

PHASES = ("setup", "set-up", "field", "settle", "end of day", "check", "done")


HANDSETS_PER_SHARD_AT_LEAST = 50
"""Fewer handsets than this per process cost more in processes than they save in cores."""


def default_shards(handsets: int, cores: int | None = None) -> int:
    """One shard per core (of this machine, or `cores`: a cluster's), but no more than one
    per `HANDSETS_PER_SHARD_AT_LEAST` handsets."""
    cores = cores or os.cpu_count() or 1
    return max(1, min(cores, handsets // HANDSETS_PER_SHARD_AT_LEAST))


DEATH_S = 10.0
"""How long a shard that closed its output may take to end before the run stops waiting."""


class ShardFailed(HarnessError):
    """A shard reported a failure or died."""


class ShardedLab:
    """The parent of a sharded run; offers what the CLI reads of a `Lab`."""

    def __init__(
        self,
        scenario: Scenario,
        workdir: Path,
        shards: int,
        *,
        target: Target | None = None,
        adapter: str = "compact",
        behaviour: str | None = None,
        customer_behaviour: str | None = None,
        traces: Path | None = None,
        progress: Callable[[ShardedLab], None] | None = None,
        fixture_name: str = "",
        launcher: Launcher | None = None,
    ) -> None:
        """`fixture_name`: the fixture file as the user named it (for their error messages);
        `launcher`: where the shards run (default: processes on this machine)."""
        if shards < 1:
            raise ConfigError(f"--shards must be >= 1, got {shards}")
        platform_adapter(adapter)  # a wrong name or class fails here, before anything starts
        agent_behaviour(scenario, behaviour)
        customer_behaviour_of(scenario, customer_behaviour)
        self.scenario = scenario
        self.workdir = workdir
        self.shards = shards
        self.target = target
        self.launcher: Launcher = launcher or Processes()
        self.orders = {
            "adapter": adapter,
            "behaviour": behaviour,
            "customer_behaviour": customer_behaviour,
            "traces": str(traces) if traces is not None else None,
            "fixture_given": fixture_name,
        }
        self.progress = progress
        self.phase = "setup"
        self.stats = RunStats()
        self.series: list[dict[str, float]] = []
        self.history = History()
        self.handsets = 0
        self.devices = 0
        self.verdict: Verdict | None = None
        self.slo: list[SloVerdict] = []
        self.planned = 0
        self.plan_digest = ""
        self.traces_written = 0
        self._readers = RunStats()
        self._latest: dict[int, dict[str, Any]] = {}
        self._phases: dict[int, str] = {}
        self._in_field = asyncio.Event()
        self._left_field = asyncio.Event()

    def _platform(self) -> contextlib.AbstractAsyncContextManager[Platform]:
        if self.target is None:
            return embedded(self.workdir, self.scenario, host=self.launcher.host)
        return self.target.reach(self.scenario)

    async def run(self) -> RunStats:
        if self.target is None:  # the platform's end of every shard's connections is here
            Budget(0, 0, self.shards * MAX_SYNCING, self.shards * SETUP_CONCURRENCY, False).ensure(
                ProcessLimits()
            )
        else:
            await _reachable(self.target.url)
        async with self._platform() as platform:
            await _watched(self._run(platform), platform.url)
        return self.stats

    async def _run(self, platform: Platform) -> None:
        fixture = self.workdir / "fixture.json"
        fixture.write_text(platform.fixture.to_json())
        owner = {
            serial: index
            for index, spec in enumerate(platform.fixture.agents[: self.scenario.fleet.agents])
            for serial in spec.devices
        }
        orders = [
            {
                **self.orders,
                "scenario": to_dict(self.scenario),
                "url": platform.url,
                "fixture": str(fixture),
                "mm_secret": platform.mm_secret.hex() if platform.mm_secret else None,
                "shard": index,
                "shards": self.shards,
            }
            for index in range(self.shards)
        ]
        async with self.launcher.started(orders) as links:
            if platform.sms is not None:
                platform.sms.inbox.listen(lambda m: self._forward(m, owner, links))
            readers = asyncio.create_task(self._read_reports(platform))
            try:
                finals = await asyncio.gather(*(self._follow(i, p) for i, p in enumerate(links)))
            finally:
                readers.cancel()
                await asyncio.gather(readers, return_exceptions=True)
        await self._merge(platform, finals)

    def _forward(self, message: Message, owner: dict[int, int], links: list[ShardLink]) -> None:
        """An SMS goes to the shard whose customer's phone it reaches."""
        head = message.text.partition(": enter ")[0].removeprefix("PAYG ")
        index = owner.get(int(head), 0) if head.isdigit() else 0
        line = json.dumps({"sms": [message.msisdn, message.text, message.at]})
        links[index % len(links)].tell(line.encode() + b"\n")

    async def _follow(self, index: int, link: ShardLink) -> dict[str, Any]:
        """Read shard `index` until it is done; its failure or death ends the run."""
        final = await follow(index, link, lambda doc: self._reported(index, doc))
        self._phases[index] = "done"
        self._left_field.set()
        return final

    def _reported(self, index: int, doc: dict[str, Any]) -> None:
        self._phases[index] = doc["phase"]
        self._latest[index] = doc
        self._live()

    def _live(self) -> None:
        docs = [d["stats"] for d in self._latest.values()]
        stats = merged_stats(docs)
        add_stats(stats, stats_to_wire(self._readers))
        self.stats = stats
        self.phase = min(self._phases.values(), key=PHASES.index)
        field = PHASES.index("field")
        if len(self._phases) == self.shards and PHASES.index(self.phase) >= field:
            self._in_field.set()
        if any(PHASES.index(p) > field for p in self._phases.values()):
            self._left_field.set()
        rows = [d["row"] for d in self._latest.values() if d["row"]]
        if rows:
            self.series.append(_merged_rows(rows))
        if self.progress is not None:
            self.progress(self)

    async def _read_reports(self, platform: Platform) -> None:
        """The distributors read the platform's reports from the parent, from the moment every
        shard is in the field until the first has left it."""
        await self._in_field.wait()
        s = self.scenario
        clock = LabClock.start(s.time_scale)
        stop = asyncio.Event()
        readers = platform.fixture.readers(s.reports.readers, platform.report_token)
        tasks = [
            asyncio.create_task(
                read_reports(platform.url, i, s, clock, 0.0, self._readers, stop, token, name)
            )
            for i, (name, token) in enumerate(readers)
        ]
        try:
            await self._left_field.wait()
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _merge(self, platform: Platform, finals: list[dict[str, Any]]) -> None:
        self.phase = "check"
        self.stats = merged_stats([f["stats"] for f in finals])
        add_stats(self.stats, stats_to_wire(self._readers))
        evidence = merged_evidence([f["evidence"] for f in finals])
        self.history = evidence.history
        self.handsets = sum(int(f["handsets"]) for f in finals)
        self.devices = sum(int(f["sites"]) for f in finals)
        self.traces_written = sum(int(f["traces"]) for f in finals)
        longest = max(len(f["series"]) for f in finals)
        self.series = [
            _merged_rows([f["series"][i] for f in finals if i < len(f["series"])])
            for i in range(longest)
        ]
        events = [(float(at), str(kind), int(t)) for f in finals for at, kind, t in f["plan"]]
        self.planned = int(finals[0]["planned"])
        if len(events) != self.planned:
            raise HarnessError(
                f"the shards acted on {len(events)} events of a {self.planned}-event plan"
            )
        self.plan_digest = digest(events)
        audited = await platform.audit.evidence() if platform.audit is not None else None
        if platform.operator is not None:
            await platform.operator.drain(timeout_s=10)
        self.verdict = judged(evidence, audited)
        self.stats.checks = self.verdict.figures()


async def follow(
    index: int,
    link: ShardLink,
    reported: Callable[[dict[str, Any]], None],
    *,
    silence_s: float | None = None,
) -> dict[str, Any]:
    """Read shard `index` until its last word: each `report` to `reported`, `done` returned,
    `error` raised (`ConfigError` for the user's mistakes, else `ShardFailed`). A shard that
    dies, or says nothing for `silence_s` (None: no limit), is raised as `PlatformGone`:
    every wait here is bounded when `silence_s` is."""
    while True:
        try:
            async with asyncio.timeout(silence_s):
                line = await link.readline()
        except TimeoutError:
            raise PlatformGone(
                f"shard {index} said nothing for {silence_s:.0f} s: stopped it"
            ) from None
        if not line:
            break
        doc = json.loads(line)
        if doc["t"] == "report":
            reported(doc)
        elif doc["t"] == "done":
            return dict(doc)
        elif doc["t"] == "error":
            message = f"shard {index}: {doc['message']}"
            if doc["code"] == 2:
                raise ConfigError(message)
            raise ShardFailed(message)
    try:
        async with asyncio.timeout(DEATH_S):
            why = await link.death()
    except TimeoutError:
        why = f"closed its output and had not ended {DEATH_S:.0f} s later"
    raise PlatformGone(f"shard {index} {why}")


async def _reachable(url: str) -> None:
    """A target that is down at the start is the user's to fix (exit 2), not a lab failure."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        async with asyncio.timeout(10):
            _, writer = await asyncio.open_connection(parts.hostname, port)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(
            f"--target {url} is unreachable ({type(exc).__name__}): start the platform there,"
            " or check the URL"
        ) from exc
    writer.close()
    await writer.wait_closed()


def _merged_rows(rows: list[dict[str, float]]) -> dict[str, float]:
    """One sample of the whole fleet: counts add up; time is the latest shard's."""
    merged: dict[str, float] = {}
    for row in rows:
        for key, value in row.items():
            if key == "t_s":
                merged[key] = max(merged.get(key, value), value)
            else:
                merged[key] = merged.get(key, 0) + value
    return merged


__all__ = ["EXIT_HARNESS_ERROR", "ShardFailed", "ShardedLab", "default_shards", "follow"]
