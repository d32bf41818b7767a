"""What a shard tells its parent, as JSON: its figures and its evidence, and how they merge.

Figures travel as counters and HdrHistogram blobs (`Latency.encode`, base64): the parent adds
the blobs, so merged percentiles are exact to the histograms' 3 digits, never averages of
percentiles. Evidence travels whole: the shard's history (every invoke and completion), what
each operation buys, each handset's own view and each meter's granted credit. Handset ids and
operator transactions are distinct across shards, so merging is a union.
"""

from __future__ import annotations

import base64
from dataclasses import fields
from typing import Any

from agent_client.store import OpState
from field_lab.check.evidence import HandsetEvidence
from field_lab.check.judge import Claim
from field_lab.errors import HarnessError
from field_lab.lab.lab import FieldEvidence
from field_lab.lab.stats import Figures, RunStats
from field_lab.measure.history import History, Status
from field_lab.measure.latency import Latency
from field_lab.measure.slo import RateMetric


class WireError(HarnessError):
    """A shard sent what no shard sends (a lab bug or a version mismatch)."""


def _latency(latency: Latency) -> dict[str, Any]:
    return {"h": base64.b64encode(latency.encode()).decode(), "c": latency.clamped}


def _add_latency(latency: Latency, sent: dict[str, Any]) -> None:
    latency.merge_encoded(base64.b64decode(sent["h"]))
    latency.clamped += int(sent["c"])


def _figures(group: Figures) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(group):
        value = getattr(group, f.name)
        if isinstance(value, Latency):
            out[f.name] = _latency(value)
        elif isinstance(value, RateMetric):
            out[f.name] = [value.hits, value.total]
        else:
            out[f.name] = value
    return out


def _add_figures(group: Figures, doc: dict[str, Any]) -> None:
    for f in fields(group):
        value, sent = getattr(group, f.name), doc[f.name]
        if isinstance(value, Latency):
            _add_latency(value, sent)
        elif isinstance(value, RateMetric):
            value.hits += int(sent[0])
            value.total += int(sent[1])
        else:
            setattr(group, f.name, value + int(sent))


def stats_to_wire(stats: RunStats) -> dict[str, Any]:
    return {
        "total": _figures(stats.total),
        "by_profile": {name: _figures(g) for name, g in stats.by_profile.items()},
        "by_distributor": {name: _figures(g) for name, g in stats.by_distributor.items()},
        "report": _latency(stats.report),
        "report_failed": [stats.report_failed.hits, stats.report_failed.total],
        "late_starts": stats.late_starts,
        "no_stock": stats.no_stock,
    }


def add_stats(into: RunStats, doc: dict[str, Any]) -> None:
    """Add one shard's figures to `into` (losslessly: counters add, histograms merge)."""
    try:
        _add_figures(into.total, doc["total"])
        for name, group in doc["by_profile"].items():
            _add_figures(into.by_profile[name], group)
        for name, group in doc["by_distributor"].items():
            _add_figures(into.by_distributor[name], group)
        _add_latency(into.report, doc["report"])
        into.report_failed.hits += int(doc["report_failed"][0])
        into.report_failed.total += int(doc["report_failed"][1])
        into.late_starts += int(doc["late_starts"])
        into.no_stock += int(doc["no_stock"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"a shard's figures do not parse: {exc!r}") from exc


def merged_stats(docs: list[dict[str, Any]]) -> RunStats:
    stats = RunStats()
    for doc in docs:
        add_stats(stats, doc)
    return stats


def evidence_to_wire(evidence: FieldEvidence) -> dict[str, Any]:
    return {
        "history": [
            [e.key, e.kind, e.status.value, e.at, e.detail] for e in evidence.history.events
        ],
        "claims": {key: [c.device, c.credit_s] for key, c in evidence.claims.items()},
        "handsets": [
            {
                "handset": h.handset,
                "states": [[seq, state.value] for seq, state in h.states.items()],
                "keycodes": [list(k) for k in h.keycodes],
            }
            for h in evidence.handsets
        ],
        "meters": [[serial, granted] for serial, granted in evidence.meters.items()],
    }


def add_evidence(into: FieldEvidence, doc: dict[str, Any]) -> None:
    """Add one shard's evidence: its history replayed in order, the rest a union."""
    try:
        for key, kind, status, at, detail in doc["history"]:
            if status == Status.INVOKE.value:
                into.history.invoke(key, kind, float(at))
            else:
                into.history.complete(key, Status(status), float(at), detail)
        for key, (device, credit) in doc["claims"].items():
            into.claims[key] = Claim(int(device), float(credit))
        for h in doc["handsets"]:
            into.handsets.append(
                HandsetEvidence(
                    int(h["handset"]),
                    {int(seq): OpState(state) for seq, state in h["states"]},
                    tuple((int(device), str(text)) for device, text in h["keycodes"]),
                )
            )
        for serial, granted in doc["meters"]:
            into.meters[int(serial)] = float(granted)
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"a shard's evidence does not parse: {exc!r}") from exc


def merged_evidence(docs: list[dict[str, Any]]) -> FieldEvidence:
    evidence = FieldEvidence(History(), {}, [], {})
    for doc in docs:
        add_evidence(evidence, doc)
    return evidence
