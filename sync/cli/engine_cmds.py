"""Engine commands: ``import contacts|events``, ``evaluate``, ``explain``, ``segments``
(and ``demo``, which lives in :mod:`sync.cli.demo_cmd`).

Stable contract (outside checks rely on it):

* ``segsync --config PATH import contacts|events FILE [--format csv|jsonl] [--source NAME]
  [--json]`` — exit 0 when every row was stored; exit 2 when rows were rejected (each printed
  on stderr as ``file:line: reason``; the good rows are kept) or the file is unusable (nothing
  stored).
* ``segsync --config PATH evaluate [--as-of ISO8601] [--all] --json`` — one JSON object per
  line, ``{"contact": KEY, "segments": [sorted names], "fields": {name: value}}``, for every
  contact in at least one segment (every contact with ``--all``); KEY is the email when known,
  else the external id.
* ``segsync --config PATH explain KEY [--as-of ISO8601] [--json]``
* ``segsync --config PATH segments [--as-of ISO8601] [--json]`` — sizes per segment (and, under
  ``"report"``, entries and exits since the last run and open/click rates: ``sync.stats``).

``--as-of`` is ISO-8601 with a UTC offset (``2025-03-01T09:00:00Z``); the default is now.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Engine, select

from mapping.errors import InputError
from sync.import_values import parse_instant

if TYPE_CHECKING:
    from mapping.project import Project
    from sync.importer import ImportReport

SHOWN_PROBLEMS = 100  # rejected rows printed by `import` (all of them with --json)
SHOWN_CONTACTS = 50  # contacts in `evaluate`'s table (all of them with --json)

AsOf = Annotated[
    str | None,
    typer.Option("--as-of", help="evaluate at this instant, ISO-8601 with offset (default: now)"),
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]
Format = Annotated[
    str | None, typer.Option("--format", help="csv or jsonl (default: from the file extension)")
]


def _out() -> Console:
    # markup off: file names, keys and values print literally ("[x]" is not a style)
    return Console(soft_wrap=True, highlight=False, markup=False)


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False, markup=False)


def as_of_ms(text: str | None) -> int:
    """``--as-of`` in epoch ms; now when not given."""
    if text is None:
        return int(time.time() * 1000)
    try:
        return parse_instant(text)
    except ValueError as e:
        raise InputError(f"--as-of: {e}") from None


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _project() -> Project:
    from mapping.config import load_project
    from sync.cli import state

    return load_project(state.config_path)


def _store(project: Project) -> Engine:
    from sync.store.db import open_project_store

    return open_project_store(project)


def _json_line(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")


# ------------------------------------------------------------------------------- import


def _print_import(report: ImportReport, as_json: bool) -> None:
    if as_json:
        _json_line(report.to_json())
    else:
        if report.kind == "contacts":
            what = f"{report.inserted} new, {report.updated} updated, {report.unchanged} unchanged"
        else:
            what = f"{report.inserted} new, {report.unchanged} already stored"
        _out().print(f"{report.file}: {report.rows} rows: {what}, {report.rejected} rejected")
    if report.problems and not as_json:
        err = _err()
        for problem in report.problems[:SHOWN_PROBLEMS]:
            err.print(f"[bold red]rejected:[/] {escape(str(problem))}", markup=True)
        if report.rejected > SHOWN_PROBLEMS:
            err.print(f"... and {report.rejected - SHOWN_PROBLEMS} more rejected rows (--json lists all)")


def _run_import(kind: str, file: Path, fmt: str | None, source: str, as_json: bool) -> None:
    from sync import importer

    project = _project()
    engine = _store(project)
    try:
        if kind == "contacts":
            report = importer.import_contacts(engine, project, file, fmt)
        else:
            report = importer.import_events(engine, project, file, fmt, source_name=source)
    finally:
        engine.dispose()
    _print_import(report, as_json)
    if report.problems:
        kept = ", the others were stored" if report.rejected < report.rows else ""
        raise InputError(f"{file}: {report.rejected} of {report.rows} rows rejected{kept}")


def _import_contacts(
    file: Annotated[Path, typer.Argument(help="a .csv or .jsonl file of contacts")],
    fmt: Format = None,
    as_json: AsJson = False,
) -> None:
    """Merge contacts (by email / external id) with typed attributes. See docs/import.md."""
    _run_import("contacts", file, fmt, "import", as_json)


def _import_events(
    file: Annotated[Path, typer.Argument(help="a .csv or .jsonl file of events")],
    fmt: Format = None,
    source: Annotated[
        str, typer.Option("--source", help="dedupe namespace of the file's event ids")
    ] = "import",
    as_json: AsJson = False,
) -> None:
    """Add events (deduplicated by event id or content). See docs/import.md."""
    _run_import("events", file, fmt, source, as_json)


# ------------------------------------------------------------------------------- evaluate


def _sizes_table(sizes: dict[str, int], as_of: int) -> Table:
    table = Table(title=f"segments as of {iso(as_of)}")
    table.add_column("segment")
    table.add_column("members", justify="right")
    for name, size in sizes.items():
        table.add_row(name, str(size))
    return table


def _sizes(project: Project, found: dict[str, int]) -> dict[str, int]:
    return {name: int(found.get(name, 0)) for name in project.segments}


def _evaluate(
    as_of: AsOf = None,
    everyone: Annotated[bool, typer.Option("--all", help="list every contact, members or not")] = False,
    as_json: AsJson = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="do not record memberships and output values")
    ] = False,
) -> None:
    """Evaluate every segment for the whole population and print members and output values."""
    from sync.evaluate import evaluate

    project = _project()
    at = as_of_ms(as_of)
    engine = _store(project)
    try:
        result = evaluate(engine, project, at, persist=not dry_run)
    finally:
        engine.dispose()
    rows = [r for r in result.results if everyone or r.segments]
    rows.sort(key=lambda r: str(r.key))
    if as_json:
        for r in rows:
            _json_line({"contact": r.key, "segments": sorted(r.segments), "fields": r.fields})
        return
    out = _out()
    table = Table(title=f"{len(rows)} contacts as of {iso(at)}")
    for column in ("contact", "segments", "fields"):
        table.add_column(column)
    for r in rows[:SHOWN_CONTACTS]:
        fields = ", ".join(f"{k}={v}" for k, v in r.fields.items() if v is not None)
        table.add_row(str(r.key), ", ".join(sorted(r.segments)), fields)
    out.print(table)
    if len(rows) > SHOWN_CONTACTS:
        out.print(f"... and {len(rows) - SHOWN_CONTACTS} more contacts (--json lists all)")
    out.print(_sizes_table(_sizes(project, result.sizes), at))


def find_contact(engine: Engine, key: str) -> int:
    """The contact whose email (normalised) or external id is ``key``."""
    from sync.store import repo, schema

    c = schema.contacts
    try:
        email = repo.normalise_email(key)
    except ValueError:
        email = None
    with engine.connect() as conn:
        for column, value in ((c.c.email, email), (c.c.external_id, key.strip())):
            if value is not None:
                found = conn.execute(select(c.c.id).where(column == value)).scalar()
                if found is not None:
                    return int(found)
    raise InputError(f"no contact with the email or external id {key!r}")


def _explain(
    key: Annotated[str, typer.Argument(help="the contact's email or external id")],
    as_of: AsOf = None,
    as_json: AsJson = False,
) -> None:
    """Show why a contact is or is not in each segment: every leaf's value and each verdict."""
    from sync.evaluate import explain

    project = _project()
    at = as_of_ms(as_of)
    engine = _store(project)
    try:
        explanation = explain(engine, project, find_contact(engine, key), at)
    finally:
        engine.dispose()
    if as_json:
        _json_line(explanation.to_json())
    else:
        _out().print(explanation)


def _segments(as_of: AsOf = None, as_json: AsJson = False) -> None:
    """Print every segment's size, entries and exits since the last run, and engagement."""
    from sync.cli.segments_view import print_segments
    from sync.evaluate import evaluate
    from sync.stats import segment_report

    project = _project()
    at = as_of_ms(as_of)
    engine = _store(project)
    try:
        result = evaluate(engine, project, at, persist=False)
        report = segment_report(engine, project, result)  # entries/exits, rates (sync.stats)
    finally:
        engine.dispose()
    sizes = _sizes(project, result.sizes)
    if as_json:
        _json_line({"as_of": iso(at), "segments": sizes, "report": report.to_json()})
    else:
        print_segments(_out(), report)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    import_app = typer.Typer(
        help="Import contacts or events from CSV or JSONL files (docs/import.md).",
        no_args_is_help=True,
    )
    import_app.command("contacts")(_import_contacts)
    import_app.command("events")(_import_events)
    app.add_typer(import_app, name="import")
    app.command("evaluate")(_evaluate)
    app.command("explain")(_explain)
    app.command("segments")(_segments)
    from sync.cli.demo_cmd import demo

    app.command("demo")(demo)  # the sandbox demo (sync.demo)
