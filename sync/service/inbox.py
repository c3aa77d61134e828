"""The durable inbox: every accepted webhook / API event, stored before it is acknowledged.

An item is one event of a request (a HubSpot batch of 40 events is 40 items), unique on
``(source, dedupe_key)``: a duplicate delivery inserts nothing (``ON CONFLICT DO NOTHING``),
so it has one effect. Items move ``pending`` -> ``applied`` (its store changes committed in the
same transaction, :mod:`sync.service.worker`) -> ``done`` (the affected contacts were handed to
the re-evaluation hook). Processed items are kept for ``[service] inbox_retention`` so late
retries are still recognised, then purged.

:class:`GroupCommitter` is the single writer the HTTP handlers share: it takes every request
waiting in its queue, inserts them all in one transaction and resolves each request's future
with how many of *its* items were new, only after the commit (N requests, one fsync). Where it
writes (:class:`Inbox`): on an SQLite store, the acknowledgement spool next to the store file
(:mod:`sync.service.spool`: acknowledgements never wait for the store's write lock, which the
worker, re-evaluations and scheduled runs hold for long stretches), from which the worker moves
items into ``inbox``; on PostgreSQL, ``inbox`` directly.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from sync.service import spool
from sync.store import schema
from sync.store.errors import StoreError
from sync.store.tx import WRITE_OPTION

__all__ = ["GroupCommitter", "Inbox", "NewItem", "insert_items", "move_from_spool", "purge_done",
           "queue_stats"]

LOG = logging.getLogger("segsync.service.inbox")

_COLUMNS = "source, dedupe_key, kind, contact_key, payload, received_at, status"
_INSERT = {
    "sqlite": f"INSERT INTO inbox ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 'pending') "
    "ON CONFLICT (source, dedupe_key) DO NOTHING",
    "postgresql": f"INSERT INTO inbox ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s::json, %s, 'pending') "
    "ON CONFLICT (source, dedupe_key) DO NOTHING",
}


@dataclass(frozen=True)
class NewItem:
    source: str  # hubspot | klaviyo | api
    dedupe_key: str
    kind: str
    contact_key: str | None
    payload: dict[str, Any]


Row = tuple[str, str, str, str | None, str, int]  # the inbox / spool columns of one new item


def _rows(items: Sequence[NewItem], received_at: int) -> list[Row]:
    return [(i.source, i.dedupe_key, i.kind[:64], i.contact_key,
             json.dumps(i.payload, separators=(",", ":"), ensure_ascii=False), received_at)
            for i in items]


def insert_items(conn: Connection, items: Sequence[NewItem], received_at: int) -> int:
    """Insert ``items`` (duplicates skipped) in the caller's transaction; returns how many were new."""
    return insert_rows(conn, _rows(items, received_at))


def insert_rows(conn: Connection, params: Sequence[Row]) -> int:
    """:func:`insert_items` of rows already encoded (payload as JSON text)."""
    if not params:
        return 0
    cursor = conn.connection.cursor()
    try:
        cursor.executemany(_INSERT[conn.dialect.name], params)
        return int(cursor.rowcount)
    except conn.dialect.loaded_dbapi.Error as e:
        raise StoreError(f"the store refused the inbox items: {e}") from e
    finally:
        cursor.close()


def queue_stats(conn: Connection) -> tuple[int, int | None]:
    """(items not applied yet, received_at of the oldest of them)."""
    i = schema.inbox
    row = conn.execute(select(func.count(), func.min(i.c.received_at))
                       .where(i.c.status == "pending")).one()
    return int(row[0]), None if row[1] is None else int(row[1])


def purge_done(conn: Connection, before_ms: int) -> int:
    i = schema.inbox
    result = conn.execute(delete(i).where(i.c.status == "done", i.c.processed_at < before_ms))
    return int(result.rowcount or 0)


def mark_done(conn: Connection, ids: Sequence[int]) -> None:
    i = schema.inbox
    for start in range(0, len(ids), 900):
        conn.execute(update(i).where(i.c.id.in_(ids[start:start + 900])).values(status="done"))


