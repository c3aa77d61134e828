"""Versioned migrations: an ordered list of steps, each applied once in its own transaction.

The ``schema_version`` table holds one row per applied step. Opening a store applies the
missing steps in order (:func:`migrate`); a step never drops or rewrites data, it only adds
(tables, columns with defaults, indexes) or copies. A store whose version is higher than the
last step known to this code is refused with a clear :class:`~sync.store.errors.StoreError`.

Adding a step: append a :class:`Migration` with the next version to :data:`MIGRATIONS` and make
the same change in :mod:`sync.store.schema` (the current shape). ``tests/test_store_migrations``
checks that a store migrated from nothing has exactly the shape of ``sync.store.schema``.

Concurrency: two processes opening a new store at once both try to migrate. Each step runs
under a write lock (``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on
PostgreSQL) and re-reads the version inside it, so a step is applied exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, inspect, select, text
from sqlalchemy import func as sa_func

from sync.store import schema, schema_v1
from sync.store.errors import StoreError
from sync.store.tx import begin_write

# pg_advisory_xact_lock key: "segsync\0" as a 64-bit integer, arbitrary but fixed.
_PG_LOCK_KEY = 0x7365677379_6E6300


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _v1_create_tables(conn: Connection) -> None:
    schema_v1.metadata.create_all(conn)


def _v2_identities_email_index(conn: Connection) -> None:
    # provider records are matched to contacts by email (connectors' identity resolution)
    conn.execute(text("CREATE INDEX ix_identities_email ON identities (email)"))


def _v3_outbox_and_audit(conn: Connection) -> None:
    # sync.outbox / sync.audit (the sync engineer's step)
    schema.outbox.create(conn)
    schema.audit_log.create(conn)


def _v4_inbox_and_suppressions(conn: Connection) -> None:
    # sync.service: the webhook / event inbox and privacy suppressions (real-time engineer)
    schema.inbox.create(conn)
    schema.suppressions.create(conn)


def _v5_events_type_first_index(conn: Connection) -> None:
    # sync.evaluate (engine engineer): a whole-population trait pass reads one event type in
    # contact order from one contiguous index range (streaming GROUP BY, no sort); the subset
    # path still seeks (type_id, contact_id). IF NOT EXISTS: bench stores may already have it.
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_events_type_contact_ts "
                      "ON events (type_id, contact_id, ts, value)"))
    if conn.dialect.name == "postgresql":
        conn.execute(text("ANALYZE events"))


def _v6_remote_deletions(conn: Connection) -> None:
    # sync.remote_delete: privacy-deletion requests queued with the local forget
    schema.remote_deletions.create(conn)


def _v7_open_memberships_index(conn: Connection) -> None:
    # sync.evaluate: a full run reads every open membership per contact (its previous verdicts);
    # this partial index covers that read in contact order (no table lookups, no sort)
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_memberships_open_contact "
                      "ON memberships (contact_id, segment) WHERE exited_at IS NULL"))


def _v8_jsonb_documents(conn: Connection) -> None:
    # sync.evaluate: on PostgreSQL every ``->`` on a ``json`` column parses the whole document
    # again (ten parses per contact for five typed attributes); ``jsonb`` is parsed once, on write
    if conn.dialect.name != "postgresql":
        return
    for table, column in (("contacts", "attributes"), ("events", "properties")):
        conn.execute(text(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE jsonb USING {column}::jsonb"))
    conn.execute(text("ANALYZE contacts"))
    conn.execute(text("ANALYZE events"))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create the tables", _v1_create_tables),
    Migration(2, "index identities by email", _v2_identities_email_index),
    Migration(3, "outbox and audit log", _v3_outbox_and_audit),
    Migration(4, "real-time inbox and suppressions", _v4_inbox_and_suppressions),
    Migration(5, "type-first covering index on events", _v5_events_type_first_index),
    Migration(6, "remote privacy-deletion requests", _v6_remote_deletions),
    Migration(7, "partial index of open memberships by contact", _v7_open_memberships_index),
    Migration(8, "contact attributes and event properties as jsonb on PostgreSQL", _v8_jsonb_documents),
)

CURRENT_VERSION = MIGRATIONS[-1].version


def current_version(conn: Connection) -> int:
    """The store's schema version: 0 for an empty database."""
    if not inspect(conn).has_table("schema_version"):
        if inspect(conn).has_table("contacts"):
            raise StoreError(
                "the database holds a 'contacts' table but no 'schema_version' table: "
                "it is not a segsync store (point store.url at an empty database)"
            )
        return 0
    found = conn.execute(select(sa_func.max(schema.schema_version.c.version))).scalar()
    return int(found or 0)


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    # SQLite: begin_write already holds the write lock (BEGIN IMMEDIATE)


def _check_not_newer(version: int, steps: Sequence[Migration]) -> None:
    known = steps[-1].version if steps else 0
    if version > known:
        raise StoreError(
            f"the store has schema version {version} but this segsync only knows versions up "
            f"to {known}: it was written by a newer segsync; upgrade segsync to use it"
        )


def migrate(engine: Engine, steps: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply every missing step of ``steps`` in order; returns the versions applied."""
    applied: list[int] = []
    with engine.connect() as conn:
        version = current_version(conn)
        conn.rollback()
    _check_not_newer(version, steps)
    for step in steps:
        if step.version <= version:
            continue
        with begin_write(engine) as conn:
            _lock(conn)
            version = current_version(conn)
            _check_not_newer(version, steps)
            if step.version <= version:
                continue  # another process applied it meanwhile
            if step.version != version + 1:
                raise StoreError(
                    f"migration steps are not contiguous: store at {version}, next {step.version}"
                )
            step.apply(conn)
            conn.execute(
                schema.schema_version.insert().values(
                    version=step.version, applied_at=int(time.time() * 1000)
                )
            )
            version = step.version
            applied.append(step.version)
    return applied
