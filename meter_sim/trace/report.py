"""What a replay found, for people (text and a rich table) and for programs (JSON)."""

from __future__ import annotations

from collections import Counter
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from meter_sim.trace.replay import Check, Result, Status
from meter_sim.trace.replies import format_reply, show
from meter_sim.trace.runner import Timing

MAX_DETAILED = 20
"""Mismatches described in full; the rest are counted."""

VERDICT = {0: "identical", 1: "MISMATCH", 2: "usage or trace error", 3: "target unreachable"}


def describe_check(check: Check, source: str) -> list[str]:
    """A mismatch or timeout in words: where, expected, got, and the nearest recorded events."""
    where = f"event {check.index} ({source}:{check.line}) {check.event.label()}"
    expected = format_reply(check.event.reply) if check.event.reply else "(nothing recorded)"
    if check.status is Status.TIMEOUT:
        return [f"timeout at {where}", f"  expected: {expected}", "  got:      (no answer)"]
    got = format_reply(check.got) if check.got else "(nothing)"
    lines = [f"mismatch at {where}", f"  expected: {expected}", f"  got:      {got}"]
    lines.append(
        "  differs:  "
        + "; ".join(f"{d.field}: {show(d.expected)} -> {show(d.got)}" for d in check.diffs)
    )
    if check.nearest:
        lines.append("  nearest recorded events of this kind, by answer:")
        for near in check.nearest:
            verdict = (
                "answer matches what came back"
                if not near.differs
                else "differs in " + ", ".join(near.differs)
            )
            lines.append(f"    event {near.index} (line {near.line}) {near.label}: {verdict}")
    return lines


def render_text(result: Result, source: str) -> list[str]:
    lines: list[str] = []
    bad = [c for c in result.checks if c.status in (Status.MISMATCH, Status.TIMEOUT)]
    for check in bad[:MAX_DETAILED]:
        lines.extend(describe_check(check, source))
    if len(bad) > MAX_DETAILED:
        lines.append(f"... and {len(bad) - MAX_DETAILED} more")
    for incident in result.incidents[:MAX_DETAILED]:
        at = "" if incident.index is None else f" at event {incident.index}"
        lines.append(f"{incident.kind}{at}: {incident.detail}")
    hidden = len(result.incidents) - MAX_DETAILED + result.incidents_dropped
    if hidden > 0:
        lines.append(f"... and {hidden} more incidents")
    if result.aborted:
        lines.append(f"replay stopped: {result.aborted}")
    return lines


def summary_table(result: Result, timing: Timing, *, target: str, events: int) -> Table:
    table = Table(title=f"replay on {target}: {VERDICT.get(result.exit_code, '?')}")
    table.add_column("event")
    statuses = list(Status)
    for status in statuses:
        table.add_column(status.value, justify="right")
    kinds = result.by_kind()
    for kind, counts in sorted(kinds.items()):
        table.add_row(kind, *(str(counts[s]) for s in statuses))
    table.add_row("total", *(str(result.count(s)) for s in statuses), end_section=True)
    return table


def summary_line(result: Result, timing: Timing, *, events: int) -> str:
    done = len(result.checks)
    rate = done / timing.elapsed if timing.elapsed > 0 else float("inf")
    kinds = Counter(i.kind for i in result.incidents)
    detail = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))
    total = len(result.incidents) + result.incidents_dropped
    return (
        f"{done}/{events} events replayed in {timing.elapsed:.3f} s ({rate:,.0f} events/s);"
        f" {total} wire incidents" + (f" ({detail})" if detail else "")
    )


def print_report(
    result: Result, timing: Timing, *, source: str, target: str, events: int, out: TextIO
) -> None:
    for line in render_text(result, source):
        print(line, file=out)
    console = Console(file=out, width=100, no_color=True, highlight=False)
    console.print(summary_table(result, timing, target=target, events=events))
    print(summary_line(result, timing, events=events), file=out)


def to_json(result: Result, timing: Timing, *, source: str, target: str) -> dict[str, Any]:
    return {
        "trace": source,
        "target": target,
        "identified_as": result.target,
        "exit_code": result.exit_code,
        "verdict": VERDICT.get(result.exit_code),
        "aborted": result.aborted,
        "elapsed_s": round(timing.elapsed, 6),
        "counts": {s.value: result.count(s) for s in Status},
        "mismatches": [
            {
                "index": c.index,
                "line": c.line,
                "request": c.event.command(),
                "status": c.status.value,
                "expected": format_reply(c.event.reply) if c.event.reply else None,
                "got": format_reply(c.got) if c.got else None,
                "differs": [d.field for d in c.diffs],
                "nearest": [n.index for n in c.nearest],
            }
            for c in result.checks
            if c.status in (Status.MISMATCH, Status.TIMEOUT)
        ][:MAX_DETAILED],
        "incidents": [
            {"kind": i.kind, "index": i.index, "detail": i.detail}
            for i in result.incidents[:MAX_DETAILED]
        ],
    }
