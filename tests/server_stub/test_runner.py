"""The store thread: urgent jobs run before queued normal ones, equals keep submission order,
errors reach the caller, and shutdown runs everything already accepted."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server_stub.runner import NORMAL, URGENT, StoreThread


@given(st.lists(st.sampled_from([URGENT, NORMAL]), max_size=20))
def test_queued_jobs_run_urgent_first_then_in_submission_order(priorities: list[int]) -> None:
    thread = StoreThread()
    gate = threading.Event()
    ran: list[int] = []
    try:
        thread.submit(gate.wait, 10)  # hold the worker so everything below queues
        futures = [thread.submit_at(p, lambda i=i: ran.append(i)) for i, p in enumerate(priorities)]
        gate.set()
        for f in futures:
            f.result(timeout=10)
    finally:
        gate.set()
        thread.shutdown()
    expected = sorted(range(len(priorities)), key=lambda i: (priorities[i], i))
    assert ran == expected


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
