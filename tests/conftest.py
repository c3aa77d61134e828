"""Engine fixtures for the evaluation tests: a migrated store on a SQLite file and on
PostgreSQL (a fresh schema, dropped afterwards). PostgreSQL is skipped, with the reason, only
when the server on 127.0.0.1:5432 cannot be reached."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import OperationalError

from sync.store.db import open_store

PG_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"
ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _pg_admin() -> Engine:
    admin = create_engine(PG_URL)
    try:
        with admin.connect():
            pass
    except OperationalError as e:
        admin.dispose()
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 is not reachable: {e.orig}")
    return admin


def _store(kind: str, directory: Path) -> Iterator[Engine]:
    if kind == "sqlite":
        engine = open_store(f"sqlite:///{directory / 'eval.db'}")
        yield engine
        engine.dispose()
        return
    admin = _pg_admin()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        engine = open_store(f"{PG_URL}?options=-csearch_path%3D{schema}")
        yield engine
        engine.dispose()
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture(params=ENGINES)
def eval_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh, migrated, empty store (one per test)."""
    yield from _store(request.param, tmp_path)


@pytest.fixture(scope="module", params=ENGINES)
def eval_engine_module(request: pytest.FixtureRequest,
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A migrated store shared by a module's tests (hypothesis examples clear it themselves)."""
    yield from _store(request.param, tmp_path_factory.mktemp("eval"))
