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
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from contextlib import AbstractContextManager
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

URGENT = 0
NORMAL = 1
GROUPED = 2  # sync exchanges: after other normal work (reports wait on them less), in groups
MAX_GROUP = 256

Job = tuple[int, int, "Future[Any]", Callable[[], Any], bool]  # ..., groupable


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
        with self._ready:
            if self._closed:
                raise RuntimeError("the store thread is shut down")
            if self._thread is None:  # inline: a job alone is its own transaction
                if future.set_running_or_notify_cancel():
                    _settle(future, job)
                return future
            heapq.heappush(self._jobs, (priority, next(self._order), future, job, groupable))
            self._ready.notify()
        return future

    def submit_grouped(self, job: Callable[[], T], priority: int = GROUPED) -> Future[T]:
        """Like `submit_at`, allowed to share one commit with other grouped jobs."""
        return self.submit_at(priority, job, groupable=True)

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
        while (taken := self._take()) is not None:
            running = [(f, job) for _, _, f, job, _ in taken if f.set_running_or_notify_cancel()]
            if len(taken) == 1 or self.grouping is None:
                for future, job in running:
                    _settle(future, job)
                continue
            outcomes: list[tuple[Future[Any], bool, Any]] = []
            try:
                with self.grouping():
                    for future, job in running:
                        try:
                            outcomes.append((future, True, job()))
                        except Exception as exc:  # this job's savepoint is rolled back
                            outcomes.append((future, False, exc))
            except BaseException as exc:  # the commit failed: nobody's work is durable
                for future, _ in running:
                    future.set_exception(exc)
                continue
            for future, ok, value in outcomes:  # answered only now, after the commit
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; what is queued still runs (nothing accepted is dropped)."""
        with self._ready:
            self._closed = True
            if cancel_futures:
                for _, _, future, _, _ in self._jobs:
                    future.cancel()
            self._ready.notify_all()
        if wait and self._thread is not None:
            self._thread.join()


def _settle(future: Future[Any], job: Callable[[], Any]) -> None:
    try:
        result = job()
    except BaseException as exc:  # handed to the awaiting request, as a pool would
        future.set_exception(exc)
    else:
        future.set_result(result)
