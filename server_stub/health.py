"""Report health: the first page of each critical report, timed against a budget.

One check, two callers: `/readyz` runs the reports in process (on the report threads), and
`server-stub check-reports` runs them over HTTP against a platform, as the seed's operator
ran them from CI and cron. Each caller gives the check a way to fetch a first page (a
`FirstPage`); the check times it, judges it and the table says what it found.

Reports do not ask for a token yet; `check-reports` already sends its `--token` as
`Authorization: Bearer`, which the platform will require once distributors are tenants.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from .errors import ServerError

CRITICAL = ("sales", "collections", "devices", "activation")
"""The reports distributors rely on: each one's first page is checked (Metrics usage is not
one of them: a fleet without connected meters has none)."""
DEFAULT_BUDGET_MS = 500.0
OK = "ok"
OVER_BUDGET = "over budget"
TIMED_OUT = "timed out"
FAILED = "failed"


class ReportFailed(ServerError):
    """A report's first page came back broken (not a page, a dropped answer, a database
    error): the report fails its check; the others are still checked."""


class FirstPage(Protocol):
    async def __call__(self, report: str) -> int:
        """Fetch `report`'s first page; its HTTP status (200 when it ran in process)."""
        ...


@dataclass(frozen=True, slots=True)
class Check:
    report: str
    status: int | None
    """None: no page (timed out, or broken: see `problem`)."""
    ms: float
    budget_ms: float
    problem: str = ""

    @property
    def verdict(self) -> str:
        if self.status is None:
            return TIMED_OUT if self.problem == TIMED_OUT else FAILED
        if self.status != 200:
            return FAILED
        return OVER_BUDGET if self.ms > self.budget_ms else OK

    @property
    def ok(self) -> bool:
        return self.verdict == OK

    def as_dict(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "report": self.report,
            "status": self.status,
            "ms": round(self.ms, 3),
            "budget_ms": self.budget_ms,
            "verdict": self.verdict,
        }
        if self.problem:
            doc["problem"] = self.problem
        return doc


async def check_reports(
    first_page: FirstPage,
    budget_ms: float,
    *,
    timeout_s: float,
    reports: Sequence[str] = CRITICAL,
    clock: Callable[[], float] = time.perf_counter,
) -> list[Check]:
    """Each report's first page, one after the other (each timed alone), at most
    `timeout_s` each. What `first_page` raises besides `ReportFailed` (e.g. the platform is
    unreachable) is the caller's to answer."""
    checks = []
    for report in reports:
        began = clock()
        status: int | None = None
        problem = ""
        try:
            async with asyncio.timeout(timeout_s):
                status = await first_page(report)
        except TimeoutError:
            problem = TIMED_OUT
        except ReportFailed as exc:
            problem = str(exc)
        checks.append(Check(report, status, (clock() - began) * 1000, budget_ms, problem))
    return checks


def healthy(checks: Sequence[Check]) -> bool:
    return all(c.ok for c in checks)


def table(checks: Sequence[Check]) -> str:
    """report, status, ms, budget, verdict: one line each, aligned."""
    rows = [("report", "status", "ms", "budget", "verdict")]
    for c in checks:
        why = f": {c.problem}" if c.problem and c.problem != TIMED_OUT else ""
        status = "-" if c.status is None else str(c.status)
        rows.append((c.report, status, f"{c.ms:.1f}", f"{c.budget_ms:g}", c.verdict + why))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]

    def line(r: tuple[str, ...]) -> str:
        numbers = (v.rjust(w) for v, w in zip(r[1:4], widths[1:], strict=True))
        return "  ".join([r[0].ljust(widths[0]), *numbers, r[4]])

    return "\n".join(line(r) for r in rows)


def over_http(session: aiohttp.ClientSession, url: str, token: str) -> FirstPage:
    """A `FirstPage` for a platform at `url`: GET /v1/reports/NAME with the bearer token."""
    base = url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"}

    async def first_page(report: str) -> int:
        try:
            async with session.get(f"{base}/v1/reports/{report}", headers=headers) as response:
                body = await response.read()
        except aiohttp.ClientConnectorError:
            raise  # the platform is not there: the caller says so, once
        except aiohttp.ClientError as exc:
            raise ReportFailed(f"{type(exc).__name__}: {exc}") from exc
        if response.status == 200 and not _is_page(body):
            raise ReportFailed("answered 200 but not with a report page")
        return response.status

    return first_page


def _is_page(body: bytes) -> bool:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(doc, dict) and isinstance(doc.get("items"), list)
