"""Importing events from CSV and JSONL: typed properties, dedupe by id or content hash,
per-row problems, file-level errors and atomicity."""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from mapping.errors import InputError
from sync import importer
from sync.store import db, repo, schema
from sync.store.db import open_store
from sync.store.errors import StoreError
from tests.store_support import counts, make_project, store_url

__all__ = ["store_url"]

T0 = 1_714_555_800_000  # 2024-05-01T09:30:00Z


def _events(engine: Engine) -> list[tuple[Any, ...]]:
    e, c, t = schema.events, schema.contacts, schema.event_types
    query = (
        select(c.c.email, c.c.external_id, t.c.name, e.c.ts, e.c.value, e.c.properties,
               e.c.source, e.c.source_event_id)
        .join(c, c.c.id == e.c.contact_id)
        .join(t, t.c.id == e.c.type_id)
        .order_by(e.c.ts, e.c.source_event_id)
    )
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


CSV = """email,external_id,type,timestamp,value,properties,prop.items,event_id
Ann@Example.com,,placed_order,2024-05-01T09:30:00Z,25.5,"{""order_id"": ""o1"", ""gift"": true}",3,e1
,X7,opened_email,2024-05-01T11:30:00+02:00,,,,
"""

JSONL = "\n".join(json.dumps(r) for r in [
    {"contact": "Ann@Example.com", "type": "placed_order", "timestamp": "2024-05-01T09:30:00Z",
     "value": 25.5, "properties": {"order_id": "o1", "gift": True}, "prop.items": 3,
     "event_id": "e1"},
    {"contact": "X7", "type": "opened_email", "timestamp": "2024-05-01T11:30:00+02:00"},
]) + "\n"


@pytest.mark.parametrize(("name", "text"), [("e.csv", CSV), ("e.jsonl", JSONL)])
def test_events_are_stored_typed(name: str, text: str, store_url: str, tmp_path: Path) -> None:
    engine = open_store(store_url, tmp_path)
    report = importer.import_events(engine, make_project(tmp_path), _write(tmp_path / name, text))
    assert (report.rows, report.inserted, report.unchanged, report.rejected) == (2, 2, 0, 0)
    stored = _events(engine)
    assert stored[0] == ("ann@example.com", None, "placed_order", T0, 25.5,
                         {"order_id": "o1", "gift": True, "items": 3}, "import", "e1")
    email, ext, type_, ts, value, props, source, source_id = stored[1]
    assert (email, ext, type_, ts, value, props, source) == (
        None, "X7", "opened_email", T0, None, None, "import")
    assert source_id.startswith("sha256:") and len(source_id) == 7 + 64
    engine.dispose()


def test_reimport_adds_nothing(store_url: str, tmp_path: Path) -> None:
    engine = open_store(store_url, tmp_path)
    project = make_project(tmp_path)
    path = _write(tmp_path / "e.jsonl", JSONL)
    importer.import_events(engine, project, path)
    before = _events(engine)
    again = importer.import_events(engine, project, path)
    assert (again.inserted, again.unchanged) == (0, 2)
    assert _events(engine) == before
    # the same events as CSV: same ids, same content hashes
    as_csv = importer.import_events(engine, project, _write(tmp_path / "e.csv", CSV))
    assert (as_csv.inserted, as_csv.unchanged) == (0, 2)
    engine.dispose()


def test_duplicates_inside_one_file_count_once(tmp_path: Path) -> None:
    engine = open_store("sqlite:///s.db", tmp_path)
    row = {"email": "a@b.io", "type": "opened_email", "timestamp": "2024-05-01T09:30:00Z"}
    lines = [row, row, {**row, "event_id": "k"}, {**row, "event_id": "k", "value": 9},
             {**row, "timestamp": "2024-05-01T10:30:00+01:00"}]  # same instant as row
    path = _write(tmp_path / "e.jsonl", "\n".join(json.dumps(r) for r in lines) + "\n")
    report = importer.import_events(engine, make_project(tmp_path), path)
    assert (report.inserted, report.unchanged) == (2, 3)
    engine.dispose()


