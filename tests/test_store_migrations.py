"""Opening a store: URL resolution, SQLite settings, versioned migrations (SQLite + PostgreSQL)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, create_engine, inspect, select, text

from mapping.errors import ConfigError
from sync.store import schema, schema_v1
from sync.store.db import open_store, resolve_url
from sync.store.errors import StoreError
from sync.store.migrations import CURRENT_VERSION, MIGRATIONS, Migration, current_version, migrate
from tests.store_support import store_url

__all__ = ["store_url"]  # the fixture

def _shape(engine: Engine) -> dict[str, object]:
    insp = inspect(engine)
    shape: dict[str, object] = {}
    for table in sorted(insp.get_table_names()):
        shape[table] = {
            "columns": sorted((c["name"], bool(c["nullable"])) for c in insp.get_columns(table)),
            "pk": sorted(insp.get_pk_constraint(table)["constrained_columns"]),
            "indexes": sorted(
                (str(i["name"]), tuple(str(c) for c in i["column_names"]), bool(i["unique"]))
                for i in insp.get_indexes(table)
                if not str(i["name"]).startswith("sqlite_autoindex")
                and not i.get("duplicates_constraint")
            ),
            "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
        }
    return shape


def test_migrating_from_nothing_gives_the_current_schema(store_url: str, tmp_path: Path) -> None:
    migrated = open_store(store_url, tmp_path)
    reference = create_engine(f"sqlite:///{tmp_path / 'reference.db'}")
    schema.metadata.create_all(reference)
    got, want = _shape(migrated), _shape(reference)
    assert sorted(got) == sorted(want)
    for table in want:
        want_t, got_t = want[table], got[table]
        assert isinstance(want_t, dict) and isinstance(got_t, dict)
        for part in ("columns", "pk", "indexes"):
            assert got_t[part] == want_t[part], (table, part)
        # PostgreSQL reports a UNIQUE column as a constraint, SQLite as one too: same set
        assert got_t["unique"] == want_t["unique"], table
    with migrated.connect() as conn:
        versions = conn.execute(select(schema.schema_version.c.version)).scalars().all()
    assert versions == [m.version for m in MIGRATIONS]
    migrated.dispose()


def test_reopening_applies_nothing(store_url: str, tmp_path: Path) -> None:
    first = open_store(store_url, tmp_path)
    assert migrate(first) == []
    first.dispose()


def _fill_v1(conn: Connection) -> dict[str, list[tuple[object, ...]]]:
    """One or more rows in every v1 table; returns them as read back."""
    t = schema_v1
    conn.execute(t.contacts.insert(), [
        {"id": 1, "email": "a@x.io", "external_id": "A1", "attributes": {"plan": "pro", "n": 2},
         "created_at": 1, "updated_at": 2},
        {"id": 2, "email": None, "external_id": "B2", "attributes": {}, "created_at": 3,
         "updated_at": 4},
    ])
    conn.execute(t.identities.insert(), [
        {"provider": "hubspot", "provider_id": "101", "contact_id": 1, "email": "a@x.io",
         "archived": False, "updated_at": 5},
    ])
    conn.execute(t.event_types.insert(), [{"id": 1, "name": "opened_email"}])
    conn.execute(t.events.insert(), [
        {"contact_id": 1, "type_id": 1, "ts": 1000, "value": 2.5, "properties": {"k": [1, 2]},
         "source": "import", "source_event_id": "e1"},
        {"contact_id": 2, "type_id": 1, "ts": 2000, "value": None, "properties": None,
         "source": "import", "source_event_id": "sha256:ab"},
    ])
    conn.execute(t.memberships.insert(), [
        {"contact_id": 1, "segment": "vip", "entered_at": 10, "exited_at": None, "rule_hash": "h"},
    ])
    conn.execute(t.group_state.insert(), [
        {"contact_id": 1, "group_name": "life", "value": "trial", "since": 11},
    ])
    conn.execute(t.computed_values.insert(), [
        {"contact_id": 1, "name": "score", "value": 42.0, "updated_at": 12},
    ])
    conn.execute(t.rank_cutoffs.insert(), [
        {"rank_key": "r", "k": 0, "cutoff": 1.5, "population": 2, "computed_at": 13},
    ])
    conn.execute(t.desired_values.insert(), [
        {"destination": "hubspot", "record_id": "101", "target": "field:tier", "contact_id": 1,
         "value": "High", "reason": "score", "updated_at": 14},
    ])
    conn.execute(t.acked_values.insert(), [
        {"destination": "hubspot", "record_id": "101", "target": "field:tier", "value": "Low",
         "acked_at": 15, "request_id": "rq"},
    ])
    conn.execute(t.cursors.insert(), [
        {"source": "hubspot", "stream": "contacts", "value": "c1", "updated_at": 16},
    ])
    conn.execute(t.runs.insert(), [
        {"kind": "import", "trigger": "manual", "as_of": None, "started_at": 17,
         "finished_at": 18, "status": "ok", "summary": {"rows": 2}},
    ])
    return _dump(conn)


def _dump(conn: Connection) -> dict[str, list[tuple[object, ...]]]:
    out: dict[str, list[tuple[object, ...]]] = {}
    for name, table in schema_v1.metadata.tables.items():
        if name == "schema_version":
            continue
        cols = [schema.metadata.tables[name].c[c.name] for c in table.columns]
        rows = conn.execute(select(*cols)).all()
        out[name] = sorted((tuple(r) for r in rows), key=repr)
    return out


def test_upgrading_a_v1_store_keeps_every_row(store_url: str, tmp_path: Path) -> None:
    engine = open_store(store_url, tmp_path, migrate=False)
    assert migrate(engine, MIGRATIONS[:1]) == [1]
    with engine.begin() as conn:
        before = _fill_v1(conn)
    assert all(before.values())
    engine.dispose()

    upgraded = open_store(store_url, tmp_path)
    with upgraded.connect() as conn:
        assert current_version(conn) == CURRENT_VERSION
        assert _dump(conn) == before
    upgraded.dispose()


def test_a_store_newer_than_the_code_is_refused(store_url: str, tmp_path: Path) -> None:
    engine = open_store(store_url, tmp_path)
    with engine.begin() as conn:
        conn.execute(schema.schema_version.insert().values(version=CURRENT_VERSION + 1,
                                                           applied_at=0))
    engine.dispose()
    with pytest.raises(StoreError, match=rf"schema version {CURRENT_VERSION + 1}.*upgrade segsync"):
        open_store(store_url, tmp_path)


def test_a_failing_step_leaves_nothing_behind(store_url: str, tmp_path: Path) -> None:
    def broken(conn: Connection) -> None:
        conn.execute(text("CREATE TABLE half_done (x INTEGER)"))
        conn.execute(text("INSERT INTO contacts (email, attributes, created_at, updated_at) "
                          "VALUES ('z@x.io', '{}', 0, 0)"))
        raise RuntimeError("step failed")

    engine = open_store(store_url, tmp_path)
    steps = (*MIGRATIONS, Migration(CURRENT_VERSION + 1, "broken", broken))
    with pytest.raises(RuntimeError, match="step failed"):
        migrate(engine, steps)
    with engine.connect() as conn:
        assert current_version(conn) == CURRENT_VERSION
        assert not inspect(conn).has_table("half_done")
        assert conn.execute(select(schema.contacts.c.id)).all() == []
    engine.dispose()


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    with create_engine(url).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE contacts (id INTEGER)")
    with pytest.raises(StoreError, match="not a segsync store"):
        open_store(url, tmp_path)


def test_concurrent_first_opens_migrate_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    with ThreadPoolExecutor(max_workers=4) as pool:
        engines = list(pool.map(lambda _: open_store(url, tmp_path), range(4)))
    for opened in engines:
        opened.dispose()
    engine = open_store(url, tmp_path)
    with engine.connect() as conn:
        versions = conn.execute(select(schema.schema_version.c.version)).scalars().all()
    assert sorted(versions) == [m.version for m in MIGRATIONS]
    engine.dispose()


def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    engine = open_store("sqlite:///s.db", tmp_path)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("sqlite:///segsync.db", "sqlite:///{base}/segsync.db"),
        ("sqlite:///data/../s.db", "sqlite:///{base}/s.db"),
        ("sqlite:////abs/s.db", "sqlite:////abs/s.db"),
        ("sqlite://", "sqlite://"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u:pw@h:5433/db", "postgresql+psycopg://u:***@h:5433/db"),
        ("env:SEGSYNC_TEST_STORE_URL", "postgresql+psycopg://u@h/fromenv"),
    ],
)
def test_resolve_url(url: str, want: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGSYNC_TEST_STORE_URL", "postgresql+psycopg://u@h/fromenv")
    got = resolve_url(url, tmp_path).render_as_string(hide_password=True)
    assert got == want.format(base=tmp_path.resolve())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", "unsupported database 'mysql'"),
        ("not a url", "is not a database URL"),
        ("env:SEGSYNC_TEST_UNSET_VAR", "SEGSYNC_TEST_UNSET_VAR is not set"),
    ],
)
def test_bad_urls_are_config_errors(url: str, message: str, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGSYNC_TEST_UNSET_VAR", raising=False)
    with pytest.raises(ConfigError, match=message):
        resolve_url(url, tmp_path)


def test_unreachable_postgres_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open the store postgresql"):
        open_store("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2", tmp_path)
