"""`server-stub serve --workers N`: N processes serving one listening socket and one database.

One process is held to about one core by its GIL (event loop, store thread and report readers
take turns on it). Here the parent binds the socket, forks N workers that each accept on it
with their own event loop, store thread and report readers (the kernel hands each new
connection to one worker), and then only supervises: SIGTERM or SIGINT is passed on to every
worker, and when one worker exits the others are stopped too, so the service is either whole or
gone (a supervisor such as systemd restarts it). What the workers share, and how, is in
docs/platform.md ("Several processes").

Forking happens before anything starts a thread (nothing is open yet but the socket), which is
when it is safe.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from types import FrameType

STOP_GRACE_S = 10.0
"""After the stop timeout the workers were given, how long before they are killed."""


def serve_forked(workers: int, serve: Callable[[int], int], stop_timeout_s: float) -> int:
    """Run `serve(i)` in `workers` forked children (i = 0..workers-1) until they all exit;
    returns 0 when every one exited 0, else the first other exit code (a signal: 1)."""
    children: dict[int, int] = {}
    for worker in range(workers):
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the parent's code
            code = 1
            try:
                code = serve(worker)
            finally:
                os._exit(code)
        children[pid] = worker

    stopping = False
    deadline: float | None = None

    def stop(signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        nonlocal stopping, deadline
        stopping = True
        if deadline is None:
            deadline = time.monotonic() + stop_timeout_s + STOP_GRACE_S
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        while children:
            pid, status = _wait_one(deadline)
            if pid == 0:  # the grace time is over: whoever is left is killed
                for left in children:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(left, signal.SIGKILL)
                deadline = None  # (killed: they are reaped next)
                continue
            children.pop(pid, None)
            exited = os.waitstatus_to_exitcode(status)
            if exited != 0 and code == 0:
                code = exited if exited > 0 else 1
            if not stopping:  # one worker is gone: stop the others (the service is whole or gone)
                stop()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code


def _wait_one(deadline: float | None) -> tuple[int, int]:
    """The next child to exit, (0, 0) once `deadline` passes first (polled: a blocking wait
    could not end at a deadline)."""
    while True:
        pid, status = os.waitpid(-1, 0 if deadline is None else os.WNOHANG)
        if pid != 0:
            return pid, status
        assert deadline is not None
        if time.monotonic() >= deadline:
            return 0, 0
        time.sleep(0.05)
