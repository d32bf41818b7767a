"""The store thread: urgent jobs run before queued normal ones, equals keep submission order,
errors reach the caller, shutdown runs everything already accepted, and grouped jobs share one
commit and are answered only after it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from functools import partial
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server_stub.runner import JOIN_WAKE, NORMAL, URGENT, StoreThread


@given(st.lists(st.sampled_from([URGENT, NORMAL]), max_size=20))
def test_queued_jobs_run_urgent_first_then_in_submission_order(priorities: list[int]) -> None:
    ran: list[int] = []
    run_queued(
        StoreThread(),
        lambda t: [t.submit_at(p, lambda i=i: ran.append(i)) for i, p in enumerate(priorities)],
    )
    expected = sorted(range(len(priorities)), key=lambda i: (priorities[i], i))
    assert ran == expected


def run_queued(thread: StoreThread, submit: Callable[[StoreThread], list[Future[Any]]]) -> None:
    """Submit while the worker is held, so everything queues; then run it all and stop."""
    gate = threading.Event()
    try:
        hold(thread, gate)
        futures = submit(thread)
        gate.set()
        for f in futures:
            f.result(timeout=10)
    finally:
        gate.set()
        thread.shutdown()


def test_errors_reach_the_caller_and_shutdown_drains_accepted_work() -> None:
    thread = StoreThread()
    gate = threading.Event()
    thread.submit(gate.wait, 10)

    def boom() -> None:
        raise ValueError("refused")

    failing = thread.submit(boom)
    later = thread.submit(lambda: 42)
    stopping = threading.Thread(target=thread.shutdown)
    stopping.start()  # shutdown waits for the queue, not just the running job
    gate.set()
    stopping.join(10)
    with pytest.raises(ValueError, match="refused"):
        failing.result(timeout=0)
    assert later.result(timeout=0) == 42
    with pytest.raises(RuntimeError, match="shut down"):
        thread.submit(lambda: 1)


class Recorder:
    """A grouping seam that logs each group's jobs and its commit; `fail_commit` breaks it."""

    def __init__(self, fail_commit: bool = False) -> None:
        self.log: list[object] = []
        self.fail_commit = fail_commit

    @contextlib.contextmanager
    def group(self) -> Iterator[None]:
        self.log.append("begin")
        yield
        if self.fail_commit:
            raise OSError("disk full")
        self.log.append("commit")


def hold(thread: StoreThread, gate: threading.Event) -> None:
    """Occupy the worker until `gate` is set (returns once it is occupied)."""
    busy = threading.Event()
    thread.submit(lambda: (busy.set(), gate.wait(10)))
    assert busy.wait(10)


def grouped_run(recorder: Recorder) -> tuple[list[Future[int]], Future[int], Future[int]]:
    """Queue behind a held worker: two sync jobs (one failing), an urgent grouped job, a
    normal one; then let it all run."""
    thread = StoreThread()
    thread.grouping = recorder.group
    gate = threading.Event()

    def job(name: str, fails: bool = False) -> Callable[[], int]:
        def run() -> int:
            recorder.log.append(name)
            if fails:
                raise ValueError(name)
            return len(name)

        return run

    try:
        hold(thread, gate)
        syncs = [thread.submit_grouped(job("sync1")), thread.submit_grouped(job("bad", True))]
        normal = thread.submit(job("normal"))
        urgent = thread.submit_grouped(job("mm"), URGENT)
        for f in [*syncs, normal, urgent]:  # each answer must find its group committed
            f.add_done_callback(lambda f: recorder.log.append(("answered", f)))
        gate.set()
        for f in [*syncs, normal, urgent]:
            f.exception(timeout=10)
    finally:
        gate.set()
        thread.shutdown()
    return syncs, normal, urgent


def test_groups_commit_once_and_answer_only_after_the_commit() -> None:
    recorder = Recorder()
    (sync1, bad), normal, urgent = grouped_run(recorder)
    names = [e for e in recorder.log if isinstance(e, str)]
    # the urgent callback goes first, alone (a normal job is next in line), then the normal
    # job, then both sync jobs in one group with one commit
    assert names == ["mm", "normal", "begin", "sync1", "bad", "commit"]
    commit = recorder.log.index("commit")
    for f in (sync1, bad):
        assert recorder.log.index(("answered", f)) > commit
    assert (sync1.result(0), urgent.result(0), normal.result(0)) == (5, 2, 6)
    with pytest.raises(ValueError, match="bad"):  # one job's failure stays its own
        bad.result(0)


def test_urgent_grouped_jobs_lead_the_group_of_sync_jobs() -> None:
    recorder = Recorder()
    thread = StoreThread()
    thread.grouping = recorder.group
    run_queued(
        thread,
        lambda t: [
            *(t.submit_grouped(lambda i=i: recorder.log.append(i)) for i in range(3)),
            t.submit_grouped(lambda: recorder.log.append("mm"), URGENT),
        ],
    )
    assert recorder.log == ["begin", "mm", 0, 1, 2, "commit"]


