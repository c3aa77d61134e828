"""Import contacts and events from CSV or JSONL files (columns: ``docs/import.md``).

One file is one transaction: either every good row of the file is stored, or — when the file
itself is unusable (unreadable, bad header, bytes that are not UTF-8 midway) or the process
dies — nothing is. Bad rows do not stop the import: each is reported with its line number and
reason and the good rows are kept. Re-importing a file adds nothing: contacts merge by key and
unchanged ones are not rewritten; events are unique on ``(source, event_id)``, or on the
``sha256:`` hash of their canonical content when they have no id.

Rows are handled in batches (``BATCH`` rows: one ``executemany`` per table per batch).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from mapping.errors import InputError, Problem
from mapping.project import Project
from sync.import_files import Format, Row, RowSource, detect_format, did_you_mean
from sync.import_values import number, parse_instant, typed_value
from sync.store import repo, schema
from sync.store.errors import StoreError
from sync.store.tx import begin_write

BATCH = 10_000
KEY_COLUMNS = ("email", "external_id")
EVENT_KEY_COLUMNS = ("email", "external_id", "contact")
EVENT_COLUMNS = ("type", "timestamp", "value", "properties", "event_id")
PROP_PREFIX = "prop."
_EVENT_FIELDS = frozenset((*EVENT_KEY_COLUMNS, *EVENT_COLUMNS))


@dataclass(frozen=True)
class ImportReport:
    """What one import did. ``inserted``: new contacts / events; ``updated``: contacts whose
    stored values changed; ``unchanged``: rows already stored as given (duplicates)."""

    kind: Literal["contacts", "events"]
    file: str
    rows: int
    inserted: int
    updated: int
    unchanged: int
    problems: tuple[Problem, ...] = ()

    @property
    def rejected(self) -> int:
        return len(self.problems)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "file": self.file, "rows": self.rows, "inserted": self.inserted,
            "updated": self.updated, "unchanged": self.unchanged, "rejected": self.rejected,
            "problems": [
                {"line": p.location.line, "message": p.message, "hint": p.hint}
                for p in self.problems
            ],
        }


@dataclass
class _Tally:
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _text(value: Any, what: str, *, integer_ok: bool = True) -> str | None:
    """A key cell: None/"" -> None; strings trimmed; JSON integers accepted as ids."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int) or (
        isinstance(value, int) and not integer_ok
    ):
        raise ValueError(f"{what} must be a string")
    text = str(value).strip()
    return text or None


def _keys(row: Row, reasons: list[str]) -> tuple[str | None, str | None]:
    email = ext = None
    try:
        email = _text(row.get("email"), "email", integer_ok=False)
        if email is not None:
            email = repo.normalise_email(email)
    except ValueError as e:
        reasons.append(str(e))
        email = None
    try:
        ext = _text(row.get("external_id"), "external_id")
        contact = _text(row.get("contact"), "contact")
        if contact is not None:
            if "@" in contact:
                email = email or repo.normalise_email(contact)
            else:
                ext = ext or contact
    except ValueError as e:
        reasons.append(str(e))
    if email is None and ext is None and not reasons:
        reasons.append("no contact key: give an email or an external_id")
    return email, ext


# ------------------------------------------------------------------------------- contacts


def _check_contact_header(source: RowSource, project: Project) -> None:
    columns = source.columns or []
    if not any(c in columns for c in KEY_COLUMNS):
        raise InputError(f"{source.path}:1: header: a contacts file needs an 'email' or "
                         "'external_id' column")
    problems = [
        source.problem(1, f"header: unknown attribute column {c!r}",
                       did_you_mean(c, [*KEY_COLUMNS, *project.attributes]))
        for c in columns
        if c not in KEY_COLUMNS and c not in project.attributes
    ]
    if problems:
        raise InputError(problems=problems)


def _contact_row(row: Row, project: Project, from_text: bool) -> repo.ContactUpsert:
    reasons: list[str] = []
    email, ext = _keys(row, reasons)
    attributes: dict[str, Any] = {}
    for name, value in row.items():
        if name in KEY_COLUMNS:
            continue
        type_ = project.attributes.get(name)
        if type_ is None:
            hint = did_you_mean(name, project.attributes)
            reasons.append(f"unknown attribute {name!r}" + (f" ({hint})" if hint else ""))
        elif value is None or (from_text and value == ""):
            if not from_text:
                attributes[name] = None  # JSON null clears the attribute
        else:
            try:
                attributes[name] = typed_value(
                    value, type_, is_date=name in project.date_attributes, from_text=from_text
                )
            except ValueError as e:
                reasons.append(f"{name}: {e}")
    if reasons:
        raise ValueError("; ".join(reasons))
    return repo.ContactUpsert(email, ext, attributes)