class Inbox:
    """Where a store's acknowledged items are committed, and how many still wait."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        sqlite = engine.dialect.name == "sqlite"
        self.spool_path: Path | None = spool.spool_path(engine.url.database) if sqlite else None

    @property
    def shared_with_other_processes(self) -> bool:
        """False for an in-memory SQLite database, which only this process can see."""
        database = self.engine.url.database or ""
        return self.engine.dialect.name != "sqlite" or (
            database not in ("", ":memory:") and "mode=memory" not in database)

    def committer(self, on_commit: Callable[[], None] | None = None, *,
                  retention_ms: int = 7 * 86_400_000) -> GroupCommitter:
        return GroupCommitter(self.engine, on_commit=on_commit, spool_path=self.spool_path,
                              spool_retention_ms=retention_ms)

    def stats(self) -> tuple[int, int | None]:
        """(items not applied yet, received_at of the oldest of them), spool included."""
        with self.engine.connect() as conn:
            depth, oldest = queue_stats(conn)
        if self.spool_path is not None:
            waiting, first = spool.spool_stats(self.spool_path)
            depth += waiting
            oldest = first if oldest is None else oldest if first is None else min(oldest, first)
        return depth, oldest


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class _Request:
    items: Sequence[NewItem]
    received_at: int
    future: Future[int]


class GroupCommitter:
    """One writer thread; :meth:`submit` returns a future resolved after the commit. It writes
    to the spool at ``spool_path`` when given, else to ``engine``'s inbox table."""

    def __init__(self, engine: Engine, *, max_items: int = 5000,
                 on_commit: Callable[[], None] | None = None, spool_path: Path | None = None,
                 spool_retention_ms: int = 7 * 86_400_000) -> None:
        self.engine = engine
        self.spool_retention_ms = spool_retention_ms
        self._last_purge = time.monotonic()
        self.max_items = max_items
        self.on_commit = on_commit
        self.spool_path = spool_path
        self._spool: sqlite3.Connection | None = None
        self._conn: Connection | None = None
        if spool_path is not None:  # created here so that a broken file fails the start
            self._spool = spool.connect(spool_path)
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="segsync-inbox-writer", daemon=True)
        self._thread.start()

    def submit(self, items: Sequence[NewItem], received_at: int) -> Future[int]:
        future: Future[int] = Future()
        self._queue.put(_Request(items, received_at, future))
        return future

    def stop(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            if self._spool is not None:
                self._spool.close()
            if self._conn is not None:
                self._conn.close()

    def _take(self) -> tuple[list[_Request], bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        batch, size = [first], len(first.items)
        while size < self.max_items:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                self._queue.put(None)
                break
            batch.append(nxt)
            size += len(nxt.items)
        return batch, False

    def _run(self) -> None:
        while True:
            batch, stop = self._take()
            if stop:
                return
            try:
                counts = self._write(batch)
            except (StoreError, SQLAlchemyError, sqlite3.Error, OSError) as e:  # fail the requests only
                LOG.error("inbox write failed: %s", e)
                for r in batch:
                    r.future.set_exception(StoreError(f"the inbox could not be written: {e}"))
                continue
            for r, n in zip(batch, counts, strict=True):
                r.future.set_result(n)
            if self.on_commit is not None:
                self.on_commit()
            self._purge_spool()

    def _purge_spool(self) -> None:
        """Once a minute, between two batches: moved rows past the retention leave the spool."""
        if self._spool is None or self.spool_path is None or time.monotonic() - self._last_purge < 60:
            return
        self._last_purge = time.monotonic()
        try:
            gone = spool.purge(self._spool, self.spool_path, _now_ms() - self.spool_retention_ms)
        except sqlite3.Error as e:
            LOG.error("purging the acknowledgement spool failed: %s", e)
            return
        if gone:
            LOG.info("purged %d moved item(s) older than the retention from the spool", gone)

    def _write(self, batch: Sequence[_Request]) -> list[int]:
        rows = [_rows(r.items, r.received_at) for r in batch]
        if self._spool is not None:
            return spool.write_batch(self._spool, rows)
        if self._conn is None:  # the writer keeps its connection: no pool checkout per batch
            self._conn = self.engine.execution_options(**{WRITE_OPTION: True}).connect()
        try:
            with self._conn.begin():
                if self._conn.dialect.name == "postgresql":
                    return _insert_batch_pg(self._conn, rows)
                return [insert_rows(self._conn, r) for r in rows]
        except BaseException:
            self._conn.invalidate()
            self._conn.close()
            self._conn = None
            raise


_PG_BATCH = (
    "INSERT INTO inbox (source, dedupe_key, kind, contact_key, payload, received_at, status) "
    "SELECT s, d, k, c, p::json, r, 'pending' FROM unnest(%s::text[], %s::text[], %s::text[], "
    "%s::text[], %s::text[], %s::bigint[]) WITH ORDINALITY AS t(s, d, k, c, p, r, n) ORDER BY n "
    "ON CONFLICT (source, dedupe_key) DO NOTHING RETURNING source, dedupe_key")


def _insert_batch_pg(conn: Connection, requests: Sequence[Sequence[Row]]) -> list[int]:
    """All requests' rows in one statement (one round trip, order kept); how many of each
    request's rows were new (a key twice in the batch is new for the first request only)."""
    flat = [row for rows in requests for row in rows]
    if not flat:
        return [0] * len(requests)
    columns = [list(column) for column in zip(*flat, strict=True)]
    cursor = conn.connection.cursor()
    try:
        cursor.execute(_PG_BATCH, columns)
        new = {(str(source), str(key)) for source, key in cursor.fetchall()}
    except conn.dialect.loaded_dbapi.Error as e:
        raise StoreError(f"the store refused the inbox items: {e}") from e
    finally:
        cursor.close()
    counts = []
    for rows in requests:
        claimed = [(row[0], row[1]) for row in rows if (row[0], row[1]) in new]
        new.difference_update(claimed)
        counts.append(len(claimed))
    return counts


def move_from_spool(conn: Connection, rows: Sequence[spool.SpoolRow]) -> int:
    """Copy spool rows into ``inbox`` (in the caller's transaction, duplicates skipped)."""
    return insert_rows(conn, [(r.source, r.dedupe_key, r.kind, r.contact_key, r.payload, r.received_at)
                              for r in rows])
