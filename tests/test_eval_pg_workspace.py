"""PostgreSQL: a full run keeps its big working tables as UNLOGGED tables in a schema of its own
(so parallel workers can read them), streams the per-type passes over the type-first index,
writes a pass with a DISTINCT aggregate in two levels, and gives exactly what the
temporary-table path and SQLite give; the schema never outlives the run, and a role that may
not create schemas falls back to temporary tables."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event

from mapping.config import load_project
from mapping.project import Project
from sync.evaluate import evaluate, full, traits
from sync.store.db import open_store

pytest.importorskip("numpy", reason="the bench generator needs numpy (bench extra)")

from bench.engine_gen import AS_OF_MS, Spec
from bench.engine_load import load_postgres, load_sqlite

pytestmark = pytest.mark.postgres
CONFIG = Path(__file__).resolve().parent.parent / "bench" / "engine_bench.toml"
ADMIN_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"
SPEC = Spec(contacts=400, seed=11)


@pytest.fixture(scope="module")
def project() -> Project:
    return load_project(CONFIG)


@pytest.fixture(scope="module")
def admin() -> Iterator[Engine]:
    engine = create_engine(ADMIN_URL)
    try:
        with engine.connect():
            pass
    except Exception as e:  # noqa: BLE001 - any connection failure means: skip, with the reason
        engine.dispose()
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 is not reachable: {e}")
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def schema(admin: Engine) -> Iterator[str]:
    name = f"t_ws_{uuid.uuid4().hex[:10]}"
    load_postgres(SPEC, variant="typefirst", log=False, schema_name=name)
    yield name
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def _store(schema: str, user: str = "root") -> Engine:
    return open_store(f"postgresql+psycopg://{user}@127.0.0.1:5432/test?options=-csearch_path%3D{schema}")


class Statements:
    """The statements an engine sends (their first 60 characters)."""

    def __init__(self, engine: Engine) -> None:
        self.seen: list[str] = []

        @event.listens_for(engine, "before_cursor_execute")
        def note(_c: Any, _cur: Any, stmt: str, *_: Any) -> None:
            self.seen.append(" ".join(stmt.split())[:60])

    def starting(self, prefix: str) -> list[str]:
        return [s for s in self.seen if s.startswith(prefix)]


def _run_schemas(admin: Engine) -> list[str]:
    with admin.connect() as conn:
        return [r[0] for r in conn.exec_driver_sql(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'segsync\\_run\\_%%'")]


Outcome = tuple[dict[str, int], dict[str, frozenset[int]]]


def _outcome(engine: Engine, project: Project, persist: bool) -> Outcome:
    result = evaluate(engine, project, AS_OF_MS, persist=persist)
    members = {name: frozenset(c.contact_id for c in result.results if name in c.segments)
               for name in project.segments}
    return dict(result.sizes), members


@pytest.mark.parametrize("persist", [False, True])
def test_workspace_gives_what_temporary_tables_give(schema: str, project: Project, admin: Engine,
                                                     monkeypatch: pytest.MonkeyPatch, persist: bool) -> None:
    store = _store(schema)
    try:
        with store.begin() as conn:
            conn.exec_driver_sql("DELETE FROM memberships")
        seen = Statements(store)
        with_workspace = _outcome(store, project, persist)
        assert seen.starting("CREATE UNLOGGED TABLE segsync_tt_")
        assert seen.starting("CREATE UNLOGGED TABLE segsync_wide")
        assert not seen.starting("CREATE TEMPORARY TABLE")
        assert seen.starting("SET LOCAL enable_hashagg = off"), "the passes stream over the type-first index"
        assert _run_schemas(admin) == []

        with store.begin() as conn:
            conn.exec_driver_sql("DELETE FROM memberships")
        monkeypatch.setattr(traits, "_open_pg_workspace", lambda conn: None)
        seen.seen.clear()
        without = _outcome(store, project, persist)
        assert seen.starting("CREATE TEMPORARY TABLE segsync_wide")
        assert not seen.starting("CREATE UNLOGGED TABLE")
        assert with_workspace == without
        assert sum(with_workspace[0].values()) > 0
    finally:
        store.dispose()


def test_a_failed_run_leaves_no_workspace(schema: str, project: Project, admin: Engine,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any) -> None:
        assert _run_schemas(admin) == [], "the schema is not visible outside the run's transaction"
        raise RuntimeError("injected failure after the working tables")

    monkeypatch.setattr(full.FullRun, "_changes", boom)
    store = _store(schema)
    try:
        with pytest.raises(RuntimeError, match="injected failure"):
            evaluate(store, project, AS_OF_MS, persist=True)
        assert _run_schemas(admin) == []
    finally:
        store.dispose()


def test_a_role_without_create_on_the_database_keeps_temporary_tables(
        schema: str, project: Project, admin: Engine, caplog: pytest.LogCaptureFixture) -> None:
    role = f"t_nocreate_{uuid.uuid4().hex[:8]}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
        conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        conn.exec_driver_sql(f"GRANT ALL ON ALL TABLES IN SCHEMA {schema} TO {role}")
        conn.exec_driver_sql(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA {schema} TO {role}")
    store = _store(schema, role)
    mine = _store(schema)
    try:
        with mine.connect() as conn:
            can = conn.exec_driver_sql(f"SELECT has_database_privilege('{role}', 'test', 'CREATE')").scalar()
        assert can is False
        seen = Statements(store)
        with caplog.at_level("INFO", logger=traits.LOG.name):
            theirs = _outcome(store, project, persist=False)
        assert seen.starting("CREATE TEMPORARY TABLE segsync_wide")
        assert "working tables stay temporary" in caplog.text
        assert theirs == _outcome(mine, project, persist=False)
    finally:
        store.dispose()
        mine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")


def test_postgresql_gives_what_sqlite_gives_on_the_bench_project(schema: str, project: Project,
                                                                  tmp_path: Path) -> None:
    path = load_sqlite(SPEC, variant="typefirst", path=tmp_path / "b.db", log=False)
    lite = open_store(f"sqlite:///{path}")
    pg = _store(schema)
    try:
        got = _outcome(pg, project, persist=False)
        assert got == _outcome(lite, project, persist=False)
        assert sum(got[0].values()) > 0
    finally:
        pg.dispose()
        lite.dispose()


def test_a_pass_with_one_distinct_aggregate_is_written_in_two_levels(schema: str, project: Project) -> None:
    pg = _store(schema)
    try:
        full_text: list[str] = []

        @event.listens_for(pg, "before_cursor_execute")
        def note(_c: Any, _cur: Any, stmt: str, *_: Any) -> None:
            if stmt.startswith("CREATE UNLOGGED TABLE segsync_tt_"):
                full_text.append(stmt)

        evaluate(pg, project, AS_OF_MS, persist=False)
    finally:
        pg.dispose()
    split = [s for s in full_text if "pass_parts" in s]
    assert len(split) == 1 and "count(pass_parts.d)" in split[0]
    assert all("DISTINCT" not in s.upper().replace("IS DISTINCT", "") for s in full_text)


def test_latest_sequences_are_probed_into_a_table_not_in_the_verdicts(schema: str, project: Project) -> None:
    pg = _store(schema)
    try:
        created: dict[str, str] = {}

        @event.listens_for(pg, "before_cursor_execute")
        def note(_c: Any, _cur: Any, stmt: str, *_: Any) -> None:
            if stmt.startswith("CREATE UNLOGGED TABLE segsync_"):
                created[stmt.split()[3]] = stmt

        evaluate(pg, project, AS_OF_MS, persist=False)
    finally:
        pg.dispose()
    assert "segsync_sq0" in created and "NOT (EXISTS" in created["segsync_sq0"]
    assert "EXISTS" not in created["segsync_res"], "a correlated probe makes the verdicts serial"
    assert "segsync_sq0" in created["segsync_res"]


def test_a_run_that_writes_many_memberships_analyses_them(schema: str, project: Project, admin: Engine,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    pg = _store(schema)
    try:
        with pg.begin() as conn:
            conn.exec_driver_sql("DELETE FROM memberships")
        seen = Statements(pg)
        monkeypatch.setattr(full, "ANALYZE_AFTER_ROWS", 10**9)
        first = evaluate(pg, project, AS_OF_MS, persist=True)
        assert sum(first.entered.values()) > 0 and not seen.starting("ANALYZE memberships")
        with pg.begin() as conn:
            conn.exec_driver_sql("DELETE FROM memberships")
        monkeypatch.setattr(full, "ANALYZE_AFTER_ROWS", 1)
        evaluate(pg, project, AS_OF_MS, persist=True)
        assert seen.starting("ANALYZE memberships")
        with admin.connect() as conn:
            rows = conn.exec_driver_sql(
                f"SELECT reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                f"WHERE n.nspname = '{schema}' AND c.relname = 'memberships'").scalar()
        assert rows == sum(first.entered.values())
    finally:
        pg.dispose()
