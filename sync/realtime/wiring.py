"""The real-time loop of ``segsync serve``: changed contacts and clock ticks in, pushes out.

::

    rt = Realtime(engine, project, connectors, RealtimeSettings(tick_ms=60_000))
    rt.start()                               # the flusher and the ticker threads
    create_app(engine, project, hook=rt.on_contacts_changed)   # sync.service: the inbox worker
    ...
    rt.stop()

* :meth:`Realtime.on_contacts_changed` is the inbox worker's hook: the contacts an applied
  webhook / event changed are re-evaluated at the current time, planned and enqueued
  (:func:`sync.realtime.refresh.refresh`, trigger ``"webhook"``), and the flusher is signalled.
* The ticker calls :func:`sync.realtime.ticks.tick` every ``tick_ms`` (trigger ``"tick"``).
* The flusher (:class:`sync.realtime.flusher.Flusher`) sends in micro-batches.

Re-evaluations (hook and tick) are serialised by one lock and each takes its ``as_of`` after
acquiring it, so the memberships of this process only ever move forward in time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from connectors.base import Connector
from mapping.errors import SegsyncError
from mapping.models import parse_duration
from mapping.project import Project
from sync.executor import PushSummary, wall_ms
from sync.realtime.edges import TimeEdges, time_edges
from sync.realtime.flusher import Flusher
from sync.realtime.refresh import Refresh, refresh
from sync.realtime.ticks import DEFAULT_TICK_MS, TickReport, tick

LOG = logging.getLogger("segsync.realtime")


@dataclass(frozen=True)
class RealtimeSettings:
    """How often ticks run and how the executor batches."""

    tick_ms: int = DEFAULT_TICK_MS  # 0: no ticker
    linger_ms: int = 200
    batch_size: int = 100
    poll_ms: int = 5_000
    max_attempts: int = 5

    @classmethod
    def from_project(cls, project: Project) -> RealtimeSettings:
        """``[service] tick``, ``push_linger`` and ``push_batch`` of the project."""
        service = project.config.service
        return cls(
            tick_ms=parse_duration(service.tick),
            linger_ms=parse_duration(service.push_linger),
            batch_size=service.push_batch,
            max_attempts=project.config.destinations.max_attempts)


class Realtime:
    """The hook, the ticker and the flusher of one ``serve`` process (module docstring)."""

    def __init__(self, engine: Engine, project: Project, connectors: Mapping[str, Connector],
                 settings: RealtimeSettings | None = None, *, clock: Callable[[], int] = wall_ms,
                 on_flush: Callable[[PushSummary, float], None] | None = None) -> None:
        self.engine = engine
        self.project = project
        self.settings = settings or RealtimeSettings.from_project(project)
        self.clock = clock
        self.edges: TimeEdges = time_edges(project)
        for why in self.edges.coarse():
            LOG.warning("ticks re-evaluate %s on every tick", why)
        self.flusher = Flusher(engine, connectors, linger_ms=self.settings.linger_ms,
                               batch_size=self.settings.batch_size, poll_ms=self.settings.poll_ms,
                               max_attempts=self.settings.max_attempts, clock=clock, on_flush=on_flush)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # ------------------------------------------------------------------ work

    def on_contacts_changed(self, contact_ids: Sequence[int]) -> None:
        """The inbox worker's hook (``sync.service.worker.ContactsHook``)."""
        with self._lock:
            done = refresh(self.engine, self.project, contact_ids, self.clock(), trigger="webhook")
        self.flusher.signal(done.queued)
        if done.entered or done.exited:
            LOG.info("%d changed contact(s): entered %s, exited %s, %d change(s) queued",
                     done.evaluated, done.entered, done.exited, done.queued)

    def refresh(self, contact_ids: Sequence[int], trigger: str = "webhook") -> Refresh:
        """Like the hook, returning what it did."""
        with self._lock:
            done = refresh(self.engine, self.project, contact_ids, self.clock(), trigger=trigger)
        self.flusher.signal(done.queued)
        return done

    def tick_once(self) -> TickReport:
        """One tick at the current time (the ticker thread calls this)."""
        with self._lock:
            report = tick(self.engine, self.project, self.clock(), edges=self.edges,
                          tick_ms=self.settings.tick_ms or DEFAULT_TICK_MS)
        if report.refresh is not None:
            self.flusher.signal(report.refresh.queued)
        return report

    # ------------------------------------------------------------------ threads

    def start(self) -> None:
        self.flusher.start()
        if self.settings.tick_ms > 0:
            self._ticker = threading.Thread(target=self._tick_loop, name="segsync-ticker", daemon=True)
            self._ticker.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout)
        self.flusher.stop(timeout)

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.settings.tick_ms / 1000):
            try:
                self.tick_once()
            except (SegsyncError, SQLAlchemyError) as e:
                LOG.error("tick failed (the next one covers the same interval): %s", e)
