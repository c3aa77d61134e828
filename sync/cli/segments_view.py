"""The table of ``segsync segments``: sizes, entries and exits since the last run, open and
click rates, and the small-segment warnings (:mod:`sync.stats`)."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from sync.stats import SegmentReport


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def segments_table(report: SegmentReport) -> Table:
    since = "the last run" if report.last_run_as_of_ms is not None else "the start"
    table = Table(title=f"segments as of {_iso(report.as_of_ms)}",
                  caption=f"entries and exits since {since}; rates over the last "
                          f"{report.window_ms / 86_400_000:g} days among the members sent an email")
    for col in ("segment", "members", "entered", "exited", "open rate", "click rate"):
        table.add_column(col, justify="left" if col == "segment" else "right")
    for s in report.segments:
        name = f"{s.segment} (small)" if s.small else s.segment
        table.add_row(name, f"{s.members:,}", f"{s.entered:,}", f"{s.exited:,}", _rate(s.open_rate),
                      _rate(s.click_rate))
    return table


def print_segments(console: Console, report: SegmentReport) -> None:
    console.print(segments_table(report))
    for warning in report.warnings:
        console.print(f"warning: {warning}")
