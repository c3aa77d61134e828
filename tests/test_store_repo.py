"""The store's write helpers: email normalisation, contact resolution, identities, event types,
event inserts with dedupe (SQLite and PostgreSQL), the bulk-session page cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from sync.store import repo, schema
from sync.store.db import open_project_store, open_store
from sync.store.tx import begin_write
from tests.store_support import make_project, store_url

__all__ = ["store_url"]


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("  Ann@Example.COM ", "ann@example.com"),
        ("a.b+tag@sub.example.co.uk", "a.b+tag@sub.example.co.uk"),
        ("O'Neil@Bücher.de", "o'neil@bücher.de"),
    ],
)
def test_normalise_email(raw: str, want: str) -> None:
    assert repo.normalise_email(raw) == want


@pytest.mark.parametrize("raw", ["", "ann", "ann@", "@example.com", "ann@example", "a b@x.io",
                                 "a@@x.io", "a@x..io", "a@.x.io", "x" * 320 + "@x.io",
                                 "[b]a@x.io", "a.@x.io", ".a@x.io", "a@-x.io", "a@x.1"])
def test_invalid_emails(raw: str) -> None:
    with pytest.raises(ValueError, match="invalid email"):
        repo.normalise_email(raw)


def test_content_hash_is_canonical() -> None:
    a = repo.event_content_hash("a@x.io|", "opened", 5, 1.0, {"x": 1, "y": [2]})
    assert a == repo.event_content_hash("a@x.io|", "opened", 5, 1.0, {"y": [2], "x": 1})
    assert a == repo.event_content_hash("a@x.io|", "opened", 5, 1.0,
                                        repo.canonical_json({"x": 1, "y": [2]}))
    others = {repo.event_content_hash(*args) for args in [
        ("b@x.io|", "opened", 5, 1.0, {"x": 1, "y": [2]}),
        ("a@x.io|", "clicked", 5, 1.0, {"x": 1, "y": [2]}),
        ("a@x.io|", "opened", 6, 1.0, {"x": 1, "y": [2]}),
        ("a@x.io|", "opened", 5, None, {"x": 1, "y": [2]}),
        ("a@x.io|", "opened", 5, 1.0, {"x": 2, "y": [2]}),
    ]}
    assert a not in others and len(others) == 5


def test_open_store_takes_a_project(tmp_path: Path) -> None:
    project = make_project(tmp_path, url="sqlite:///sub/p.db")
    for engine in (open_store(project), open_project_store(project)):
        assert engine.url.database == str(tmp_path / "sub" / "p.db")
        engine.dispose()


def test_insert_events_dedupes_and_counts(store_url: str, tmp_path: Path) -> None:
    engine = open_store(store_url, tmp_path)
    with begin_write(engine) as conn:
        [cid] = repo.contact_ids(conn, [("a@x.io", None)], 0)
        assert cid is not None
        types = repo.event_type_ids(conn, ["opened", "clicked"])
        assert repo.event_type_ids(conn, ["clicked", "opened"]) == types
        rows = [repo.EventRow(cid, types["opened"], ts, None, {"k": ts} if ts else None, "s", f"e{ts}")
                for ts in range(5)]
        assert repo.insert_events(conn, rows) == 5
        assert repo.insert_events(conn, [*rows[:2], *rows[:1]]) == 0
        assert repo.insert_events(conn, [
            repo.EventRow(cid, types["clicked"], 9, 2.5, '{"a":1}', "s", "e9"),
            repo.EventRow(cid, types["clicked"], 9, 2.5, '{"a":1}', "s", "e9"),  # repeated
            repo.EventRow(cid, types["clicked"], 9, 2.5, None, "other", "e0"),  # other source
        ]) == 2
        stored = conn.execute(
            select(schema.events.c.source_event_id, schema.events.c.properties)
            .order_by(schema.events.c.id)).all()
    assert [tuple(r) for r in stored] == [
        ("e0", None), ("e1", {"k": 1}), ("e2", {"k": 2}), ("e3", {"k": 3}), ("e4", {"k": 4}),
        ("e9", {"a": 1}), ("e0", None)]
    engine.dispose()


def test_contact_resolver_creates_once_and_prefers_match_first(store_url: str,
                                                               tmp_path: Path) -> None:
    engine = open_store(store_url, tmp_path)
    with begin_write(engine) as conn:
        ids = repo.contact_ids(conn, [("a@x.io", None), (None, "X1"), ("a@x.io", None),
                                      ("b@x.io", "X2")], 0)
        assert ids[0] == ids[2] and len({ids[0], ids[1], ids[3]}) == 3
        a, x1 = ids[0], ids[1]
        for match, want in (("email", a), ("external_id", x1)):
            resolver = repo.ContactResolver(conn, match_first=match)
            assert resolver.resolve([("a@x.io", "X1")], 0) == [want]
            assert resolver.resolve([("a@x.io", "X1")], 0) == [want]  # from the cache
        assert repo.contact_ids(conn, [("new@x.io", None)], 0, create=False) == [None]
        total = conn.execute(select(schema.contacts.c.id)).all()
    assert len(total) == 3
    engine.dispose()


def test_identities_upsert(store_url: str, tmp_path: Path) -> None:
    engine = open_store(store_url, tmp_path)
    with begin_write(engine) as conn:
        a, b = repo.contact_ids(conn, [("a@x.io", None), ("b@x.io", None)], 0)
        assert a is not None and b is not None
        repo.upsert_identity(conn, "hubspot", "101", a, 1, email="a@x.io")
        assert repo.contact_for_identity(conn, "hubspot", "101") == a
        repo.upsert_identity(conn, "hubspot", "101", b, 2, email="b@x.io", archived=True)
        assert repo.contact_for_identity(conn, "hubspot", "101") == b
        assert repo.contact_for_identity(conn, "klaviyo", "101") is None
        row = conn.execute(select(schema.identities)).one()
    assert (row.contact_id, row.email, row.archived, row.updated_at) == (b, "b@x.io", True, 2)
    engine.dispose()


def test_bulk_session_restores_the_page_cache(tmp_path: Path) -> None:
    engine = open_store("sqlite:///s.db", tmp_path)
    with begin_write(engine) as conn:
        before = conn.exec_driver_sql("PRAGMA cache_size").scalar()
        with repo.bulk_session(conn, cache_mb=64):
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -64 * 1024
        assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == before
    engine.dispose()
