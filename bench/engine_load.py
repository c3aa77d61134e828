"""Build (or reuse) the benchmark stores: SQLite files and DuckDB files under ``bench/data/``,
and the PostgreSQL schema ``bench`` (dropped and recreated; no other schema is touched).

The store shape comes from ``sync.store.db.open_store`` (the real migrations); the loader then
drops the events table's secondary indexes, bulk-loads (see :mod:`bench.engine_gen`), and
rebuilds the same indexes, so the result is exactly what the migrations define plus the data.
``extra_indexes`` adds the indexes of a layout variant (``LAYOUT_INDEXES``).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import duckdb
import psycopg
from sqlalchemy import Index
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.schema import CreateIndex

from bench.engine_gen import (
    COUNTRIES,
    EVENT_TYPES,
    PG_EVENT_INSERT,
    PG_STAGE_DDL,
    PROPS_SQL,
    STAGES,
    Layout,
    Spec,
    contact_rows,
    generate,
    load_sqlite_rows,
    pg_binary_copy,
)
from sync.store import schema
from sync.store.db import open_store

DATA = Path(__file__).resolve().parent / "data"
PG_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"
PG_SCHEMA = "bench"

# Extra indexes of the layout variants (name -> columns); "" is the store as migrated.
LAYOUT_INDEXES: dict[str, dict[str, tuple[str, ...]]] = {
    "": {},
    "typefirst": {"ix_events_type_contact_ts": ("type_id", "contact_id", "ts", "value")},
}


def _event_indexes(dialect: str) -> list[str]:
    d = sqlite_dialect.dialect() if dialect == "sqlite" else pg_dialect.dialect()  # type: ignore[no-untyped-call]
    return [str(CreateIndex(ix).compile(dialect=d)) for ix in sorted(schema.events.indexes, key=_name)]


def _name(ix: Index) -> str:
    return str(ix.name)


def _apply_variant(con: Any, variant: str, have: set[str]) -> bool:
    """Create the variant's extra indexes and drop the other variants'; True if anything changed."""
    want = LAYOUT_INDEXES[variant]
    changed = False
    for other in LAYOUT_INDEXES.values():
        for name in other:
            if name in have and name not in want:
                con.execute(f"DROP INDEX {name}")
                changed = True
    for name, cols in want.items():
        if name not in have:
            con.execute(f"CREATE INDEX {name} ON events ({', '.join(cols)})")
            changed = True
    return changed


def pg_url(schema_name: str = PG_SCHEMA) -> str:
    return f"{PG_URL}?options=-csearch_path%3D{schema_name}"


def sqlite_file(spec: Spec, layout: Layout) -> Path:
    return DATA / f"engine_{spec.tag}_{layout}.db"


def duckdb_file(spec: Spec) -> Path:
    return DATA / f"engine_{spec.tag}.duckdb"


def load_sqlite(
    spec: Spec, layout: Layout = "sorted", variant: str = "", log: bool = True, path: Path | None = None
) -> Path:
    """The SQLite store for ``spec`` (built unless cached), with the variant's extra indexes."""
    path = path or sqlite_file(spec, layout)
    done = path.with_suffix(".done")
    if not done.exists():
        t0 = time.perf_counter()
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)
        open_store(f"sqlite:///{path}").dispose()
        con = sqlite3.connect(path, isolation_level=None)
        con.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-2000000;"
            "PRAGMA temp_store=MEMORY; PRAGMA foreign_keys=OFF;"
        )
        for ix in schema.events.indexes:
            con.execute(f"DROP INDEX IF EXISTS {ix.name}")
        con.execute("BEGIN")
        n = load_sqlite_rows(con, spec, layout)
        con.execute("COMMIT")
        t1 = time.perf_counter()
        for ddl in _event_indexes("sqlite"):
            con.execute(ddl)
        con.execute("ANALYZE")
        con.execute("PRAGMA journal_mode=WAL")
        con.close()
        done.write_text(f"{n} events; load {t1 - t0:.1f} s; indexes {time.perf_counter() - t1:.1f} s\n")
        if log:
            print(f"sqlite {path.name}: {done.read_text().strip()}", flush=True)
    con = sqlite3.connect(path, isolation_level=None)
    have = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    changed = _apply_variant(con, variant, have)
    if changed:
        con.execute("ANALYZE")
    con.close()
    if log and changed:
        print(f"sqlite {path.name}: indexes now as variant {variant or '(schema)'}", flush=True)
    return path


