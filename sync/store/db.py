"""Open a store: an SQLAlchemy :class:`~sqlalchemy.Engine`, created and migrated on first use.

* SQLite (the default, ``sqlite:///segsync.db``): a relative path is relative to the config
  file's directory; the file and its parent directories are created on first use. Every
  connection runs in WAL mode with foreign keys on and a 30 s busy timeout, and transactions
  are real ones (DDL included): the driver's implicit transaction handling is switched off and
  SQLAlchemy's ``begin`` emits ``BEGIN`` (``BEGIN IMMEDIATE`` through
  :func:`sync.store.tx.begin_write`).
* PostgreSQL: ``postgresql+psycopg://user@host/db`` (``postgresql://`` and ``postgres://``
  mean the same). The url may be ``env:NAME`` to keep credentials out of the config file.

Opening migrates the store to the current schema (:mod:`sync.store.migrations`); a store
written by a newer segsync is refused.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from mapping.errors import ConfigError
from mapping.models import resolve_secret
from sync.store.errors import StoreError
from sync.store.migrations import migrate as run_migrations
from sync.store.tx import WRITE_OPTION

if TYPE_CHECKING:
    from mapping.project import Project

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def resolve_url(url: str, base_dir: Path) -> URL:
    """The SQLAlchemy URL a ``store.url`` setting means, relative to ``base_dir``."""
    raw = resolve_secret(url, "store.url") if url.startswith("env:") else url
    try:
        parsed = make_url(raw)
    except ArgumentError:
        raise ConfigError(
            f"store.url: {raw.split('://')[0]!r}... is not a database URL "
            '(expected "sqlite:///path.db" or "postgresql+psycopg://user@host/db")'
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise ConfigError(f"store.url: use the psycopg driver (postgresql+psycopg://), not {driver}")
        return parsed.set(drivername="postgresql+psycopg")
    if backend != "sqlite":
        raise ConfigError(
            f"store.url: unsupported database {backend!r} (use sqlite or postgresql+psycopg)"
        )
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database).expanduser()
        if not path.is_absolute():
            path = base_dir / path
        parsed = parsed.set(database=str(path.resolve()))
    return parsed


def _sqlite_engine(url: URL) -> Engine:
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        json_serializer=_dumps,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            _ensure_wal(cur)
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _ensure_wal(cur: sqlite3.Cursor) -> None:
    """Put the database in WAL mode (a setting stored in the file, so this changes something only
    on a new file). Switching needs an exclusive lock, and SQLite answers "database is locked" at
    once, without the busy handler, when another connection holds the file, as it does when
    several processes open a new store together; so the switch is retried for up to the busy
    timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.001
    while True:
        if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
            return
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def open_store(
    url: str | Project, base_dir: Path | None = None, *, migrate: bool = True
) -> Engine:
    """An engine on the store at ``url`` (or a project's ``store.url``), migrated to current.

    ``base_dir`` anchors a relative SQLite path (default: the project's directory, else the
    current directory). Raises :class:`ConfigError` for a malformed url and
    :class:`StoreError` when the database cannot be opened or has a newer schema.
    """
    if not isinstance(url, str):
        base_dir = base_dir or url.base_dir
        url = url.config.store.url
    resolved = resolve_url(url, base_dir or Path.cwd())
    shown = resolved.render_as_string(hide_password=True)
    if resolved.get_backend_name() == "sqlite":
        engine = _sqlite_engine(resolved)
    else:
        engine = create_engine(resolved, json_serializer=_dumps, pool_pre_ping=True)
        event.listen(engine, "connect", _postgres_session)
    if migrate:
        try:
            run_migrations(engine)
        except OperationalError as e:
            engine.dispose()
            reason = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
            raise StoreError(f"cannot open the store {shown}: {reason}") from None
        except StoreError as e:
            engine.dispose()
            raise StoreError(f"{shown}: {e}") from None
    return engine


PG_TEMP_BUFFERS = "256MB"


def _postgres_session(dbapi_conn: Any, _record: Any) -> None:
    """Per-session settings of a new PostgreSQL connection. A full evaluation writes its
    million-row working tables as temporary tables, which live in the session's local buffers
    (``temp_buffers``, 8 MB by default: every page went to a temp file and back); the setting can
    only change before the session's first temporary table, so it is made here. The memory is
    taken only by sessions that use temporary tables, as they fill them."""
    with dbapi_conn.cursor() as cur:
        cur.execute(f"SET temp_buffers = '{PG_TEMP_BUFFERS}'")
    dbapi_conn.commit()


def open_project_store(project: Project, *, migrate: bool = True) -> Engine:
    """An engine on the project's store (``[store] url``, relative to the config file)."""
    return open_store(project.config.store.url, project.base_dir, migrate=migrate)
