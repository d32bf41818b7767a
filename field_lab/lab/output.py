"""What a run leaves behind: results/<run>/ and the final table.

summary.json        the answers, the invariants, SLO verdicts, per link profile
report.html         all of it on one self-contained page, with interactive charts
timeseries.csv      one row a second: sales, activations, queue depth, links down
histograms/*.hgrm   percentile distributions (HdrHistogram text format)
histograms/*.hlog   base64 histoblobs, for lossless merging across runs or workers
activation_cdf.png  activation latency CDF per link profile
sales_over_time.png sales attempted and succeeded over time
queue_and_links.png outbox queue depth and links down over time

The PNGs need matplotlib, the optional `plots` extra (`pip install 'payg-field-lab[plots]'`);
without it a run writes everything else (report.html's charts need nothing) and says that it
skipped them.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.table import Table

from field_lab.check.keys import FIGURES
from field_lab.lab.stats import Figures, RunStats
from field_lab.measure.latency import Latency
from field_lab.measure.slo import RateMetric, Verdict
from field_lab.report import page
from field_lab.scenario import Scenario, to_dict


def _num(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _latency(h: Latency) -> dict[str, Any]:
    return {k: _num(v) for k, v in h.summary().items()}


def _rate_ok(failed_hits: int, total: int) -> float | None:
    return None if total == 0 else (total - failed_hits) / total


def reading(failed: RateMetric, latency: Latency) -> dict[str, Any]:
    """Question 3's figures: the share of report reads answered, and how long they took."""
    return {
        "report_availability": _rate_ok(failed.hits, failed.total),
        "report_latency_s": _latency(latency),
    }


def figures(group: Figures) -> dict[str, Any]:
    syncs = max(1, group.syncs)
    exchanges = max(1, group.exchanges)
    return {
        "sale_attempts": group.sale_failed.total,
        "sale_success_rate": _rate_ok(group.sale_failed.hits, group.sale_failed.total),
        "sale_activation_s": _latency(group.sale_activation),
        "payments": group.payment_unactivated.total,
        "payments_activated": group.payment_unactivated.total - group.payment_unactivated.hits,
        "activation_latency_s": _latency(group.activation),
        "sync_exchange_s": _latency(group.sync),
        "sync_floor_ratio": _latency(group.floor_ratio),
        "exchanges": group.exchanges,
        "failed_exchanges": group.failed_exchanges,
        "round_trips_per_sync": group.exchanges / syncs,
        "bytes_up_per_exchange": group.bytes_up / exchanges,
        "bytes_down_per_exchange": group.bytes_down / exchanges,
        "operations": group.ops,
        "bytes_per_op": group.op_bytes / group.ops if group.ops else None,
        "downlink_polls": group.polls,
        "poll_bytes": group.poll_bytes,
    }


def summary(
    name: str,
    scenario: Scenario,
    stats: RunStats,
    verdicts: list[Verdict],
    extra: dict[str, Any],
) -> dict[str, Any]:
    total = figures(stats.total)
    reports = stats.report_failed
    by_distributor = {
        d: {**figures(g), **reading(g.report_failed, g.report)}
        for d, g in sorted(stats.by_distributor.items())
    }
    doc: dict[str, Any] = {
        "run": name,
        "scenario": to_dict(scenario),
        **total,
        **reading(reports, stats.report),
        **{name: stats.checks.get(name) for name in FIGURES},
        "late_starts": stats.late_starts,
        "visits_without_stock": stats.no_stock,
        "slo": {v.threshold.label(): v.as_dict() for v in verdicts},
        "slo_pass": all(v.passed for v in verdicts),
        "by_profile": {p: figures(g) for p, g in sorted(stats.by_profile.items())},
        "by_distributor": by_distributor,
    }
    doc.update(stats.sections)
    doc.update(extra)
    return doc


PNG_SKIPPED = (
    "charts: matplotlib is not installed, so no PNGs were written"
    " (pip install 'payg-field-lab[plots]')"
)