CLUSTERED_DDL = (
    "CREATE TABLE events_c (id INTEGER NOT NULL, contact_id INTEGER NOT NULL, type_id SMALLINT NOT NULL, "
    "ts BIGINT NOT NULL, value FLOAT, properties JSON, source VARCHAR(32) NOT NULL, "
    "source_event_id VARCHAR(255) NOT NULL, PRIMARY KEY (type_id, contact_id, ts, id), "
    "UNIQUE (source, source_event_id)) WITHOUT ROWID"
)


def load_sqlite_clustered(spec: Spec, log: bool = True) -> Path:
    """Layout study: the events table ``WITHOUT ROWID``, clustered on (type_id, contact_id, ts,
    id), so a per-type pass reads each contact's events with their properties sequentially.
    Built from the ``sorted`` store; the schema's indexes are kept (plus a unique ``id``)."""
    path = DATA / f"engine_{spec.tag}_clustered.db"
    done = path.with_suffix(".done")
    if done.exists():
        return path
    src = load_sqlite(spec, "sorted", "typefirst", log=log)
    t0 = time.perf_counter()
    path.unlink(missing_ok=True)
    con = sqlite3.connect(src, isolation_level=None)
    con.execute(f"VACUUM INTO '{path}'")
    con.close()
    con = sqlite3.connect(path, isolation_level=None)
    con.executescript(
        "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-2000000; "
        "PRAGMA temp_store=MEMORY;"
    )
    for name in LAYOUT_INDEXES["typefirst"]:
        con.execute(f"DROP INDEX IF EXISTS {name}")
    con.execute(CLUSTERED_DDL)
    con.execute("INSERT INTO events_c SELECT * FROM events ORDER BY type_id, contact_id, ts, id")
    con.execute("DROP TABLE events")
    con.execute("ALTER TABLE events_c RENAME TO events")
    con.execute("CREATE UNIQUE INDEX ux_events_id ON events (id)")
    for ddl in _event_indexes("sqlite"):
        con.execute(ddl)
    con.execute("VACUUM")
    con.execute("ANALYZE")
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    done.write_text(f"clustered from sorted in {time.perf_counter() - t0:.1f} s\n")
    if log:
        print(f"sqlite {path.name}: {done.read_text().strip()}", flush=True)
    return path


def _pg_tag(spec: Spec, layout: Layout) -> str:
    return f"{spec.tag}_{layout}"


def pg_loaded(spec: Spec, layout: Layout, schema_name: str = PG_SCHEMA) -> bool:
    with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as con:
        row = con.execute(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s", (schema_name,)
        ).fetchone()
    return row is not None and row[0] == _pg_tag(spec, layout)