def test_a_failed_commit_fails_every_job_of_the_group() -> None:
    recorder = Recorder(fail_commit=True)
    (sync1, bad), normal, urgent = grouped_run(recorder)
    assert "commit" not in recorder.log
    for f in (sync1, bad):
        with pytest.raises(OSError, match="disk full"):
            f.result(0)
    assert (normal.result(0), urgent.result(0)) == (6, 2)  # not in that group


async def test_shutdown_cancelling_futures_runs_nothing_queued_and_tells_each_waiter() -> None:
    thread = StoreThread()
    gate = threading.Event()
    ran: list[str] = []
    try:
        hold(thread, gate)
        on_loop = thread.answer_grouped(lambda: ran.append("loop"))
        threadsafe = thread.submit_grouped(lambda: ran.append("pool"))
        thread.shutdown(wait=False, cancel_futures=True)
    finally:
        gate.set()
    thread.shutdown()
    await asyncio.sleep(0)  # the loop's cancellation arrives by call_soon_threadsafe
    assert ran == []
    assert on_loop.cancelled()
    assert threadsafe.cancelled()


class Disk:
    """A `durable` seam: counts its calls, can be held (an fsync taking its time) or fail."""

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.fail = fail

    def sync(self) -> None:
        self.entered.set()
        assert self.gate.wait(10)
        self.calls += 1
        if self.fail:
            raise OSError("fsync failed")


def syncing(disk: Disk, changes: list[int]) -> StoreThread:
    """A store thread whose commits are made durable by `disk`; `changes` is the store's
    count of changed rows (the last item), as the test moves it."""
    thread = StoreThread()
    thread.grouping = Recorder().group
    thread.durable = disk.sync
    thread.changes = lambda: changes[-1]
    return thread


def test_answers_wait_for_the_fsync_while_the_store_thread_goes_on() -> None:
    disk = Disk()
    changes = [1]
    thread = syncing(disk, changes)
    try:
        first = thread.submit_grouped(lambda: "wrote")
        assert disk.entered.wait(10)  # its fsync has begun: the answer waits for it
        ran = threading.Event()
        second = thread.submit(lambda: (changes.append(2), ran.set()))
        assert ran.wait(10)  # the writer was not held up by the fsync in flight
        assert not first.done()
        assert not second.done()
        disk.gate.set()
        assert first.result(10) == "wrote"
        second.result(10)
        assert disk.calls == 2  # the second job changed rows after the first fsync began
        thread.submit(lambda: "read").result(10)
        assert disk.calls == 2  # nothing changed since: answered without an fsync
    finally:
        disk.gate.set()
        thread.shutdown()


def test_a_failed_fsync_fails_the_answers_it_was_to_make_durable() -> None:
    disk = Disk(fail=True)
    thread = syncing(disk, [1])
    disk.gate.set()
    try:
        with pytest.raises(OSError, match="fsync failed"):
            thread.submit_grouped(lambda: "wrote").result(10)
    finally:
        thread.shutdown()


@contextlib.contextmanager
def fsync_in_flight(
    disk: Disk, recorder: Recorder, *, hold_open: bool = True
) -> Iterator[tuple[StoreThread, Future[None]]]:
    """A store thread with job "a" committed and its fsync in flight (until `disk.gate`);
    shut down on exit."""
    thread = StoreThread()
    thread.grouping = recorder.group
    thread.durable = disk.sync
    thread.changes = lambda: len(recorder.log)
    thread.hold_open = hold_open
    try:
        first = thread.submit_grouped(lambda: recorder.log.append("a"))
        assert disk.entered.wait(10)  # a's commit is being made durable
        yield thread, first
    finally:
        disk.gate.set()
        thread.shutdown()


def test_grouped_jobs_arriving_during_an_fsync_join_the_open_group() -> None:
    """They join when the fsync ends, before the group's commit, or as soon as JOIN_WAKE of
    them wait (not one wake-up of the store thread each)."""
    disk = Disk()
    recorder = Recorder()
    with fsync_in_flight(disk, recorder) as (thread, first):
        ran = threading.Event()
        later = [thread.submit_grouped(lambda: (recorder.log.append("b"), ran.set()))]
        assert ran.wait(10)  # b opened a group (others may join it while the fsync runs)
        ran.clear()
        names = [f"c{i}" for i in range(JOIN_WAKE)]
        for name in names[:-1]:
            later.append(thread.submit_grouped(partial(recorder.log.append, name)))
        assert not ran.wait(0.2)  # (nothing sets it: a bounded pause for a wrong wake-up)
        assert recorder.log == ["a", "begin", "b"]  # they wait: the thread was not woken
        later.append(thread.submit_grouped(lambda: (recorder.log.append(names[-1]), ran.set())))
        assert ran.wait(10)  # JOIN_WAKE waiting: they ran while the fsync was in flight...
        assert not disk.gate.is_set()
        assert "commit" not in recorder.log[recorder.log.index("b") :]  # ...uncommitted
        disk.gate.set()
        for f in (first, *later):
            f.result(10)
    assert recorder.log == ["a", "begin", "b", *names, "commit"]  # a alone: nothing to wait for


