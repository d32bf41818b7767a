"""Run the clauses in order against one platform and say, clause by clause, what held."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp

from .clauses import CLAUSES, Clause, Context, SetupProblem
from .handset import Failed
from .wire import Wire

DOC = "docs/sync-protocol.md"


class Unreachable(Exception):
    """The platform never answered: nothing about it can be judged."""


@dataclass(frozen=True)
class Verdict:
    clause: Clause
    passed: bool
    detail: str

    def line(self) -> str:
        word = "PASS" if self.passed else "FAIL"
        return f"{word}  {self.clause.name:<27} {DOC} § {self.clause.section:<27}  {self.detail}"


async def run_clauses(
    wire: Wire,
    agent: str,
    code: str,
    *,
    clauses: Sequence[Clause] = CLAUSES,
    clock: Callable[[], float] = time.time,
    timeout_s: float = 60.0,
    report: Callable[[Verdict], None] = lambda verdict: None,
) -> list[Verdict]:
    """Every clause's verdict, in order (each also handed to `report` as it is known).

    Raises SetupProblem when the platform refuses the agent and code, Unreachable when it
    never answers at all."""
    ctx = Context(wire, agent, code, clock)
    verdicts: list[Verdict] = []
    failed: set[str] = set()
    for clause in clauses:
        blocked = [name for name in clause.needs if name in failed]
        if blocked:
            verdict = Verdict(clause, False, f"not run: {blocked[0]} failed")
        else:
            verdict = await _judge(clause, ctx, timeout_s, answered=bool(verdicts))
        if not verdict.passed:
            failed.add(clause.name)
        verdicts.append(verdict)
        report(verdict)
    return verdicts


async def _judge(clause: Clause, ctx: Context, timeout_s: float, *, answered: bool) -> Verdict:
    try:
        async with asyncio.timeout(timeout_s):
            return Verdict(clause, True, await clause.check(ctx))
    except Failed as exc:
        return Verdict(clause, False, str(exc))
    except TimeoutError:
        return Verdict(clause, False, f"no answer within {timeout_s:g} s")
    except (aiohttp.ClientError, OSError) as exc:
        if not answered:
            raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
        return Verdict(clause, False, f"link failed: {type(exc).__name__}: {exc}")
    except SetupProblem:
        raise