def load_postgres(
    spec: Spec, layout: Layout = "sorted", variant: str = "", log: bool = True, schema_name: str = PG_SCHEMA
) -> str:
    """The PostgreSQL store (schema ``schema_name``) for ``spec``; returns its SQLAlchemy url."""
    url = pg_url(schema_name)
    raw = PG_URL.replace("+psycopg", "")
    if not pg_loaded(spec, layout, schema_name):
        t0 = time.perf_counter()
        with psycopg.connect(raw, autocommit=True) as con:
            con.execute(f"DROP SCHEMA IF EXISTS {schema_name} CASCADE")
            con.execute(f"CREATE SCHEMA {schema_name}")
        open_store(url).dispose()
        with psycopg.connect(raw, autocommit=True) as con:
            con.execute(f"SET search_path = {schema_name}")
            for ix in schema.events.indexes:
                con.execute(f"DROP INDEX IF EXISTS {ix.name}")
            con.execute("ALTER TABLE events DROP CONSTRAINT IF EXISTS uq_events_source_id")
            con.execute("SET synchronous_commit = off")
            con.execute("SET maintenance_work_mem = '1GB'")
            con.execute("SET work_mem = '256MB'")
            con.execute(PG_STAGE_DDL)
            cur = con.cursor()
            cur.executemany(
                "INSERT INTO event_types (id, name) VALUES (%s, %s)", list(enumerate(EVENT_TYPES, 1))
            )
            n = 0
            for c, ev in generate(spec, layout):
                with cur.copy(
                    "COPY contacts (id, email, attributes, created_at, updated_at) FROM STDIN"
                ) as cp:
                    for row in contact_rows(c, spec.as_of_ms):
                        cp.write_row(row)
                if len(ev["ts"]):
                    with cur.copy("COPY bench_stage FROM STDIN (FORMAT BINARY)") as cp:
                        step = 2_000_000
                        for start in range(0, len(ev["ts"]), step):
                            part = {key: arr[start : start + step] for key, arr in ev.items()}
                            data = pg_binary_copy(part)
                            # the header and trailer only once, around all the chunks
                            cp.write(data[:-2] if start == 0 else data[19:-2])
                        cp.write((-1).to_bytes(2, "big", signed=True))
                n += len(ev["ts"])
            t1 = time.perf_counter()
            con.execute(PG_EVENT_INSERT)
            con.execute("DROP TABLE bench_stage")
            t2 = time.perf_counter()
            for ddl in _event_indexes("postgresql"):
                con.execute(ddl)
            con.execute(
                "ALTER TABLE events ADD CONSTRAINT uq_events_source_id UNIQUE (source, source_event_id)"
            )
            con.execute("VACUUM ANALYZE events")
            con.execute("VACUUM ANALYZE contacts")
            con.execute(f"COMMENT ON SCHEMA {schema_name} IS '{_pg_tag(spec, layout)}'")
        if log:
            print(
                f"postgres {schema_name}: {n} events; copy {t1 - t0:.1f} s; insert+json {t2 - t1:.1f} s; "
                f"indexes+vacuum {time.perf_counter() - t2:.1f} s",
                flush=True,
            )
    with psycopg.connect(raw, autocommit=True) as con:
        con.execute(f"SET search_path = {schema_name}")
        con.execute("SET maintenance_work_mem = '1GB'")
        rows = con.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", (schema_name,))
        if _apply_variant(con, variant, {r[0] for r in rows}):
            con.execute("VACUUM ANALYZE events")
            if log:
                print(f"postgres {schema_name}: indexes now as variant {variant or '(schema)'}", flush=True)
    return url


def load_duckdb(spec: Spec, log: bool = True, path: Path | None = None) -> Path:
    """A DuckDB file with the same contacts/events (columns as in the store), sorted layout."""
    path = path or duckdb_file(spec)
    done = path.with_suffix(".done")
    if done.exists():
        return path
    t0 = time.perf_counter()
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE contacts (id BIGINT PRIMARY KEY, email VARCHAR, attributes JSON, "
        "created_at BIGINT, updated_at BIGINT)"
    )
    con.execute("CREATE TABLE event_types (id SMALLINT PRIMARY KEY, name VARCHAR)")
    con.execute(
        "CREATE TABLE events (id BIGINT, contact_id BIGINT, type_id SMALLINT, ts BIGINT, "
        "value DOUBLE, properties JSON, source VARCHAR, source_event_id VARCHAR)"
    )
    con.executemany("INSERT INTO event_types VALUES (?, ?)", list(enumerate(EVENT_TYPES, 1)))
    n = 0
    for c, ev in generate(spec, "sorted"):
        con.register("cstage", dict(c))
        con.execute(
            "INSERT INTO contacts SELECT id, 'c' || id || '@bench.example', json_object('country', "
            f"{list(COUNTRIES)}[country + 1], 'signup_date', signup_date, 'lifecycle_stage', "
            f"{list(STAGES)}[stage + 1], 'vip', vip, 'ltv', ltv), "
            f"{spec.as_of_ms}, {spec.as_of_ms} FROM cstage"
        )
        con.unregister("cstage")
        stage = dict(ev)
        con.register("stage", stage)
        con.execute(
            "INSERT INTO events SELECT id, contact_id, type_id, ts, value, "
            f"{PROPS_SQL['duckdb']}, 'bench', 'e' || lpad(id::VARCHAR, 10, '0') "
            "FROM (SELECT id, contact_id, type_id, ts, "
            "CASE WHEN isnan(value) THEN NULL ELSE value END AS value, "
            "k, pid, n FROM stage)"
        )
        con.unregister("stage")
        n += len(ev["ts"])
    con.execute("CHECKPOINT")
    con.close()
    done.write_text(f"{n} events; load {time.perf_counter() - t0:.1f} s\n")
    if log:
        print(f"duckdb {path.name}: {done.read_text().strip()}", flush=True)
    return path