def test_a_grouped_job_arriving_during_an_fsync_joins_when_it_ends() -> None:
    disk = Disk()
    recorder = Recorder()
    with fsync_in_flight(disk, recorder) as (thread, first):
        ran = threading.Event()
        later = [thread.submit_grouped(lambda: (recorder.log.append("b"), ran.set()))]
        assert ran.wait(10)
        later.append(thread.submit_grouped(lambda: recorder.log.append("c")))
        disk.gate.set()
        for f in (first, *later):
            f.result(10)
    assert recorder.log == ["a", "begin", "b", "c", "commit"]


def test_a_job_that_cannot_join_ends_the_open_group_during_the_fsync() -> None:
    disk = Disk()
    recorder = Recorder()
    with fsync_in_flight(disk, recorder) as (thread, first):
        ran = threading.Event()
        later = [thread.submit_grouped(lambda: (recorder.log.append("b"), ran.set()))]
        assert ran.wait(10)
        ran.clear()
        later.append(thread.submit(lambda: (recorder.log.append("alone"), ran.set())))
        assert ran.wait(10)  # woken at once: it ran while the fsync was still in flight
        assert not disk.gate.is_set()
        disk.gate.set()
        for f in (first, *later):
            f.result(10)
    assert recorder.log == ["a", "begin", "b", "commit", "alone"]


def test_without_hold_open_no_group_stays_open_across_an_fsync() -> None:
    """Several workers: an open transaction holds the write lock the others wait for, so jobs
    arriving during an fsync are committed at once, not kept open until it ends."""
    disk = Disk()
    recorder = Recorder()
    with fsync_in_flight(disk, recorder, hold_open=False) as (thread, first):
        ran = threading.Event()
        later = [
            thread.submit_grouped(partial(lambda x: (recorder.log.append(x), ran.set()), x))
            for x in "bc"
        ]

        def settled() -> bool:  # b and c ran, and any group they share is committed
            log = recorder.log
            return "c" in log and (log[-1] == "commit" or "begin" not in log)

        for _ in range(100):  # bounded
            if settled():
                break
            ran.wait(0.1)
        assert settled()  # while the fsync is still in flight: no group waits for its end
        assert not disk.gate.is_set()
        disk.gate.set()
        for f in (first, *later):
            f.result(10)


def company(thread: StoreThread, recorder: Recorder) -> None:
    """Run a group of two jobs (queued behind a held worker) and wait for its answers."""
    gate = threading.Event()
    try:
        hold(thread, gate)
        first = [thread.submit_grouped(partial(recorder.log.append, x)) for x in "xy"]
    finally:
        gate.set()
    for f in first:
        f.result(10)


def test_after_a_group_with_company_the_next_stays_open_for_the_commit_delay() -> None:
    """No fsync in flight: a job arriving within the delay joins the group before it (one
    commit), and the group commits once the delay is over."""
    recorder = Recorder()
    thread = StoreThread()
    thread.grouping = recorder.group
    thread.commit_delay_s = 0.5  # (long enough for the test's second job to arrive within)
    try:
        company(thread, recorder)
        ran = threading.Event()
        z = thread.submit_grouped(lambda: (recorder.log.append("z"), ran.set()))
        assert ran.wait(10)  # z ran and its group is open, waiting for company
        w = thread.submit_grouped(partial(recorder.log.append, "w"))
        for f in (z, w):  # answered once the delay is over
            f.result(10)
    finally:
        thread.shutdown()
    assert recorder.log == ["begin", "x", "y", "commit", "begin", "z", "w", "commit"]


def test_a_lone_job_after_lone_jobs_is_not_delayed() -> None:
    recorder = Recorder()
    thread = StoreThread()
    thread.grouping = recorder.group
    thread.commit_delay_s = 0.05
    try:
        company(thread, recorder)
        thread.submit_grouped(partial(recorder.log.append, "z")).result(10)  # after 50 ms
        recorder.log.append("-")
        thread.commit_delay_s = 60.0  # (were a lone job held open, the test would time out)
        for name in "uv":  # z had no company: each of these runs alone, not delayed
            thread.submit_grouped(partial(recorder.log.append, name)).result(10)
    finally:
        thread.shutdown()
    assert recorder.log == ["begin", "x", "y", "commit", "begin", "z", "commit", "-", "u", "v"]
