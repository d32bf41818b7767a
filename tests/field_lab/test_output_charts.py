"""The lab's PNG charts are optional: without matplotlib every other file is still written and
the run says what it skipped (with it, tests/field_lab/test_lab.py checks the PNGs)."""

from __future__ import annotations

from pathlib import Path

from field_lab.lab import output
from field_lab.lab.stats import RunStats

PNGS = ("activation_cdf.png", "sales_over_time.png", "queue_and_links.png")
SERIES = [
    {"t_s": 0.0, "sales": 0.0, "sales_ok": 0.0, "queue_depth": 1.0, "links_down": 0.0},
    {"t_s": 1.0, "sales": 1.0, "sales_ok": 1.0, "queue_depth": 0.0, "links_down": 1.0},
]


def test_without_matplotlib_the_charts_are_skipped_with_a_note(tmp_path: Path) -> None:
    note = output.write(tmp_path, {"run": "x"}, RunStats(), SERIES, pyplot=lambda: None)
    assert note == output.PNG_SKIPPED
    assert "plots" in note
    assert (tmp_path / "summary.json").exists()
    assert (tmp_path / "timeseries.csv").exists()
    assert not any((tmp_path / name).exists() for name in PNGS)
