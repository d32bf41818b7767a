"""One writer at a time across processes, waiting in the kernel instead of in SQLite's sleeps.

With several worker processes on one database (`server-stub serve --workers N`), their store
threads contend for SQLite's single write lock. SQLite's busy handler polls for it, sleeping
1, 2, 5, 10, 15, 20, 25, 25, 25, 50, ... ms between tries: a writer that just missed the lock
sleeps on while the other commits, and every sync waiting behind it pays that sleep (tens of
milliseconds on a sync p99 budget of 50). Here a store takes an exclusive `flock` on a file
beside the database before BEGIN IMMEDIATE and releases it after COMMIT or ROLLBACK: a waiting
writer sleeps in the kernel (the GIL released) and wakes the moment the lock is free.

Only writers of the same database that use this lock are ordered by it; any other (the CLI's
set-up commands) still meets SQLite's own lock and its busy timeout, which stays correct.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path


def lock_path(db: str | Path) -> Path:
    """The lock file of database `db` (made on first use, never removed: it holds no data)."""
    return Path(f"{db}-writer")


class WriteLock:
    """An exclusive lock on `lock_path(db)`, held by one transaction at a time. It counts the
    seconds spent waiting for it and holding it (/metrics): their sum over the workers, per
    second, is how busy the one writer's seat is, the resource no added worker multiplies."""

    def __init__(self, db: str | Path) -> None:
        self._fd: int | None = os.open(lock_path(db), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.waited_s = 0.0
        self.held_s = 0.0
        self.held_cpu_s = 0.0
        """Of `held_s`, the holder's own CPU time; the rest it waited, lock in hand, for its
        process's GIL or for a core."""
        self.taken = 0
        self._since = 0.0
        self._since_cpu = 0.0

    def acquire(self) -> None:
        """Block until no other process holds it (flock releases the GIL while it waits)."""
        assert self._fd is not None, "the write lock is closed"
        asked = time.perf_counter()
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._since = time.perf_counter()
        self._since_cpu = time.thread_time()
        self.waited_s += self._since - asked
        self.taken += 1

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            self.held_s += time.perf_counter() - self._since
            self.held_cpu_s += time.thread_time() - self._since_cpu

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # (releases it too)
            self._fd = None