def test_source_separates_ids(tmp_path: Path) -> None:
    engine = open_store("sqlite:///s.db", tmp_path)
    project = make_project(tmp_path)
    path = _write(tmp_path / "e.jsonl", JSONL)
    importer.import_events(engine, project, path, source_name="shop")
    report = importer.import_events(engine, project, path, source_name="crm")
    assert report.inserted == 2
    assert sorted({r[6] for r in _events(engine)}) == ["crm", "shop"]
    engine.dispose()


def test_events_create_unknown_contacts_once(tmp_path: Path) -> None:
    engine = open_store("sqlite:///s.db", tmp_path)
    rows = [{"email": f"u{i % 3}@b.io", "type": "opened_email",
             "timestamp": f"2024-05-01T09:3{i}:00Z"} for i in range(6)]
    path = _write(tmp_path / "e.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    importer.import_events(engine, make_project(tmp_path), path)
    assert counts(engine)["contacts"] == 3 and counts(engine)["events"] == 6
    engine.dispose()


@pytest.mark.parametrize("match", ["email", "external_id"])
def test_identity_match_order_decides_between_two_contacts(match: str, tmp_path: Path) -> None:
    engine = open_store("sqlite:///s.db", tmp_path)
    project = make_project(tmp_path, match=match)
    _write(tmp_path / "c.csv", "email,external_id\na@b.io,\n,X1\n")
    importer.import_contacts(engine, project, tmp_path / "c.csv")
    path = _write(tmp_path / "e.jsonl", json.dumps(
        {"email": "a@b.io", "external_id": "X1", "type": "opened_email",
         "timestamp": "2024-05-01T09:30:00Z"}) + "\n")
    importer.import_events(engine, project, path)
    email, ext = _events(engine)[0][:2]
    assert (email, ext) == (("a@b.io", None) if match == "email" else (None, "X1"))
    engine.dispose()


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"type": "clicked"}, "unknown event type 'clicked'"),
        ({"type": "opened_emails"}, "did you mean 'opened_email'?"),
        ({"timestamp": "2024-05-01T09:30:00"}, "has no UTC offset"),
        ({"timestamp": "yesterday"}, "'yesterday' is not an ISO-8601 timestamp"),
        ({"timestamp": 1714555800}, "no timestamp"),
        ({"value": "ten"}, "value: 'ten' is not a number"),
        ({"properties": [1]}, "properties must be a JSON object"),
        ({"properties": {"campaign": 5}}, "property campaign: expected a string"),
        ({"type": "placed_order", "properties": {"shipped_at": "soon"}}, "property shipped_at"),
        ({"type": "placed_order", "properties": {"skus": "a"}}, "property skus: expected a list"),
        ({"colour": "red"}, "unknown field 'colour'"),
        ({"email": "nope"}, "invalid email 'nope'"),
        ({"email": None}, "no contact key"),
    ],
)
def test_bad_jsonl_rows(row: dict[str, Any], reason: str, tmp_path: Path) -> None:
    engine = open_store("sqlite:///s.db", tmp_path)
    base = {"email": "a@b.io", "type": "opened_email", "timestamp": "2024-05-01T09:30:00Z"}
    lines = [json.dumps(base), json.dumps({**base, **row}), json.dumps({**base, "value": 2})]
    path = _write(tmp_path / "e.jsonl", "\n".join(lines) + "\n")
    report = importer.import_events(engine, make_project(tmp_path), path)
    assert [p.location.line for p in report.problems] == [2]
    assert reason in report.problems[0].message
    assert report.inserted == 2 and counts(engine)["events"] == 2
    engine.dispose()


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        ("a@b.io,placed_order,2024-05-01T09:30:00Z,,{bad,", "properties: invalid JSON"),
        ("a@b.io,placed_order,2024-05-01T09:30:00Z,,,x", "property items: 'x' is not a number"),
        ("a@b.io,placed_order,,,,", "no timestamp"),
        ("a@b.io,,2024-05-01T09:30:00Z,,,", "no event type"),
    ],
)
def test_bad_csv_rows(cells: str, reason: str, tmp_path: Path) -> None:
    engine = open_store("sqlite:///s.db", tmp_path)
    text = ("email,type,timestamp,value,properties,prop.items\n"
            "a@b.io,placed_order,2024-05-01T09:30:00Z,1,,2\n" + cells + "\n")
    report = importer.import_events(engine, make_project(tmp_path), _write(tmp_path / "e.csv", text))
    assert [p.location.line for p in report.problems] == [3]
    assert reason in report.problems[0].message
    assert report.inserted == 1
    engine.dispose()


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("type,timestamp", "needs a column 'email', 'external_id' or 'contact'"),
        ("email,timestamp", "needs a column 'type'"),
        ("email,type", "needs a column 'timestamp'"),
        ("email,type,timestamp,propertes", "unknown column 'propertes'"),
    ],
)
def test_bad_header_changes_nothing(header: str, reason: str, tmp_path: Path) -> None:
    engine = open_store("sqlite:///s.db", tmp_path)
    before = counts(engine)
    with pytest.raises(InputError, match=reason):
        importer.import_events(engine, make_project(tmp_path),
                               _write(tmp_path / "e.csv", header + "\na@b.io,x,y,z\n"))
    assert counts(engine) == before
    engine.dispose()