def import_contacts(
    engine: Engine, project: Project, path: Path, fmt: str | None = None,
    *, now: Callable[[], int] = _now_ms,
) -> ImportReport:
    """Merge the contacts of ``path`` into the store (see the module docstring)."""
    with _store_errors(path):
        return _import_contacts(engine, project, path, fmt, now)


def _import_contacts(engine: Engine, project: Project, path: Path, fmt: str | None,
                     now: Callable[[], int]) -> ImportReport:
    kind: Format = detect_format(path, fmt)
    tally = _Tally()
    with RowSource(path, kind) as source:
        if kind == "csv":
            _check_contact_header(source, project)
        with begin_write(engine) as conn, repo.bulk_session(conn):
            for batch in _batches(source, tally):
                good: list[tuple[int, repo.ContactUpsert]] = []
                for line, row in batch:
                    try:
                        good.append((line, _contact_row(row, project, kind == "csv")))
                    except ValueError as e:
                        tally.problems.append(source.problem(line, str(e)))
                outcome = repo.upsert_contacts(conn, [u for _, u in good], now())
                for index, reason in sorted(outcome.conflicts.items()):
                    tally.problems.append(source.problem(good[index][0], reason))
                tally.inserted += outcome.inserted
                tally.updated += outcome.updated
            tally.unchanged = tally.rows - tally.inserted - tally.updated - len(tally.problems)
            return _finish(conn, "contacts", path, tally, now())


# ------------------------------------------------------------------------------- events


def _check_event_header(source: RowSource, project: Project) -> None:
    columns = source.columns or []
    missing = []
    if not any(c in columns for c in EVENT_KEY_COLUMNS):
        missing.append("'email', 'external_id' or 'contact'")
    missing += [repr(c) for c in ("type", "timestamp") if c not in columns]
    if missing:
        raise InputError(f"{source.path}:1: header: an events file needs a column "
                         + " and ".join(missing))
    known = (*EVENT_KEY_COLUMNS, *EVENT_COLUMNS)
    problems = [
        source.problem(1, f"header: unknown column {c!r} (event properties go in "
                       f"'properties' or '{PROP_PREFIX}NAME' columns)", did_you_mean(c, known))
        for c in columns
        if c not in known and not c.startswith(PROP_PREFIX)
    ]
    if problems:
        raise InputError(problems=problems)


@dataclass(frozen=True)
class _Event:
    email: str | None
    external_id: str | None
    type: str
    ts: int
    value: float | None
    properties: dict[str, Any]
    event_id: str | None