def load_pyplot() -> ModuleType | None:
    """matplotlib's pyplot on the file-only backend, or None without the `plots` extra."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write(
    out: Path,
    doc: dict[str, Any],
    stats: RunStats,
    series: list[dict[str, float]],
    pyplot: Callable[[], ModuleType | None] = load_pyplot,
) -> str | None:
    """Write the run's files; return a note for the user when the charts were skipped."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    if series:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(series[0]))
        writer.writeheader()
        writer.writerows(series)
        (out / "timeseries.csv").write_text(buffer.getvalue())
    hist = out / "histograms"
    hist.mkdir(exist_ok=True)
    named = {
        "activation": stats.total.activation,
        "sale_activation": stats.total.sale_activation,
        "sync_exchange": stats.total.sync,
        "report": stats.report,
    }
    for profile, group in stats.by_profile.items():
        named[f"activation.{profile}"] = group.activation
    for label, h in named.items():
        (hist / f"{label}.hlog").write_text(h.encode().decode("ascii") + "\n")
        lines = ["value_s\tcumulative"] + [f"{v:.3f}\t{c:.6f}" for v, c in h.distribution()]
        (hist / f"{label}.hgrm").write_text("\n".join(lines) + "\n")
    (out / "report.html").write_text(
        page.render(doc, activation_cdfs(stats), series), encoding="utf-8"
    )
    plt = pyplot()
    if plt is None:
        return PNG_SKIPPED
    plot(plt, out, stats, series)
    return None


def activation_cdfs(stats: RunStats) -> dict[str, list[tuple[float, float]]]:
    """Activation latency CDF points: "all", then each link profile."""
    cdfs = {"all": stats.total.activation.distribution()}
    cdfs.update((p, g.activation.distribution()) for p, g in sorted(stats.by_profile.items()))
    return cdfs


def plot(plt: Any, out: Path, stats: RunStats, series: list[dict[str, float]]) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for profile, group in sorted(stats.by_profile.items()):
        points = group.activation.distribution()
        if points:
            xs, ys = zip(*points, strict=True)
            ax.step(xs, ys, where="post", label=f"{profile} (n={group.activation.count})")
    ax.set_xscale("log")
    ax.set_xlabel("payment to light on (s, from the planned payment time)")
    ax.set_ylabel("share of payments")
    ax.set_title("Activation latency by link profile")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_lines():
        ax.legend(loc="lower right", fontsize=8)
    else:  # nothing activated: say so rather than warn about an empty legend
        ax.text(0.5, 0.5, "no activations", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(out / "activation_cdf.png", dpi=110)
    plt.close(fig)

    if not series:
        return
    t = [row["t_s"] for row in series]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(t, [row["sales"] for row in series], label="sales attempted (visits ended)")
    ax.plot(t, [row["sales_ok"] for row in series], label="sales activated in the visit")
    ax.set_xlabel("run time (s)")
    ax.set_ylabel("count")
    ax.set_title("Sales over time")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "sales_over_time.png", dpi=110)
    plt.close(fig)

    fig, ax1 = plt.subplots(figsize=(7, 4))
    ax1.plot(
        t, [row["queue_depth"] for row in series], color="tab:blue", label="outbox queue depth"
    )
    ax1.set_xlabel("run time (s)")
    ax1.set_ylabel("operations not yet acknowledged", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(t, [row["links_down"] for row in series], color="tab:red", label="links down")
    ax2.set_ylabel("handsets with their link down", color="tab:red")
    ax1.set_title("Queue depth and link state")
    ax1.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "queue_and_links.png", dpi=110)
    plt.close(fig)


def _fmt(value: Any, digits: int = 2, pct: bool = False) -> str:
    if value is None:
        return "-"
    if pct:
        return f"{100 * value:.1f} %"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


INVARIANTS = (
    ("lost_ops", "lost"),
    ("duplicate_ops", "duplicated"),
    ("unexpected_ops", "unexpected"),
    ("overcredited_meters", "over-credited meters"),
    ("undercredited_meters", "under-credited meters"),
    ("duplicate_keycodes", "keycodes twice"),
)
VERDICT_STYLE = {
    "pass": "[green]pass[/]",
    "fail": "[red]FAIL[/]",
    "unchecked": "[red]FAIL (unchecked)[/]",
    "waived (unchecked)": "[yellow]waived (unchecked)[/]",
    "no samples": "[red]FAIL (no samples)[/]",
    "waived (no samples)": "[yellow]waived (no samples)[/]",
}


def _check(doc: dict[str, Any], name: str) -> str:
    value = doc.get(name)
    return "unchecked" if value is None else str(value)


