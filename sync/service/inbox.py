"""The durable inbox: every accepted webhook / API event, stored before it is acknowledged.

An item is one event of a request (a HubSpot batch of 40 events is 40 items), unique on
``(source, dedupe_key)``: a duplicate delivery inserts nothing (``ON CONFLICT DO NOTHING``),
so it has one effect. Items move ``pending`` -> ``applied`` (its store changes committed in the
same transaction, :mod:`sync.service.worker`) -> ``done`` (the affected contacts were handed to
the re-evaluation hook). Processed items are kept for ``[service] inbox_retention`` so late
retries are still recognised, then purged.

:class:`GroupCommitter` is the single writer the HTTP handlers share: it takes every request
waiting in its queue, inserts them all in one transaction and resolves each request's future
with how many of *its* items were new, only after the commit. On SQLite (one writer at a time)
this turns N fsyncs into one and keeps the acknowledgement latency flat under load.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from sync.store import schema
from sync.store.errors import StoreError
from sync.store.tx import begin_write

__all__ = ["GroupCommitter", "NewItem", "insert_items", "purge_done", "queue_stats"]

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


def insert_items(conn: Connection, items: Sequence[NewItem], received_at: int) -> int:
    """Insert ``items`` (duplicates skipped) in the caller's transaction; returns how many were new."""
    if not items:
        return 0
    params = [(i.source, i.dedupe_key, i.kind[:64], i.contact_key,
               json.dumps(i.payload, separators=(",", ":"), ensure_ascii=False), received_at)
              for i in items]
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


@dataclass
class _Request:
    items: Sequence[NewItem]
    received_at: int
    future: Future[int]


class GroupCommitter:
    """One writer thread; :meth:`submit` returns a future resolved after the commit."""

    def __init__(self, engine: Engine, *, max_items: int = 5000,
                 on_commit: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.max_items = max_items
        self.on_commit = on_commit
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
                with begin_write(self.engine) as conn:
                    counts = [insert_items(conn, r.items, r.received_at) for r in batch]
            except (StoreError, SQLAlchemyError, OSError) as e:  # fail the requests, not the writer
                LOG.error("inbox write failed: %s", e)
                for r in batch:
                    r.future.set_exception(StoreError(f"the inbox could not be written: {e}"))
                continue
            for r, n in zip(batch, counts, strict=True):
                r.future.set_result(n)
            if self.on_commit is not None:
                self.on_commit()
