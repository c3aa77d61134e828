"""Shared test support for the store, import and CLI tests: an empty store on SQLite or on
PostgreSQL (a fresh schema, dropped afterwards), and a small hand-built project."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.exc import OperationalError

from mapping.models import Config
from mapping.project import Project
from mapping.rules.ast import Type
from sync.store import schema

PG_ADMIN_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"


def pg_admin() -> Engine:
    """An engine on the test PostgreSQL, or skip the test with the reason."""
    engine = create_engine(PG_ADMIN_URL)
    try:
        with engine.connect():
            pass
    except OperationalError as e:
        engine.dispose()
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 is not reachable: {e.orig}")
    return engine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store: a fresh SQLite file, or a fresh PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    admin = pg_admin()
    name = f"t_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    try:
        yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{name}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
        admin.dispose()


ATTRIBUTES = {
    "country": Type.STRING,
    "ltv": Type.NUMBER,
    "vip": Type.BOOL,
    "signup_date": Type.DATETIME,
    "last_seen": Type.DATETIME,
    "tags": Type.LIST,
}
EVENTS = {
    "opened_email": {"campaign": Type.STRING},
    "placed_order": {"order_id": Type.STRING, "items": Type.NUMBER, "gift": Type.BOOL,
                     "shipped_at": Type.DATETIME, "skus": Type.LIST},
}


def make_project(base_dir: Path, url: str = "sqlite:///segsync.db",
                 match: str = "email") -> Project:
    """A checked project with typed attributes and two event types, without rules."""
    config = Config.model_validate({"store": {"url": url}, "identity": {"match": match}})
    return Project(config=config, path=None, base_dir=base_dir, attributes=dict(ATTRIBUTES),
                   date_attributes=frozenset({"signup_date"}),
                   events={k: dict(v) for k, v in EVENTS.items()})


def counts(engine: Engine) -> dict[str, int]:
    """Rows per data table (what a failed import must leave as it was)."""
    with engine.connect() as conn:
        return {
            t.name: int(conn.execute(select(func.count()).select_from(t)).scalar() or 0)
            for t in (schema.contacts, schema.events, schema.event_types, schema.runs)
        }
