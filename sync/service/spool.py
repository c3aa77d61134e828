"""The acknowledgement spool of an SQLite store: a small SQLite file of its own next to it.

SQLite has one writer per database. If webhook acknowledgements waited for the store's write
lock they would wait behind every worker pass, re-evaluation and scheduled run, for seconds at
a time. So on SQLite the HTTP front end commits accepted items to ``<store file>-inbox``
instead, where it is the only regular writer, and the worker moves them into the store's
``inbox`` table inside its own write transaction:

* ``spool`` rows are unique on ``(source, dedupe_key)``, so a duplicate delivery is recognised
  at acknowledgement time (for ``[service] inbox_retention``, as before);
* the worker copies rows in id order (``INSERT ... ON CONFLICT (source, dedupe_key) DO
  NOTHING`` into ``inbox``), commits, then records the highest id copied in the mark file
  ``<store file>-inbox.moved`` (write + rename). A crash in between copies the same rows
  again, which inserts nothing: every item reaches the inbox **exactly once**, in spool order;
* the front end is the file's **only writer**: the worker only reads it and writes the mark
  file, and the writer purges moved rows older than the retention itself, so an
  acknowledgement never waits for another process's lock. The WAL is checkpointed by the
  worker's connection (``PASSIVE``: without blocking the writer), not inside the writer's
  commits;
* the writer's connection runs ``synchronous=FULL``: an acknowledged item survives a crash of
  the process and of the machine.

PostgreSQL needs no spool: inserts into
``inbox`` do not wait for other transactions' row locks.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SPOOL_SUFFIX", "Spool", "SpoolRow", "connect", "moved_through", "purge", "spool_path",
           "spool_stats", "write_batch"]

SPOOL_SUFFIX = "-inbox"
_BUSY_TIMEOUT_S = 30.0
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL,"
    " dedupe_key TEXT NOT NULL, kind TEXT NOT NULL, contact_key TEXT, payload TEXT NOT NULL,"
    " received_at INTEGER NOT NULL, UNIQUE (source, dedupe_key))",
)
INSERT = ("INSERT INTO spool (source, dedupe_key, kind, contact_key, payload, received_at) "
          "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source, dedupe_key) DO NOTHING")


def spool_path(database: str | None) -> Path | None:
    """The spool file of an SQLite database file (None for an in-memory database)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database + SPOOL_SUFFIX)


@dataclass(frozen=True)
class SpoolRow:
    id: int
    source: str
    dedupe_key: str
    kind: str
    contact_key: str | None
    payload: str  # JSON text, copied to the inbox as is
    received_at: int


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def connect(path: Path) -> sqlite3.Connection:
    """The writer's connection (autocommit mode: transactions are explicit), schema created."""
    conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA wal_autocheckpoint=0")  # the worker checkpoints (Spool.checkpoint)
    with _write(conn):
        for statement in _SCHEMA:
            conn.execute(statement)
    return conn


def _mark_path(path: Path) -> Path:
    return path.with_name(path.name + ".moved")


def moved_through(path: Path) -> int:
    """The highest spool id already copied into the inbox (0 before the first move)."""
    try:
        return int(_mark_path(path).read_text().strip() or 0)
    except FileNotFoundError:
        return 0


def purge(conn: sqlite3.Connection, path: Path, before_ms: int) -> int:
    """Delete moved rows received before ``before_ms`` (the writer calls this); how many."""
    with _write(conn):
        cursor = conn.execute("DELETE FROM spool WHERE id <= ? AND received_at < ?",
                              (moved_through(path), before_ms))
    return int(cursor.rowcount)


def spool_stats(path: Path) -> tuple[int, int | None]:
    """(rows not moved yet, received_at of the oldest of them); (0, None) before the first write."""
    if not path.exists():
        return 0, None
    conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
    try:
        row = conn.execute("SELECT count(*), min(received_at) FROM spool WHERE id > ?",
                           (moved_through(path),)).fetchone()
    except sqlite3.OperationalError:  # created but not initialised yet
        return 0, None
    finally:
        conn.close()
    return int(row[0]), None if row[1] is None else int(row[1])


class Spool:
    """The worker's side: read what is not moved yet, mark it moved, checkpoint. It never
    writes the spool itself (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        connect(path).close()  # the file and its table exist before the first read
        self._conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None,
                                     check_same_thread=False)

    def close(self) -> None:
        self._conn.close()

    def unmoved(self, limit: int) -> list[SpoolRow]:
        """Up to ``limit`` rows not moved yet, in id (= acknowledgement) order."""
        rows = self._conn.execute(
            "SELECT id, source, dedupe_key, kind, contact_key, payload, received_at FROM spool "
            "WHERE id > ? ORDER BY id LIMIT ?", (moved_through(self.path), limit))
        return [SpoolRow(*row) for row in rows]

    def mark_moved(self, through_id: int) -> None:
        """Record that rows up to ``through_id`` are in the inbox (after that commit)."""
        if through_id <= moved_through(self.path):
            return
        mark = _mark_path(self.path)
        tmp = mark.with_name(mark.name + ".tmp")
        tmp.write_text(str(through_id))
        os.replace(tmp, mark)

    def checkpoint(self) -> None:
        """Copy the WAL into the file without blocking the writer (``PASSIVE``)."""
        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


def write_batch(conn: sqlite3.Connection, requests: Sequence[Sequence[tuple[object, ...]]]) -> list[int]:
    """Insert each request's rows in one transaction; how many of each request's were new."""
    counts = []
    with _write(conn):
        for rows in requests:
            before = conn.total_changes
            conn.executemany(INSERT, rows)
            counts.append(conn.total_changes - before)
    return counts
