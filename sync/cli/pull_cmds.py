"""``segsync pull [--full] [--source hubspot|klaviyo] [--json]``: sources -> store.

Thin: load the config, open the store and the connectors, call :func:`sync.pull.pull`.
Progress (pages and records per source and stream) goes to stderr while it runs; then a
summary table per source (contacts new / updated, events new / duplicate / skipped), or with
``--json`` one JSON object (:meth:`sync.pull.PullSummary.to_json`) on stdout. Exit 0 when
every source was pulled, 1 when a source stopped on a provider error (what was pulled before
is kept, and the next pull resumes from there), 2 for a configuration error.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from sync.pull import PullProgress, PullSummary

SHOWN_CONFLICTS = 20

Full = Annotated[bool, typer.Option("--full", help="re-read everything, not only what changed")]
Source = Annotated[
    list[str] | None,
    typer.Option("--source", help="hubspot or klaviyo (repeatable; default: every enabled source)"),
]
AsJson = Annotated[bool, typer.Option("--json", help="print the summary as JSON")]


class _Bars:
    """One rich progress line per (source, stream): pages and records so far."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[tuple[str, str], TaskID] = {}

    def __call__(self, update: PullProgress) -> None:
        key = (update.source, update.stream)
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(f"{update.source} {update.stream}", total=None)
        state = "done" if update.done else "pulling"
        self.progress.update(self.tasks[key], completed=update.records,
                             description=f"{update.source} {update.stream}: {update.pages:,} pages, "
                             f"{update.records:,} records ({state})")
        if update.done:
            self.progress.update(self.tasks[key], total=max(update.records, 1),
                                 completed=max(update.records, 1))


def _table(summary: PullSummary) -> Table:
    table = Table(title="pull" + (" (full)" if summary.full else ""))
    for column in ("source", "contacts\nnew", "contacts\nupdated", "events\nnew", "events\nduplicate",
                   "events\nskipped", "status"):
        table.add_column(column, justify="left" if column in ("source", "status") else "right")
    for name, s in summary.sources.items():
        table.add_row(name, f"{s.contacts_new:,}", f"{s.contacts_updated:,}", f"{s.events_new:,}",
                      f"{s.events_duplicate:,}", f"{s.events_skipped:,}", "error" if s.error else "ok")
    return table


def _notes(summary: PullSummary) -> list[str]:
    lines = []
    for name, s in summary.sources.items():
        if s.skipped_types:
            kinds = ", ".join(f"{k} ({n:,})" for k, n in sorted(s.skipped_types.items()))
            lines.append(f"{name}: skipped events of undeclared types: {kinds}")
        if s.events_unresolved:
            lines.append(f"{name}: {s.events_unresolved:,} events had no known contact id nor a "
                         "valid email and were skipped")
        if s.contacts_from_events:
            lines.append(f"{name}: {s.contacts_from_events:,} contacts created from their events")
        if s.merged:
            lines.append(f"{name}: {s.merged:,} merged records followed to the surviving contact")
        if s.invalid_values:
            what = ", ".join(f"{k} ({n:,})" for k, n in sorted(s.invalid_values.items()))
            lines.append(f"{name}: values that do not fit their declared type were skipped: {what}")
        for conflict in s.conflicts[:SHOWN_CONFLICTS]:
            lines.append(f"{name}: identity conflict: {conflict}")
        if len(s.conflicts) > SHOWN_CONFLICTS:
            lines.append(f"{name}: ... and {len(s.conflicts) - SHOWN_CONFLICTS} more identity "
                         "conflicts (--json lists all)")
    return lines


def _pull(full: Full = False, source: Source = None, as_json: AsJson = False) -> None:
    """Pull contacts and events from HubSpot and Klaviyo into the store (incremental)."""
    from mapping.config import load_project
    from sync.cli import state
    from sync.connect import open_connectors
    from sync.pull import pull
    from sync.store.db import open_project_store

    project = load_project(state.config_path)
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    with open_connectors(project, source) as connectors:
        engine = open_project_store(project)
        try:
            columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
            with Progress(*columns, console=err, transient=as_json, disable=not err.is_terminal) as bars:
                summary = pull(engine, project, connectors, full=full, sources=source,
                               progress=_Bars(bars))
        finally:
            engine.dispose()
    if as_json:
        sys.stdout.write(json.dumps(summary.to_json(), ensure_ascii=False) + "\n")
    else:
        out = Console(soft_wrap=True, highlight=False)
        out.print(_table(summary))
        for line in _notes(summary):
            out.print(escape(line))
    failed = {name: s.error for name, s in summary.sources.items() if s.error}
    for error in failed.values():
        err.print(f"[bold red]error:[/] {escape(error)} (what was pulled before is stored; the "
                  "next pull resumes there)")
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``pull`` to ``app``."""
    app.command("pull")(_pull)
