"""The store thread: one worker, so each request's work is one transaction with no interleaving,
with an urgent lane that goes ahead of queued work.

A mobile-money callback is a few milliseconds of work, but behind a FIFO of sync batches (each
issuing tens of keycodes) it waits hundreds of milliseconds; that wait is activation latency
the customer sees. Urgent jobs are taken first; among equals, submission order is kept.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

URGENT = 0
NORMAL = 1

Job = tuple[int, int, "Future[Any]", Callable[[], Any]]


class StoreThread(Executor):
    def __init__(self, name: str = "store") -> None:
        self._jobs: list[Job] = []
        self._ready = threading.Condition()
        self._order = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        return self.submit_at(NORMAL, lambda: fn(*args, **kwargs))

    def submit_at(self, priority: int, job: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("the store thread is shut down")
            heapq.heappush(self._jobs, (priority, next(self._order), future, job))
            self._ready.notify()
        return future

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._jobs and not self._closed:
                    self._ready.wait()
                if not self._jobs:
                    return  # closed and drained
                _, _, future, job = heapq.heappop(self._jobs)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = job()
            except BaseException as exc:  # handed to the awaiting request, as a pool would
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; what is queued still runs (nothing accepted is dropped)."""
        with self._ready:
            self._closed = True
            if cancel_futures:
                for _, _, future, _ in self._jobs:
                    future.cancel()
            self._ready.notify_all()
        if wait:
            self._thread.join()
