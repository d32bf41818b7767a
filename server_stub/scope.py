"""The tenant filter every distributor-facing query applies, as a seam.

`Reports` takes a `Scope` in its constructor and puts its `where` into the WHERE clause of every
report and payment query. `TENANT` is the only one the platform uses: rows whose agent ``a``
belongs to ``:distributor`` (``NULL``: every distributor's, for the operator's own probes
only). Tests inject a broken one to prove the isolation property test would catch a query that
forgot its tenant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

SCOPE = "(:distributor IS NULL OR a.distributor = :distributor)"


class Scope(Protocol):
    @property
    def where(self) -> str:
        """A SQL condition over the agents table as ``a`` and the ``:distributor`` parameter."""
        ...


@dataclass(frozen=True)
class TenantScope:
    where: str = SCOPE


TENANT = TenantScope()