def _properties(row: Row, extra: list[str], declared: dict[str, Any], from_text: bool,
                reasons: list[str]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    raw = row.get("properties")
    if from_text and isinstance(raw, str) and raw.strip():
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            reasons.append(f"properties: invalid JSON: {e.msg} (column {e.colno})")
            raw = None
    elif from_text:
        raw = None
    if raw is not None and not isinstance(raw, dict):
        reasons.append("properties must be a JSON object")
        raw = None
    items: list[tuple[str, Any, bool]] = [(k, v, False) for k, v in (raw or {}).items()]
    if extra:
        items += [(k[len(PROP_PREFIX):], row[k], from_text) for k in extra
                  if k.startswith(PROP_PREFIX)]
    for name, value, text in items:
        if value is None or (text and value == ""):
            continue
        type_ = declared.get(name)
        if type_ is None:
            props[name] = value  # undeclared: kept as given, no rule can read it
            continue
        try:
            props[name] = typed_value(value, type_, from_text=text)
        except ValueError as e:
            reasons.append(f"property {name}: {e}")
    return props


def _event_row(row: Row, project: Project, from_text: bool) -> _Event:
    reasons: list[str] = []
    email, ext = _keys(row, reasons)
    extra = [name for name in row if name not in _EVENT_FIELDS]
    for name in extra:  # in CSV the header was checked already
        if not from_text and not name.startswith(PROP_PREFIX):
            hint = did_you_mean(name, (*EVENT_KEY_COLUMNS, *EVENT_COLUMNS))
            reasons.append(f"unknown field {name!r}" + (f" ({hint})" if hint else ""))
    type_name = row.get("type")
    declared: dict[str, Any] = {}
    if not isinstance(type_name, str) or not type_name.strip():
        reasons.append("no event type")
    elif type_name.strip() not in project.events:
        hint = did_you_mean(type_name.strip(), project.events)
        reasons.append(f"unknown event type {type_name.strip()!r}" + (f" ({hint})" if hint else ""))
    else:
        declared = project.events[type_name.strip()]
    ts = 0
    stamp = row.get("timestamp")
    if not isinstance(stamp, str) or not stamp.strip():
        reasons.append("no timestamp")
    else:
        try:
            ts = parse_instant(stamp)
        except ValueError as e:
            reasons.append(f"timestamp: {e}")
    value: float | None = None
    raw_value = row.get("value")
    if raw_value is not None and not (from_text and raw_value.strip() == ""):
        try:
            value = float(number(raw_value))
        except ValueError as e:
            reasons.append(f"value: {e}")
    props = _properties(row, extra, declared, from_text, reasons)
    event_id = None
    try:
        event_id = _text(row.get("event_id"), "event_id")
    except ValueError as e:
        reasons.append(str(e))
    if reasons:
        raise ValueError("; ".join(reasons))
    assert isinstance(type_name, str)
    return _Event(email, ext, type_name.strip(), ts, value, props, event_id)


def _event_rows(events: list[_Event], ids: list[int | None], type_ids: dict[str, int],
                source: str) -> list[repo.EventRow]:
    rows = []
    for ev, cid in zip(events, ids, strict=True):
        if cid is None:
            continue
        props = repo.canonical_json(ev.properties) if ev.properties else None
        event_id = ev.event_id or repo.event_content_hash(
            f"{ev.email or ''}|{ev.external_id or ''}", ev.type, ev.ts, ev.value, props or "{}")
        rows.append(repo.EventRow(cid, type_ids[ev.type], ev.ts, ev.value, props, source, event_id))
    return rows


def import_events(
    engine: Engine, project: Project, path: Path, fmt: str | None = None,
    *, source_name: str = "import", now: Callable[[], int] = _now_ms,
) -> ImportReport:
    """Add the events of ``path`` to the store (see the module docstring). Events of contacts
    not in the store yet create those contacts (with no attributes)."""
    with _store_errors(path):
        return _import_events(engine, project, path, fmt, source_name, now)


def _import_events(engine: Engine, project: Project, path: Path, fmt: str | None,
                   source_name: str, now: Callable[[], int]) -> ImportReport:
    kind: Format = detect_format(path, fmt)
    tally = _Tally()
    match_first = project.config.identity.match
    with RowSource(path, kind) as source:
        if kind == "csv":
            _check_event_header(source, project)
        with begin_write(engine) as conn, repo.bulk_session(conn):
            type_ids = repo.event_type_ids(conn, project.events)
            resolver = repo.ContactResolver(conn, match_first=match_first)
            for batch in _batches(source, tally):
                good: list[_Event] = []
                for line, row in batch:
                    try:
                        good.append(_event_row(row, project, kind == "csv"))
                    except ValueError as e:
                        tally.problems.append(source.problem(line, str(e)))
                ids = resolver.resolve([(e.email, e.external_id) for e in good], now())
                rows = _event_rows(good, ids, type_ids, source_name)
                inserted = repo.insert_events(conn, rows)
                tally.inserted += inserted
                tally.unchanged += len(rows) - inserted
            return _finish(conn, "events", path, tally, now())


# ------------------------------------------------------------------------------- shared


@contextmanager
def _store_errors(path: Path) -> Iterator[None]:
    """A database error during an import: the transaction was rolled back."""
    try:
        yield
    except DBAPIError as e:
        reason = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
        raise StoreError(f"{path}: the store refused the import, nothing was stored: {reason}") from e


def _batches(source: RowSource, tally: _Tally) -> Iterator[list[tuple[int, Row]]]:
    batch: list[tuple[int, Row]] = []
    for line, row in source:
        tally.rows += 1
        if isinstance(row, str):
            tally.problems.append(source.problem(line, row))
            continue
        batch.append((line, row))
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _finish(conn: Connection, kind: Literal["contacts", "events"], path: Path, tally: _Tally,
            now_ms: int) -> ImportReport:
    tally.problems.sort(key=lambda p: p.location.line or 0)
    report = ImportReport(kind, str(path), tally.rows, tally.inserted, tally.updated,
                          tally.unchanged, tuple(tally.problems))
    summary = {k: v for k, v in report.to_json().items() if k != "problems"}
    conn.execute(schema.runs.insert().values(
        kind="import", trigger="manual", as_of=None, started_at=now_ms, finished_at=now_ms,
        status="partial" if report.problems else "ok", summary=summary,
    ))
    return report
