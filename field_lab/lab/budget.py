"""The file descriptors a run needs, counted before it starts, and the limit it may raise.

Every emulated handset keeps its database open (`Storage.descriptors` each); a handset holds a
socket while it syncs, and at most `max_syncing` sync at once (twice that when the platform is
embedded: the server's end of each connection is in this process too). Setting-up runs
`SETUP_CONCURRENCY` at a time. As many handsets as the rest of the limit has a
socket for (`Budget.warm`) keep their connections open between polls. The lab raises
its soft `RLIMIT_NOFILE` to the hard one and refuses to start, with one line saying what it
needs and has, when that is not enough.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import Protocol

from field_lab.errors import BudgetError

BASE = 256
"""The interpreter, the event loop, the platform's own files, report readers, the operator."""


class Limits(Protocol):
    """Where the descriptor limit comes from (the real rlimit, or a test's)."""

    def raise_soft(self) -> int:
        """Raise the soft limit as far as allowed; return the limit now in force."""
        ...


class ProcessLimits:
    """This process's `RLIMIT_NOFILE`: the soft limit is raised to the hard one."""

    def raise_soft(self) -> int:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):
                pass  # keep the soft limit we have; the budget says whether it is enough
        return soft


@dataclass(frozen=True)
class Budget:
    handsets: int
    per_database: int
    max_syncing: int
    setup_concurrency: int
    embedded: bool

    @property
    def per_socket(self) -> int:
        return 2 if self.embedded else 1

    @property
    def needed(self) -> int:
        sockets = max(self.max_syncing, self.setup_concurrency) * self.per_socket
        return BASE + self.handsets * self.per_database + sockets + 1  # +1: a journal open

    def warm(self, limit: int) -> int:
        """How many handsets `limit` lets keep an idle connection open (each then holds a
        socket, beside the `max_syncing` the others may open at once)."""
        spare = max(0, limit - self.needed) // self.per_socket
        return min(self.handsets, spare)

    def ensure(self, limits: Limits) -> int:
        """The limit in force, once raised; `BudgetError` when it cannot cover the run."""
        have = limits.raise_soft()
        if have < self.needed:
            what = f"{self.handsets} handsets x {self.per_database}" if self.handsets else "none"
            raise BudgetError(
                f"this run needs {self.needed} file descriptors (databases: {what};"
                f" connections: {self.max_syncing} at once) and the machine allows {have}"
                " (ulimit -n); raise the hard limit, run fewer --agents, or split them over"
                " more --shards or machines"
            )
        return have
