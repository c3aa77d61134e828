"""The acknowledgement spool of an SQLite store: a small SQLite file of its own next to it.

SQLite has one writer per database. If webhook acknowledgements waited for the store's write
lock they would wait behind every worker pass, re-evaluation and scheduled run, for seconds at
a time. So on SQLite the HTTP front end commits accepted items to ``<store file>-inbox``
instead, where it is the only regular writer, and the worker moves them into the store's
``inbox`` table inside its own write transaction:

* ``spool`` rows are unique on ``(source, dedupe_key)``, so a duplicate delivery is recognised
  at acknowledgement time (for ``[service] inbox_retention``, as before);
* ``spool_state.moved_through`` is the highest spool id already copied to the store. The copy
  (``INSERT ... ON CONFLICT (source, dedupe_key) DO NOTHING`` into ``inbox``) commits first, the
  mark after it: a crash in between copies the same rows again, which inserts nothing — every
  item reaches the inbox **exactly once**, in spool order;
* the file runs in WAL mode with ``synchronous=FULL`` on the writer's connection: an
  acknowledged item survives a crash of the process and of the machine. The mark is written
  with ``synchronous=NORMAL`` (losing it only repeats a copy).

Moved rows are purged once older than the retention. PostgreSQL needs no spool: inserts into
``inbox`` do not wait for other transactions' row locks.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SPOOL_SUFFIX", "Spool", "SpoolRow", "connect", "spool_path", "spool_stats", "write_batch"]

SPOOL_SUFFIX = "-inbox"
_BUSY_TIMEOUT_S = 30.0
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL,"
    " dedupe_key TEXT NOT NULL, kind TEXT NOT NULL, contact_key TEXT, payload TEXT NOT NULL,"
    " received_at INTEGER NOT NULL, UNIQUE (source, dedupe_key))",
    "CREATE TABLE IF NOT EXISTS spool_state (one INTEGER PRIMARY KEY CHECK (one = 1),"
    " moved_through INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO spool_state (one, moved_through) VALUES (1, 0)",
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


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), schema created."""
    conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    with _write(conn):
        for statement in _SCHEMA:
            conn.execute(statement)
    return conn


def spool_stats(path: Path) -> tuple[int, int | None]:
    """(rows not moved yet, received_at of the oldest of them); (0, None) before the first write."""
    if not path.exists():
        return 0, None
    conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
    try:
        row = conn.execute(
            "SELECT count(*), min(received_at) FROM spool "
            "WHERE id > (SELECT moved_through FROM spool_state)").fetchone()
    except sqlite3.OperationalError:  # created but not initialised yet
        return 0, None
    finally:
        conn.close()
    return int(row[0]), None if row[1] is None else int(row[1])


class Spool:
    """The worker's side: read what is not moved yet, mark it moved, purge, count."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = connect(path, "NORMAL")

    def close(self) -> None:
        self._conn.close()

    def moved_through(self) -> int:
        return int(self._conn.execute("SELECT moved_through FROM spool_state").fetchone()[0])

    def unmoved(self, limit: int) -> list[SpoolRow]:
        """Up to ``limit`` rows not moved yet, in id (= acknowledgement) order."""
        rows = self._conn.execute(
            "SELECT id, source, dedupe_key, kind, contact_key, payload, received_at FROM spool "
            "WHERE id > (SELECT moved_through FROM spool_state) ORDER BY id LIMIT ?", (limit,))
        return [SpoolRow(*row) for row in rows]

    def mark_moved(self, through_id: int) -> None:
        with _write(self._conn):
            self._conn.execute("UPDATE spool_state SET moved_through = max(moved_through, ?)", (through_id,))

    def purge(self, before_ms: int) -> int:
        """Delete moved rows received before ``before_ms``; returns how many."""
        with _write(self._conn):
            cursor = self._conn.execute(
                "DELETE FROM spool WHERE id <= (SELECT moved_through FROM spool_state) "
                "AND received_at < ?", (before_ms,))
        return int(cursor.rowcount)


def write_batch(conn: sqlite3.Connection, requests: Sequence[Sequence[tuple[object, ...]]]) -> list[int]:
    """Insert each request's rows in one transaction; how many of each request's were new."""
    counts = []
    with _write(conn):
        for rows in requests:
            before = conn.total_changes
            conn.executemany(INSERT, rows)
            counts.append(conn.total_changes - before)
    return counts