def table(doc: dict[str, Any], console: Console) -> None:
    """The final table: the three questions and the invariants, per link profile."""
    rows = [("all", doc), *list(doc["by_profile"].items())]
    t = Table(title=f"field-lab run {doc['run']}: the three questions, per link profile")
    for column in (
        "link",
        "sales",
        "sale ok",
        "payments",
        "activation p50/p95/p99 s",
        "sync p95 s",
        "sync/floor p50",
        "bytes up/down per exchange",
    ):
        t.add_column(column, justify="right" if column != "link" else "left")
    for name, d in rows:
        a = d["activation_latency_s"]
        t.add_row(
            name,
            str(d["sale_attempts"]),
            _fmt(d["sale_success_rate"], pct=True),
            f"{d['payments_activated']}/{d['payments']}",
            f"{_fmt(a['p50'], 1)} / {_fmt(a['p95'], 1)} / {_fmt(a['p99'], 1)}",
            _fmt(d["sync_exchange_s"]["p95"], 2),
            _fmt(d["sync_floor_ratio"]["p50"], 2),
            f"{d['bytes_up_per_exchange']:.0f} / {d['bytes_down_per_exchange']:.0f}",
        )
    console.print(t)
    r = doc["report_latency_s"]
    console.print(
        f"Reports: availability {_fmt(doc['report_availability'], pct=True)}, "
        f"p50 {_fmt(r['p50'], 3)} s, p99 {_fmt(r['p99'], 3)} s"
    )
    console.print(
        "Invariants: " + ", ".join(f"{label} {_check(doc, name)}" for name, label in INVARIANTS),
        highlight=False,
    )
    slo = Table(title="SLOs")
    slo.add_column("threshold")
    slo.add_column("observed", justify="right")
    slo.add_column("verdict")
    for label, v in doc["slo"].items():
        observed = v["observed"]
        slo.add_row(
            label,
            ("unchecked" if v["status"].endswith("unchecked") else "no samples")
            if observed is None
            else f"{observed:.4g}",
            VERDICT_STYLE[v["status"]],
        )
    console.print(slo)


def _compared(d: dict[str, Any]) -> list[tuple[str, str]]:
    a, sale = d["activation_latency_s"], d["sale_activation_s"]
    return [
        ("sale success", _fmt(d["sale_success_rate"], pct=True)),
        ("activation p50 / p95 s", f"{_fmt(a['p50'], 2)} / {_fmt(a['p95'], 2)}"),
        ("sale activation p95 s", _fmt(sale["p95"], 2)),
        ("operations recorded", str(d["operations"])),
        ("exchanges (round trips)", str(d["exchanges"])),
        ("round trips per sync", _fmt(d["round_trips_per_sync"], 2)),
        (
            "bytes up / down per exchange",
            f"{d['bytes_up_per_exchange']:.0f} / {d['bytes_down_per_exchange']:.0f}",
        ),
        ("bytes per operation (exchanges carrying them)", _fmt(d["bytes_per_op"], 1)),
        ("downlink polls (bytes)", f"{d['downlink_polls']} ({d['poll_bytes']})"),
        ("sync exchange p95 s", _fmt(d["sync_exchange_s"]["p95"], 2)),
        ("lost / duplicated", f"{_check(d, 'lost_ops')} / {_check(d, 'duplicate_ops')}"),
    ]


def comparison(out: Path, docs: dict[str, dict[str, Any]], console: Console) -> None:
    """The same scenario with each client, side by side (comparison.json and a table)."""
    names = list(docs)
    t = Table(title="Same scenario, compact sync vs naive JSON request per operation")
    t.add_column("figure")
    for name in names:
        t.add_column(name, justify="right")
    columns = [_compared(docs[n]) for n in names]
    for i, (label, _) in enumerate(columns[0]):
        t.add_row(label, *(column[i][1] for column in columns))
    console.print(t)
    keys = (
        "sale_success_rate",
        "activation_latency_s",
        "sale_activation_s",
        "exchanges",
        "round_trips_per_sync",
        "bytes_up_per_exchange",
        "bytes_down_per_exchange",
        "bytes_per_op",
        "sync_exchange_s",
        "lost_ops",
        "duplicate_ops",
    )
    doc = {n: {k: docs[n].get(k) for k in keys} for n in names}
    (out / "comparison.json").write_text(json.dumps(doc, indent=2) + "\n")
