"""Importing contacts from CSV and JSONL: typing, key normalisation, merging, per-row problems,
file-level errors that leave the store unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from mapping.errors import InputError
from sync import importer
from sync.store import repo, schema
from sync.store.db import open_store
from tests.store_support import counts, make_project, store_url

__all__ = ["store_url"]

DAY_MS = 86_400_000


def _contacts(engine: Engine) -> dict[str, tuple[str | None, dict[str, Any]]]:
    c = schema.contacts
    with engine.connect() as conn:
        rows = conn.execute(select(c.c.email, c.c.external_id, c.c.attributes)).all()
    return {str(r.external_id or r.email): (r.email, dict(r.attributes)) for r in rows}


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


CSV = """email,external_id,country,ltv,vip,signup_date,last_seen,tags
 Ann@Example.COM ,A1,US,12.5,yes,2024-01-31,2024-02-01T10:00:00+02:00,a; b;;c
bob@example.com,,DE,3,false,,,
,C3,FR,,,,,
"""

JSONL = "\n".join(json.dumps(r) for r in [
    {"email": " Ann@Example.COM ", "external_id": "A1", "country": "US", "ltv": 12.5, "vip": True,
     "signup_date": "2024-01-31", "last_seen": "2024-02-01T10:00:00+02:00",
     "tags": ["a", "b", "c"]},
    {"email": "bob@example.com", "country": "DE", "ltv": 3, "vip": False},
    {"external_id": "C3", "country": "FR"},
]) + "\n"


@pytest.mark.parametrize(("name", "text"), [("c.csv", CSV), ("c.jsonl", JSONL)])
def test_attributes_are_typed_and_emails_normalised(name: str, text: str, store_url: str,
                                                    tmp_path: Path) -> None:
    engine = open_store(store_url, tmp_path)
    report = importer.import_contacts(engine, make_project(tmp_path), _write(tmp_path / name, text))
    assert (report.rows, report.inserted, report.updated, report.rejected) == (3, 3, 0, 0)
    stored = _contacts(engine)
    assert stored["A1"] == ("ann@example.com", {
        "country": "US", "ltv": 12.5, "vip": True, "signup_date": 19753 * DAY_MS,
        "last_seen": 1706774400000, "tags": ["a", "b", "c"]})
    assert stored["bob@example.com"] == ("bob@example.com",
                                         {"country": "DE", "ltv": 3, "vip": False})
    assert stored["C3"] == (None, {"country": "FR"})
    engine.dispose()


def test_reimporting_the_same_file_changes_nothing(store_url: str, tmp_path: Path) -> None:
    engine = open_store(store_url, tmp_path)
    project = make_project(tmp_path)
    path = _write(tmp_path / "c.csv", CSV)
    importer.import_contacts(engine, project, path, now=lambda: 1000)
    before = _contacts(engine)
    with engine.connect() as conn:
        stamps_before = conn.execute(select(schema.contacts.c.updated_at)).scalars().all()
    again = importer.import_contacts(engine, project, path, now=lambda: 2000)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)
    assert _contacts(engine) == before
    with engine.connect() as conn:
        assert conn.execute(select(schema.contacts.c.updated_at)).scalars().all() == stamps_before
    engine.dispose()


def test_merge_rules(tmp_path: Path) -> None:
    engine = open_store("sqlite:///s.db", tmp_path)
    project = make_project(tmp_path)
    importer.import_contacts(engine, project, _write(tmp_path / "a.csv", CSV))
    update = "\n".join(json.dumps(r) for r in [
        # same external id, new email: the email changes; ltv updated; country kept
        {"external_id": "A1", "email": "ann.new@example.com", "ltv": 99},
        # null clears an attribute
        {"email": "bob@example.com", "vip": None},
        # email of A1's contact (now ann.new) with C3's external id: two contacts -> conflict
        {"email": "ann.new@example.com", "external_id": "C3", "country": "XX"},
        # email known, but that contact has another external id -> conflict
        {"email": "ann.new@example.com", "external_id": "Z9"},
        # email only, no external id yet: it gets one
        {"email": "bob@example.com", "external_id": "B2"},
    ]) + "\n"
    report = importer.import_contacts(engine, project, _write(tmp_path / "u.jsonl", update))
    assert [p.location.line for p in report.problems] == [3, 4]
    assert "belong to two different contacts" in report.problems[0].message
    assert "external_id A1, not Z9" in report.problems[1].message
    stored = _contacts(engine)
    assert stored["A1"][0] == "ann.new@example.com"
    assert stored["A1"][1]["ltv"] == 99 and stored["A1"][1]["country"] == "US"
    assert stored["B2"] == ("bob@example.com", {"country": "DE", "ltv": 3})
    assert stored["C3"] == (None, {"country": "FR"})
    assert report.updated == 2 and report.inserted == 0
    engine.dispose()


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("not-an-email,X1,US,,,,,", "invalid email 'not-an-email'"),
        ("a@b.io,X1,US,lots,,,,", "ltv: 'lots' is not a number"),
        ("a@b.io,X1,US,,maybe,,,", "vip: 'maybe' is not a boolean"),
        ("a@b.io,X1,US,,,31/01/2024,,", "signup_date: '31/01/2024' is not a date"),
        ("a@b.io,X1,US,,,,2024-02-01T10:00:00,", "last_seen: timestamp '2024-02-01T10:00:00' "
         "has no UTC offset"),
        (",,US,,,,,", "no contact key"),
        ("a@b.io,X1,US,,,,,,extra", "9 fields but the header has 8"),
    ],
)
def test_bad_csv_rows_are_reported_and_good_rows_kept(row: str, reason: str,
                                                      tmp_path: Path) -> None:
    engine = open_store("sqlite:///s.db", tmp_path)
    text = CSV.splitlines()[0] + "\nok1@example.com,,US,,,,,\n" + row + "\nok2@example.com,,,,,,,\n"
    path = _write(tmp_path / "c.csv", text)
    report = importer.import_contacts(engine, make_project(tmp_path), path)
    assert [(p.location.line, p.location.file) for p in report.problems] == [(3, str(path))]
    assert reason in report.problems[0].message
    assert sorted(_contacts(engine)) == ["ok1@example.com", "ok2@example.com"]
    engine.dispose()


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"email": "a@b.io", "colour": "red"}', "unknown attribute 'colour'"),
        ('{"email": "a@b.io", "countyr": "US"}', "did you mean 'country'?"),
        ('{"email": "a@b.io", "tags": "a;b"}', "tags: expected a list of strings"),
        ('{"email": "a@b.io", "ltv": true}', "ltv: expected a number, got true"),
        ('{"email": 5}', "email must be a string"),
        ('{"email": "a@b.io", ', "invalid JSON"),
        ('["a@b.io"]', "expected a JSON object"),
    ],
)
def test_bad_jsonl_rows_are_reported(line: str, reason: str, tmp_path: Path) -> None:
    engine = open_store("sqlite:///s.db", tmp_path)
    text = '{"email": "ok@example.com"}\n\n' + line + "\n"
    report = importer.import_contacts(engine, make_project(tmp_path), _write(tmp_path / "c.jsonl", text))
    assert [p.location.line for p in report.problems] == [3]
    assert reason in report.problems[0].message
    assert list(_contacts(engine)) == ["ok@example.com"]
    engine.dispose()


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("c.csv", "country,ltv\nUS,1\n", "needs an 'email' or 'external_id' column"),
        ("c.csv", "email,countri\na@b.io,US\n", "unknown attribute column 'countri'"),
        ("c.csv", "email,email\na@b.io,a@b.io\n", "column 'email' appears twice"),
        ("c.csv", "", "the file is empty"),
        ("c.txt", "email\na@b.io\n", "cannot tell the format"),
        ("missing.csv", None, "cannot read the file"),
    ],
)
def test_file_level_errors_change_nothing(name: str, content: str | None, reason: str,
                                          tmp_path: Path) -> None:
    engine = open_store("sqlite:///s.db", tmp_path)
    path = tmp_path / name
    if content is not None:
        _write(path, content)
    before = counts(engine)
    with pytest.raises(InputError, match=reason):
        importer.import_contacts(engine, make_project(tmp_path), path)
    assert counts(engine) == before
    engine.dispose()


def test_undecodable_bytes_midway_roll_back_earlier_batches(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "BATCH", 100)
    batches: list[int] = []
    real_upsert = repo.upsert_contacts

    def counting_upsert(*args: Any, **kwargs: Any) -> Any:
        batches.append(1)
        return real_upsert(*args, **kwargs)

    monkeypatch.setattr(repo, "upsert_contacts", counting_upsert)
    engine = open_store("sqlite:///s.db", tmp_path)
    path = tmp_path / "c.csv"
    good = "".join(f"u{i}@example.com,US\n" for i in range(3000))  # well past the first read
    path.write_bytes(b"email,country\n" + good.encode() + b"bad@example.com,\xff\xfe\n")
    with pytest.raises(InputError, match="not UTF-8"):
        importer.import_contacts(engine, make_project(tmp_path), path)
    assert len(batches) >= 2  # batches were written before the bad bytes were read
    assert counts(engine)["contacts"] == 0 and counts(engine)["runs"] == 0
    engine.dispose()


def test_format_option_overrides_the_extension(tmp_path: Path) -> None:
    engine = open_store("sqlite:///s.db", tmp_path)
    path = _write(tmp_path / "contacts.txt", JSONL)
    report = importer.import_contacts(engine, make_project(tmp_path), path, "jsonl")
    assert report.inserted == 3
    engine.dispose()
