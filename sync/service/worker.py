"""The inbox worker: applies pending items in arrival order, then re-evaluates who changed.

One pass (:meth:`Worker.run_once`):

1. In **one write transaction**: move up to ``batch`` items from the acknowledgement spool of an
   SQLite store into ``inbox`` (:mod:`sync.service.spool`; they are marked moved after the
   commit), then read up to ``batch`` pending items in id order (so the items
   of one contact are applied in the order they were acknowledged), apply each
   (:class:`sync.service.apply.Applier`, inside a savepoint so one bad item is recorded as
   ``failed: <reason>`` without holding up the rest) and mark it ``applied`` with its outcome.
   A crash before the commit applies nothing and the items are still pending after a restart;
   after the commit they are never applied again: **exactly once**.
2. After the commit: call ``on_contacts_changed(contact_ids)`` (default: ``sync.evaluate``'s
   ``evaluate(engine, project, now, contact_ids=ids)``), then mark the items ``done``. Items a
   crash left ``applied`` get their hook call on the next pass (evaluation is level-triggered,
   so a repeated call is harmless).

With ``[service] forget_remote``, the worker owns a :class:`sync.remote_delete.RemoteDeletionLoop`
(a thread started and stopped with it): a pass that forgot someone wakes it, so the deletion
requests queued by a ``contact.privacyDeletion`` webhook are sent within seconds.

On PostgreSQL several ``serve`` processes may share the store: a pass takes a transaction-level
advisory lock first, so one worker at a time applies items (order per contact holds).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from mapping.errors import SegsyncError
from mapping.project import Project
from sync.remote_delete import RemoteDeletionLoop
from sync.service import metrics
from sync.service.apply import Applied, Applier
from sync.service.inbox import Inbox, mark_done, move_from_spool, purge_done
from sync.service.spool import Spool
from sync.store import repo, schema
from sync.store.tx import begin_write

__all__ = ["ContactsHook", "Worker", "evaluate_hook"]

LOG = logging.getLogger("segsync.service.worker")
ContactsHook = Callable[[Sequence[int]], None]
_PG_LOCK_KEY = 0x7365677379_6E6901  # "segsync" + inbox worker


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def evaluate_hook(engine: Engine, project: Project, clock: Callable[[], int] = _now_ms) -> ContactsHook:
    """The default hook: re-evaluate just the changed contacts at the current time."""
    def hook(contact_ids: Sequence[int]) -> None:
        from sync.evaluate import evaluate

        evaluate(engine, project, clock(), contact_ids=list(contact_ids))

    return hook


_ITEM_ERRORS = (SegsyncError, SQLAlchemyError, ValueError, KeyError, TypeError)


def _runs(rows: Sequence[Any]) -> list[list[Any]]:
    """Consecutive HubSpot property changes grouped (order kept); every other item alone."""
    runs: list[list[Any]] = []
    for row in rows:
        bulk = row.source == "hubspot" and row.kind == "contact.propertyChange"
        if bulk and runs and runs[-1][-1].source == "hubspot" and runs[-1][-1].kind == row.kind:
            runs[-1].append(row)
        else:
            runs.append([row])
    return runs


def _batch_priority() -> None:
    """Mark this thread CPU-bound for the kernel (Linux ``SCHED_BATCH``: the same CPU share,
    but it does not preempt threads that just woke up), so that acknowledgements, which wake up
    for a moment per request, are not kept waiting behind a worker pass."""
    if hasattr(os, "SCHED_BATCH"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


class Worker:
    def __init__(self, engine: Engine, project: Project, *, hook: ContactsHook | None = None,
                 batch: int = 500, poll_s: float = 1.0, start_delay_s: float = 0.0,
                 retention_ms: int = 7 * 86_400_000, forget_remote: tuple[str, ...] = (),
                 clock: Callable[[], int] = _now_ms) -> None:
        self.engine = engine
        self.project = project
        self.hook = hook if hook is not None else evaluate_hook(engine, project, clock)
        self.batch = batch
        self.poll_s = poll_s
        self.start_delay_s = start_delay_s
        self.retention_ms = retention_ms
        self.clock = clock
        with begin_write(engine) as conn:
            type_ids = repo.event_type_ids(conn, project.events)
        self.applier = Applier(project, type_ids, forget_remote)
        self.remote = (RemoteDeletionLoop(engine, project, forget_remote, clock=clock)
                       if forget_remote else None)
        path = Inbox(engine).spool_path
        self.spool = None if path is None else Spool(path)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_purge = 0.0

    # ---------------------------------------------------------------------------- thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="segsync-inbox-worker", daemon=True)
        self._thread.start()
        if self.remote is not None:
            self.remote.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.remote is not None:
            self.remote.stop(timeout)
        if self.spool is not None and (self._thread is None or not self._thread.is_alive()):
            self.spool.close()

    def _loop(self) -> None:
        _batch_priority()
        if self.start_delay_s and self._stop.wait(self.start_delay_s):
            return
        while not self._stop.is_set():
            try:
                done = self.run_once()
            except (SegsyncError, SQLAlchemyError) as e:  # the store is away: try again later
                LOG.error("inbox worker pass failed: %s", e)
                done = 0
            if done < self.batch:
                self._wake.wait(self.poll_s)
                self._wake.clear()

    # ---------------------------------------------------------------------------- one pass

    def run_once(self) -> int:
        """Apply one batch of pending items; returns how many items it applied (or moved from
        the spool, when that is more)."""
        self._finish_applied()
        i = schema.inbox
        handled: list[tuple[int, str, Applied]] = []
        with begin_write(self.engine) as conn:
            if conn.dialect.name == "postgresql" and not conn.execute(
                    text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY}).scalar():
                return 0
            moved = self.spool.unmoved(self.batch) if self.spool is not None else []
            move_from_spool(conn, moved)
            rows = conn.execute(select(i.c.id, i.c.source, i.c.kind, i.c.payload)
                                .where(i.c.status == "pending").order_by(i.c.id).limit(self.batch)).all()
            now = self.clock()
            for run in _runs(rows):
                bulk_results = self._bulk(conn, run, now) if len(run) > 1 else None
                results: Sequence[Applied | None] = bulk_results or [None] * len(run)
                for row, bulk in zip(run, results, strict=True):
                    handled.append((row.id, row.source, bulk or self._one(conn, row, now)))
            if handled:
                conn.execute(
                    update(i).where(i.c.id == bindparam("b_id")).values(
                        status="applied", outcome=bindparam("b_outcome"),
                        contact_id=bindparam("b_contact"), processed_at=now),
                    [{"b_id": n, "b_outcome": r.outcome[:32],
                      "b_contact": r.contact_ids[0] if r.contact_ids else None}
                     for n, _, r in handled])
        if moved and self.spool is not None:
            self.spool.mark_moved(moved[-1].id)
            self.spool.checkpoint()
        outcomes: Counter[str] = Counter()
        for n, source, r in handled:
            LOG.debug("inbox item %d (%s): %s", n, source, r.outcome)
            word = r.outcome.split(":")[0]
            metrics.PROCESSED.inc(source=source, outcome=word)
            outcomes[f"{source} {word}"] += 1
        if handled:
            LOG.info("applied inbox items %d-%d: %s", handled[0][0], handled[-1][0],
                     ", ".join(f"{n} {what}" for what, n in sorted(outcomes.items())))
        if self.remote is not None and any(r.outcome == "forgotten" for _, _, r in handled):
            self.remote.wake()
        if handled:
            self._run_hook([n for n, _, _ in handled],
                           {c for _, _, r in handled for c in r.contact_ids})
        self._purge()
        return max(len(handled), len(moved))

    def _one(self, conn: Connection, row: Row[Any], now: int) -> Applied:
        try:
            with conn.begin_nested():
                return self.applier.apply(conn, row.source, row.payload, now)
        except _ITEM_ERRORS as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            LOG.warning("inbox item %d (%s %s) failed: %s", row.id, row.source, row.kind, reason)
            return Applied(f"failed: {reason}"[:32])

    def _bulk(self, conn: Connection, run: list[Row[Any]], now: int) -> list[Applied] | None:
        """A run of HubSpot property changes in one go; None (one by one) when it fails."""
        try:
            with conn.begin_nested():
                return self.applier.property_changes(conn, [r.payload for r in run], now)
        except _ITEM_ERRORS as e:
            LOG.info("bulk apply of %d property changes failed (%s): one by one", len(run), e)
            return None

    def _run_hook(self, item_ids: Sequence[int], contact_ids: set[int]) -> None:
        c = schema.contacts
        if contact_ids:
            with self.engine.connect() as conn:
                alive = sorted(conn.execute(select(c.c.id).where(c.c.id.in_(sorted(contact_ids))))
                               .scalars())
            if alive:
                try:
                    self.hook(alive)
                except (SegsyncError, SQLAlchemyError) as e:
                    LOG.error("re-evaluating %d changed contact(s) failed: %s", len(alive), e)
        with begin_write(self.engine) as conn:
            mark_done(conn, list(item_ids))

    def _finish_applied(self) -> None:
        """Items a crash left between their commit and their hook call."""
        i = schema.inbox
        with self.engine.connect() as conn:
            rows = conn.execute(select(i.c.id, i.c.contact_id).where(i.c.status == "applied")
                                .order_by(i.c.id).limit(self.batch)).all()
        if rows:
            LOG.info("re-evaluating the contacts of %d inbox item(s) applied before a restart", len(rows))
            self._run_hook([r.id for r in rows], {r.contact_id for r in rows if r.contact_id is not None})

    def _purge(self) -> None:
        if time.monotonic() - self._last_purge < 60:
            return
        self._last_purge = time.monotonic()
        before = self.clock() - self.retention_ms
        with begin_write(self.engine) as conn:
            gone = purge_done(conn, before)
        if gone:
            LOG.info("purged %d processed inbox item(s) older than the retention", gone)
