"""The store thread: one worker, so each request's work is one transaction with no interleaving,
with an urgent lane that goes ahead of queued work, and group commit for sync exchanges.

A mobile-money callback is a few milliseconds of work, but behind a FIFO of sync batches (each
issuing tens of keycodes) it waits hundreds of milliseconds; that wait is activation latency
the customer sees. Urgent jobs are taken first; among equals, submission order is kept.

Group commit: at hundreds of exchanges a second, each transaction's commit (an fsync) is most of
the store thread's time. Jobs submitted with `submit_grouped` that wait together are run as one
group (`grouping`, e.g. `Store.group`: each job's transaction a savepoint, one commit), and
every one of them is answered only after that commit: nothing is acknowledged before it is
durable. A job that fails rolls back alone; a failed commit fails the whole group. Urgent jobs
can be grouped too (mobile-money callbacks): a group starts with them, so they keep their lead
without paying a commit (an fsync, tens of milliseconds on a busy disk) each.

Durable off the store thread: when `durable` is set (`Store.sync_wal`: the store commits with
`synchronous=NORMAL` and the WAL file is fsynced here instead of inside each COMMIT), answers
go to a second thread, the syncer, which makes every commit so far durable with one fsync and
only then answers. Meanwhile the store thread applies the next jobs: the fsync (milliseconds on
a busy disk) no longer stalls the single writer. Grouped jobs that arrive while an fsync is in
flight join the open group, which commits when that fsync ends: they would wait for it anyway,
and the group pays one commit (its pages written to the WAL once) instead of one each.
They do not wake the store thread one by one (a wake-up and the hand-overs of the interpreter
lock it brings cost more than a small job: at 1,500 exchanges a second, the platform's
threads switched ~7 times per exchange): it is woken when the fsync ends, or sooner once
`JOIN_WAKE` wait.
Answers keep their order, and nothing is answered before its commit is on the disk.

`answer_grouped` answers on the caller's event loop instead of through a thread-safe future:
after the commit, a group's answers reach each waiting loop in one wake-up (one
`call_soon_threadsafe`), not one per request (a future's callback, a wake-up and a copy of its
state each, on both threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

URGENT = 0
NORMAL = 1
GROUPED = 2  # sync exchanges: after other normal work (reports wait on them less), in groups
MAX_GROUP = 256
JOIN_WAKE = 8
"""Grouped jobs queued before a store thread waiting to join an open group is woken ahead
of the end of the fsync it waits for (which always wakes it)."""
COMMIT_DELAY_S = 0.002
"""How long a group stays open for more jobs, fsync or not, when the group before it had
company (one job each time: no wait, a lone handset's answer is not delayed)."""


@dataclass(frozen=True)
class _OnLoop:
    """Where a job's answer goes when its caller waits on an event loop."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


Reply = Future[Any] | _OnLoop
Job = tuple[int, int, Reply, Callable[[], Any], bool]  # ..., groupable
Outcome = tuple[Reply, bool, Any]  # where to, ok, result or exception


class StoreThread(Executor):
    """`inline=True`: no thread, each job runs when submitted on the caller's thread (a
    virtual-time loop must never wait on a thread it cannot see)."""

    def __init__(self, name: str = "store", *, inline: bool = False) -> None:
        self._jobs: list[Job] = []
        self._ready = threading.Condition()
        self._order = itertools.count()
        self._closed = False
        self.grouping: Callable[[], AbstractContextManager[None]] | None = None
        """Opens a group commit (set once the store is open); None: each job alone."""
        self.durable: Callable[[], None] | None = None
        """Makes every commit so far durable (set once the store is open, by a store that
        defers its fsync); None: each commit is durable when it returns."""
        self.hold_open = True
        """While an fsync is in flight, keep a group's transaction open for grouped jobs that
        arrive. False when other processes share the database: an open transaction holds the
        write lock they wait for, and they would wait out the fsync too."""
        self.changes: Callable[[], int] = lambda: 0
        """The store's count of changed rows (on the store thread): when it has not grown
        since the last `durable`, an answer needs no fsync."""
        self.commit_delay_s = COMMIT_DELAY_S
        """See COMMIT_DELAY_S; only with `hold_open` (one writer)."""
        self._company = False  # the last group had more than one job (store thread only)
        self._syncing: list[tuple[int, list[Outcome]]] = []
        self._fsyncing = False  # guarded by _ready: an open group may wait for its end
        self._joining_waits = False  # guarded by _ready: it does
        self._synced = threading.Condition()
        self._syncer: threading.Thread | None = None
        self._thread: threading.Thread | None = None
        if not inline:
            self._thread = threading.Thread(target=self._work, name=name, daemon=True)
            self._thread.start()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        return self.submit_at(NORMAL, lambda: fn(*args, **kwargs))

    def submit_at(
        self, priority: int, job: Callable[[], T], *, groupable: bool = False
    ) -> Future[T]:
        future: Future[T] = Future()
        self._queue(priority, future, job, groupable)
        return future

    def submit_grouped(self, job: Callable[[], T], priority: int = GROUPED) -> Future[T]:
        """Like `submit_at`, allowed to share one commit with other grouped jobs."""
        return self.submit_at(priority, job, groupable=True)

    def answer_grouped(self, job: Callable[[], T], priority: int = GROUPED) -> asyncio.Future[T]:
        """Like `submit_grouped`, answered on the running event loop (call it from there)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue(priority, _OnLoop(loop, future), job, True)
        return future

    def _queue(self, priority: int, reply: Reply, job: Callable[[], Any], groupable: bool) -> None:
        with self._ready:
            if self._closed:
                raise RuntimeError("the store thread is shut down")
            if self._thread is None:  # inline: a job alone is its own transaction
                if _start(reply):
                    _deliver([_outcome(reply, job)], inline=True)
                return
            heapq.heappush(self._jobs, (priority, next(self._order), reply, job, groupable))
            if not (self._joining_waits and groupable) or len(self._jobs) >= JOIN_WAKE:
                self._ready.notify()  # (a joining wait: they wait for the fsync's end anyway)

    def _take(self) -> list[Job] | None:
        """The next job, and when it is groupable every groupable job queued right behind it
        (up to MAX_GROUP); None when closed."""
        with self._ready:
            while not self._jobs and not self._closed:
                self._ready.wait()
            if not self._jobs:
                return None  # closed and drained
            taken = [heapq.heappop(self._jobs)]
            if taken[0][4] and self.grouping is not None:  # every groupable job next in line
                while self._jobs and self._jobs[0][4] and len(taken) < MAX_GROUP:
                    taken.append(heapq.heappop(self._jobs))
            return taken

    def _work(self) -> None:
        try:
            while (taken := self._take()) is not None:
                running = [(reply, job) for _, _, reply, job, _ in taken if _start(reply)]
                joinable = self._fsyncing or self._company
                alone = len(taken) == 1 and not (taken[0][4] and joinable and self.hold_open)
                if alone or self.grouping is None:  # (a group now: others may join it)
                    self._company = False
                    for reply, job in running:
                        self._answer([_outcome(reply, job)])
                    continue
                outcomes: list[Outcome] = []
                try:
                    with self.grouping():
                        outcomes = self._run_group(running)
                except BaseException as exc:  # the commit failed: nobody's work is durable
                    self._answer([(reply, False, exc) for reply, _ in running])
                    continue
                self._company = len(running) > 1
                self._answer(outcomes)  # answered only after the commit (and its fsync)
        finally:
            with self._synced:
                self._syncing.append((-1, []))  # the syncer's last batch: stop after it
                self._synced.notify()

    def _run_group(self, running: list[tuple[Reply, Callable[[], Any]]]) -> list[Outcome]:
        """Each job of the open group (its failure is its own: its savepoint is rolled back),
        and, while an fsync is in flight, the groupable jobs that arrive meanwhile: they would
        wait for that fsync anyway, and joining makes one commit instead of one each. Jobs
        that join are added to `running` (a failed commit fails them too)."""
        outcomes = [_outcome(reply, job, catch=Exception) for reply, job in running]
        until = time.monotonic() + self.commit_delay_s if self._company else 0.0
        while len(running) < MAX_GROUP and (more := self._joining(MAX_GROUP - len(running), until)):
            joined = [(reply, job) for _, _, reply, job, _ in more if _start(reply)]
            running += joined
            outcomes += [_outcome(reply, job, catch=Exception) for reply, job in joined]
        return outcomes

    def _joining(self, room: int, until: float) -> list[Job]:
        """Groupable jobs queued next (at most `room`), waiting for them while an fsync is in
        flight or until `until` (monotonic; the commit delay); [] once both are over, at
        shutdown, or when a job that cannot join is next."""
        with self._ready:
            while True:
                if self._jobs and self._jobs[0][4]:
                    taken: list[Job] = []
                    while self._jobs and self._jobs[0][4] and len(taken) < room:
                        taken.append(heapq.heappop(self._jobs))
                    return taken
                if self._jobs or self._closed or not self.hold_open:
                    return []
                left = until - time.monotonic()
                if not self._fsyncing and left <= 0:
                    return []
                self._joining_waits = True  # (the end of the fsync wakes it only then)
                self._ready.wait(None if self._fsyncing and left <= 0 else left)
                self._joining_waits = False

    def _answer(self, outcomes: list[Outcome]) -> None:
        """Deliver now when commits are durable as they return; else through the syncer."""
        if self.durable is None:
            _deliver(outcomes)
            return
        mark = self.changes()  # read here, on the store thread, after the commit
        with self._synced:
            if self._syncer is None:
                self._syncer = threading.Thread(target=self._sync, name="syncer", daemon=True)
                self._syncer.start()
            self._syncing.append((mark, outcomes))
            self._synced.notify()

    def _sync(self) -> None:
        """The syncer: one `durable` call for every batch waiting, then their answers (a
        failed one fails them all: their commits may not be on the disk)."""
        assert self.durable is not None
        synced = 0
        while True:
            with self._synced:
                while not self._syncing:
                    self._synced.wait()
                batches, self._syncing = self._syncing, []
            outcomes = [o for _, batch in batches for o in batch]
            mark = max(m for m, _ in batches)
            if mark > synced:
                self._set_fsyncing(True)
                try:
                    self.durable()
                    synced = mark
                except BaseException as exc:
                    outcomes = [(reply, False, exc) for reply, _, _ in outcomes]
                finally:
                    self._set_fsyncing(False)
            _deliver(outcomes)
            if batches[-1][0] == -1:  # the store thread has stopped
                return

    def _set_fsyncing(self, on: bool) -> None:
        with self._ready:  # the store thread may be waiting for the end of this fsync
            self._fsyncing = on
            if not on and self._joining_waits:
                self._ready.notify()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; what is queued still runs (nothing accepted is dropped)."""
        with self._ready:
            self._closed = True
            if cancel_futures:  # nothing queued runs: every waiter is told it was cancelled
                for _, _, reply, _, _ in self._jobs:
                    if isinstance(reply, Future):
                        reply.cancel()
                    else:
                        with contextlib.suppress(RuntimeError):  # its loop is closed
                            reply.loop.call_soon_threadsafe(reply.future.cancel)
                self._jobs.clear()
            self._ready.notify_all()
        if wait and self._thread is not None:
            self._thread.join()
            with self._synced:
                syncer = self._syncer
            if syncer is not None:
                syncer.join()


def _start(reply: Reply) -> bool:
    """Whether the job is still wanted (not cancelled while it waited)."""
    if isinstance(reply, _OnLoop):
        return not reply.future.cancelled()
    return reply.set_running_or_notify_cancel()


def _outcome(
    reply: Reply, job: Callable[[], Any], catch: type[BaseException] = BaseException
) -> Outcome:
    try:
        return reply, True, job()
    except catch as exc:  # handed to the awaiting request, as a pool would
        return reply, False, exc


def _deliver(outcomes: list[Outcome], *, inline: bool = False) -> None:
    """Answer each job: a thread-safe future at once, a loop's futures in one wake-up per loop
    (`inline`: on that loop's own thread, at once)."""
    on_loops: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for outcome in outcomes:
        reply = outcome[0]
        if isinstance(reply, _OnLoop):
            on_loops.setdefault(reply.loop, []).append(outcome)
        elif outcome[1]:
            reply.set_result(outcome[2])
        else:
            reply.set_exception(outcome[2])
    for loop, answers in on_loops.items():
        if inline:
            _resolve(answers)
            continue
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_resolve, answers)


def _resolve(answers: list[Outcome]) -> None:
    """On the loop's thread: set each answer whose request still waits."""
    for reply, ok, value in answers:
        assert isinstance(reply, _OnLoop)
        if reply.future.cancelled():
            continue
        if ok:
            reply.future.set_result(value)
        else:
            reply.future.set_exception(value)
