"""WAL checkpoints on their own thread and connection, not in the store thread's commits.

SQLite's automatic checkpoint runs inside the commit that takes the log past 1,000 pages: the
committing thread copies the log's pages into the database file and syncs it (tens of
milliseconds on a busy disk). On the platform that thread is the store thread, so every few
exchanges one group commit, and every sync waiting behind it, stalls. Here the store's
connection checkpoints never (``wal_autocheckpoint=0``) and a `Checkpointer` thread runs a
PASSIVE checkpoint every `interval_s` from its own connection: it never blocks the writer or
the report readers (it copies what no reader still needs and stops there), and the log restarts
from the beginning once a checkpoint has copied all of it.

Durability is not involved: a commit is durable when its log frames are synced, before any
checkpoint (``synchronous=FULL``); with ``synchronous=NORMAL`` the checkpoint is where the log
is synced, and it still happens, every `interval_s`.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

INTERVAL_S = 0.2
"""At 5,000 operations a second about 1,000 operations' pages: a log of a few megabytes."""
JOIN_TIMEOUT_S = 30.0


class Checkpointer:
    """Checkpoints `path`'s WAL every `interval_s` until `stop`; the writer's own connection
    must have ``wal_autocheckpoint=0`` (see `start_for`)."""

    def __init__(self, path: str | Path, interval_s: float = INTERVAL_S) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.path = str(path)
        self.interval_s = interval_s
        self.checkpoints = 0
        """Checkpoints run so far (tests and diagnostics)."""
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpoint", daemon=True)

    @classmethod
    def start_for(
        cls, writer: sqlite3.Connection, path: str | Path, interval_s: float = INTERVAL_S
    ) -> Checkpointer:
        """Stop `writer`'s automatic checkpoints and start checkpointing from a thread."""
        writer.execute("PRAGMA wal_autocheckpoint=0")
        checkpointer = cls(path, interval_s)
        checkpointer._thread.start()
        return checkpointer

    def _run(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA busy_timeout=10000")
            while not self._stopping.wait(self.interval_s):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # e.g. the disk is full: try again next time
                    log.warning("checkpoint failed: %s", exc)
                    continue
                self.checkpoints += 1
        finally:
            db.close()

    def stop(self) -> None:
        """Stop after the checkpoint running, if any (bounded); closing the store's connection
        afterwards checkpoints what is left, as SQLite does when the last one closes."""
        self._stopping.set()
        self._thread.join(JOIN_TIMEOUT_S)
