"""The tenant filter every distributor-facing query applies: rows whose agent ``a`` belongs to
``:distributor`` (``NULL``: every distributor's, for the operator's own probes only)."""

from __future__ import annotations

SCOPE = "(:distributor IS NULL OR a.distributor = :distributor)"
