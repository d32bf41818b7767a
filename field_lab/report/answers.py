"""What a run's summary answers, as data: the three questions, the invariants, the SLOs.

Pure functions of the summary dict (summary.json). Every number stays a reference into the
summary (`Figure`: a key path and a format), so the page shows the summary's own values and a
test can read each one back; every sentence is composed from the run's figures and verdicts,
never a fixed conclusion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

KeyPath = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Figure:
    """One number (or word) of the summary, by its key path, and how to show it."""

    path: KeyPath
    format: str
    """int, pct (a share shown as a percentage), s (seconds), num (any number), text."""


Part = str | Figure
"""A sentence is text and figures in order."""


def lookup(doc: Mapping[str, Any], path: Sequence[str]) -> Any:
    """The value at `path` in the summary, or None where the run has none."""
    value: Any = doc
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


@dataclass(frozen=True, slots=True)
class Question:
    key: str
    title: str
    metrics: tuple[str, ...]
    """The SLO metrics that judge it."""


QUESTIONS = (
    Question("sales", "Could agents make sales?", ("sale_failed", "sale_activation_s")),
    Question(
        "activation",
        "Were lights activated promptly after payment?",
        ("activation_s", "payment_unactivated"),
    ),
    Question("reports", "Could distributors read their reports?", ("report_failed", "report_s")),
)


@dataclass(frozen=True)
class Answer:
    question: Question
    verdict: str
    """yes (every threshold held), no (one failed), not shown (one had no evidence or no
    samples), no threshold (the scenario declares none for it)."""
    reason: str
    slos: tuple[str, ...]
    """Labels of the thresholds that judge it (keys of the summary's `slo`)."""


def slo_metric(label: str) -> str:
    """`activation_s: p(95)<120` -> `activation_s`."""
    return label.partition(":")[0]


def verdict_of(statuses: Sequence[str]) -> tuple[str, str]:
    """A question's verdict and why, from the statuses of its thresholds."""
    n = len(statuses)
    if not n:
        return "no threshold", "the scenario sets no threshold on it"
    failed = sum(s == "fail" for s in statuses)
    unshown = sum(s in ("unchecked", "no samples") for s in statuses)
    if failed:
        return "no", f"{failed} of {n} threshold{'s' * (n > 1)} failed"
    if unshown:
        return "not shown", f"{unshown} of {n} threshold{'s' * (n > 1)} had nothing to judge"
    return "yes", f"{n} of {n} threshold{'s' * (n > 1)} held"


def answer(question: Question, doc: Mapping[str, Any]) -> Answer:
    slo: Mapping[str, Mapping[str, Any]] = doc.get("slo") or {}
    labels = tuple(label for label in slo if slo_metric(label) in question.metrics)
    verdict, reason = verdict_of([str(slo[label]["status"]) for label in labels])
    return Answer(question, verdict, reason, labels)


def findings(question: Question, prefix: KeyPath, doc: Mapping[str, Any]) -> list[Part]:
    """What one group (the run, a link profile, a distributor) shows on a question."""
    at = lookup(doc, prefix) if prefix else doc
    if not isinstance(at, Mapping):
        return ["this run has no figures for it"]

    def f(*path: str, fmt: str) -> Figure:
        return Figure((*prefix, *path), fmt)

    def latencies(key: str, *points: str) -> list[Part]:
        """`p50 X s, p95 Y s` from the latency summary at `key`."""
        parts: list[Part] = []
        for i, point in enumerate(points):
            parts += [f"{', ' * (i > 0)}{point} ", f(key, point, fmt="s"), " s"]
        return parts

    if question.key == "sales":
        if not at.get("sale_attempts"):
            return ["no sale was attempted"]
        return [
            f("sale_success_rate", fmt="pct"),
            " of ",
            f("sale_attempts", fmt="int"),
            " sale attempts ended with the light on during the visit; sale to light on ",
            *latencies("sale_activation_s", "p50", "p95"),
        ]
    if question.key == "activation":
        if not at.get("payments"):
            return ["no payment was made"]
        return [
            f("payments_activated", fmt="int"),
            " of ",
            f("payments", fmt="int"),
            " payments turned a light on; payment to light on ",
            *latencies("activation_latency_s", "p50", "p95", "p99", "max"),
        ]
    if at.get("report_availability") is None:
        return ["no report was requested"]
    return [
        f("report_availability", fmt="pct"),
        " of report requests were answered; ",
        f("report_latency_s", "count", fmt="int"),
        " reads took ",
        *latencies("report_latency_s", "p50", "p99", "max"),
    ]


def profiles(doc: Mapping[str, Any]) -> list[tuple[str, KeyPath]]:
    """The whole run, then each link profile: (name, key path prefix)."""
    by_profile = doc.get("by_profile") or {}
    return [("all links", ()), *((p, ("by_profile", p)) for p in by_profile)]


def distributors(doc: Mapping[str, Any]) -> list[tuple[str, KeyPath]]:
    """Each distributor of the run; a run without distributors is shown as one, the fleet."""
    by_distributor = doc.get("by_distributor") or {}
    if not by_distributor:
        return [("the fleet (no distributors in this run)", ())]
    return [(d, ("by_distributor", d)) for d in by_distributor]


# -- invariants ---------------------------------------------------------------------------------

INVARIANTS: dict[str, str] = {  # every figure of field_lab.check.keys.FIGURES
    "lost_ops": "no acknowledged operation or payment lost",
    "duplicate_ops": "none applied twice",
    "unexpected_ops": "nothing applied that was never attempted or was refused",
    "overcredited_meters": "no meter credited beyond what was paid for",
    "undercredited_meters": "no meter credited less than what was confirmed",
    "duplicate_keycodes": "no keycode issued or held twice",
    "undelivered_keycodes": "every keycode sent down reached its handset",
    "pending_ops": "nothing left queued on a handset",
    "escrow_unaccounted": "every code released for an offline sale accounted by the platform",
    "escrow_accounted_twice": "no escrowed code accounted twice or without its release",
    "credited_unsold_meters": "no meter credited without a recorded sale",
}

EVIDENCE: dict[str, tuple[KeyPath, ...]] = {
    "lost_ops": (("ops", "lost"), ("payments", "lost")),
    "duplicate_ops": (("ops", "duplicated"), ("payments", "duplicated")),
    "unexpected_ops": (
        ("ops", "unexpected"),
        ("ops", "failed_but_applied"),
        ("payments", "unexpected"),
        ("payments", "failed_but_applied"),
        ("strays",),
    ),
    "overcredited_meters": (("credit", "over"),),
    "undercredited_meters": (("credit", "under"),),
    "duplicate_keycodes": (("keycodes_twice",),),
    "undelivered_keycodes": (("undelivered",),),
    "pending_ops": (),
    "escrow_unaccounted": (("escrow", "unaccounted"),),
    "escrow_accounted_twice": (("escrow", "twice"),),
    "credited_unsold_meters": (("credited_unsold",),),
}
"""Where the judge's details name the offending keys of each figure."""


@dataclass(frozen=True)
class Invariant:
    name: str
    meaning: str
    status: str
    """verified (checked, no violation), violated, unchecked (no evidence)."""
    examples: tuple[str, ...]


def invariants(doc: Mapping[str, Any]) -> list[Invariant]:
    checks: Mapping[str, str] = doc.get("checks") or {}
    details: Mapping[str, Any] = doc.get("check_details") or {}
    out = []
    for name, meaning in INVARIANTS.items():
        value = doc.get(name)
        if value is None or checks.get(name) == "unchecked":
            status = "unchecked"
        else:
            status = "verified" if value == 0 else "violated"
        examples: list[str] = []
        for path in EVIDENCE[name]:
            found = lookup(details, path)
            if isinstance(found, list):
                examples += [str(item) for item in found]
        out.append(Invariant(name, meaning, status, tuple(examples)))
    return out


def overall(doc: Mapping[str, Any]) -> str:
    """One line on the whole run, from its SLO verdicts."""
    slo: Mapping[str, Mapping[str, Any]] = doc.get("slo") or {}
    if not slo:
        return "the scenario sets no threshold"
    failed = [label for label, v in slo.items() if not v.get("pass")]
    if not failed:
        return f"all {len(slo)} thresholds held"
    return f"{len(failed)} of {len(slo)} thresholds did not hold: " + ", ".join(failed)
