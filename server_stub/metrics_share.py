"""/metrics across worker processes: each worker publishes its counts, a scrape adds them up.

With `serve --workers N` the kernel hands each connection to one of N processes, so a scrape
reaches one worker, whose request counters hold only its share of the traffic. Each worker
writes its counts (`Metrics.snapshot`, a few kB of JSON) to a file of its own beside the
database every `PUBLISH_S` and when it stops; the worker that answers a scrape adds its live
counts to the others' latest files (`Metrics.merged`), and says how many it added up
(`payg_workers_reporting`). The others' counts are at most `PUBLISH_S` old. The business
counters are read from the database at scrape time as before, so they are whole either way.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

PUBLISH_S = 1.0


def share_dir(db: str | Path) -> Path:
    return Path(f"{db}-metrics")


class MetricsShare:
    """Worker `worker` of `workers` on database `db`: its file and its peers'."""

    def __init__(self, db: str | Path, worker: int, workers: int) -> None:
        self.dir = share_dir(db)
        self.worker = worker
        self.workers = workers
        self.dir.mkdir(exist_ok=True)

    def _path(self, worker: int) -> Path:
        return self.dir / f"worker-{worker}.json"

    def publish(self, snapshot: dict[str, Any]) -> None:
        """Replace this worker's file at once (a reader never sees half of it)."""
        path = self._path(self.worker)
        part = path.with_suffix(f".{os.getpid()}.part")
        part.write_text(json.dumps(snapshot))
        os.replace(part, path)

    def peers(self) -> list[dict[str, Any]]:
        """The other workers' latest counts; a worker that has not published yet (or a file
        that cannot be read) is left out, and `payg_workers_reporting` shows it."""
        found = []
        for worker in range(self.workers):
            if worker == self.worker:
                continue
            with contextlib.suppress(OSError, ValueError):
                doc = json.loads(self._path(worker).read_text())
                if (
                    isinstance(doc, dict)
                    and {"requests", "auth_failures", "write_lock"} <= doc.keys()
                ):
                    found.append(doc)
        return found