def test_a_crash_midway_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "BATCH", 10)
    real_insert = repo.insert_events
    calls: list[int] = []

    def dying_insert(conn: Any, rows: Any) -> int:
        calls.append(len(rows))
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process is stopped midway through the file
        return real_insert(conn, rows)

    monkeypatch.setattr(repo, "insert_events", dying_insert)
    engine = open_store("sqlite:///s.db", tmp_path)
    rows = [{"email": f"u{i}@b.io", "type": "opened_email",
             "timestamp": f"2024-05-01T09:{i % 60:02d}:00Z"} for i in range(50)]
    path = _write(tmp_path / "e.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(KeyboardInterrupt):
        importer.import_events(engine, make_project(tmp_path), path)
    assert calls == [10, 10, 10]
    assert counts(engine) == {"contacts": 0, "events": 0, "event_types": 0, "runs": 0}
    engine.dispose()


def test_an_import_is_recorded_as_a_run(tmp_path: Path) -> None:
    engine = open_store("sqlite:///s.db", tmp_path)
    path = _write(tmp_path / "e.jsonl", JSONL + "{oops\n")
    importer.import_events(engine, make_project(tmp_path), path, now=lambda: 5)
    with engine.connect() as conn:
        run = conn.execute(select(schema.runs)).one()
    assert (run.kind, run.status, run.started_at) == ("import", "partial", 5)
    assert run.summary["inserted"] == 2 and run.summary["rejected"] == 1
    engine.dispose()


def test_a_locked_store_is_a_store_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 200)
    engine = open_store("sqlite:///s.db", tmp_path)
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        with pytest.raises(StoreError, match="the store refused the import, nothing was stored: "
                                             "database is locked"):
            importer.import_events(engine, make_project(tmp_path), _write(tmp_path / "e.jsonl", JSONL))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert counts(engine)["events"] == 0
    engine.dispose()


def test_gzipped_files(tmp_path: Path) -> None:
    engine = open_store("sqlite:///s.db", tmp_path)
    path = tmp_path / "e.jsonl.gz"
    path.write_bytes(gzip.compress(JSONL.encode()))
    report = importer.import_events(engine, make_project(tmp_path), path)
    assert (report.inserted, report.rejected) == (2, 0)
    engine.dispose()
