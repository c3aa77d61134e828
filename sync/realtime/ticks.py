"""Exact-time exits and entries: on every tick, re-evaluate just the contacts whose events,
dates or memberships crossed a time edge since the last tick.

::

    due_contacts(conn, edges, since_ms, now_ms) -> list[int] | None     # None: every contact
    tick(engine, project, now_ms, *, edges=None, trigger="tick") -> TickReport

A tick at ``now`` reads ``last`` (the ``cursors`` row ``("segsync", "tick")``), turns every edge
of :func:`sync.realtime.edges.time_edges` into one range query over ``(last, now]`` — events
of type ``T`` with ``ts`` in ``(last - d, now - d]`` on ``ix_events_type_ts``, open memberships
entered ``min_dwell`` ago, closed ones that left ``cooldown`` ago, date attributes ``d`` old —
re-evaluates the union at ``as_of = now`` (:func:`sync.realtime.refresh.refresh`: subset
evaluation, plan, outbox) and only then stores ``now`` as ``last``. A crash before that re-scans
the same interval on the next tick, which is harmless. So a member of "opened in the last 7
days" leaves on the first tick after its last open turned 7 days old, with no full evaluation.

Without a stored cursor the first tick starts from the ``as_of`` of the latest finished run
(``runs``), else one tick interval back. Rank (percentile, ntile, RFM) cut-offs are not
recomputed by ticks: the scheduled full run refreshes them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, and_, or_, select

from mapping.project import Project
from sync.pull import load_cursor, save_cursor
from sync.realtime.edges import (
    AttrEdge,
    AttrSpan,
    DwellEdge,
    EventEdge,
    EventSpan,
    Everyone,
    InstantEdge,
    TimeEdges,
    time_edges,
)
from sync.realtime.refresh import Refresh, refresh
from sync.store import schema
from sync.store.tx import begin_write

LOG = logging.getLogger("segsync.realtime.ticks")
CURSOR = ("segsync", "tick")
DEFAULT_TICK_MS = 60_000

Range = tuple[int | None, int]  # (exclusive low or None for unbounded, inclusive high)


def _merge(ranges: Iterable[Range]) -> list[Range]:
    """Overlapping or touching ranges joined, in order."""
    out: list[Range] = []
    for lo, hi in sorted(ranges, key=lambda r: (-(2**63) if r[0] is None else r[0], r[1])):
        if out and (out[-1][1] >= (-(2**63) if lo is None else lo)):
            plo, phi = out[-1]
            out[-1] = (plo, max(phi, hi))
        else:
            out.append((lo, hi))
    return out


def _event_ranges(edges: TimeEdges, since: int, now: int) -> dict[str, list[Range]]:
    ranges: dict[str, list[Range]] = {}
    for e in edges.edges:
        if isinstance(e, EventEdge):
            ranges.setdefault(e.event, []).append((since - e.offset_ms, now - e.offset_ms))
        elif isinstance(e, EventSpan):
            lo = None if e.start_ms is None else since - e.start_ms
            ranges.setdefault(e.event, []).append((lo, now - e.end_ms))
    return {t: _merge(rs) for t, rs in ranges.items()}


def _in(col: ColumnElement[Any], lo: int | None, hi: int) -> ColumnElement[bool]:
    """``lo < col <= hi`` (no lower bound when ``lo`` is None)."""
    return col <= hi if lo is None else and_(col > lo, col <= hi)


def all_contacts(conn: Connection) -> list[int]:
    c = schema.contacts.c
    return [int(i) for i in conn.execute(select(c.id).order_by(c.id)).scalars()]


def due_contacts(conn: Connection, edges: TimeEdges, since_ms: int, now_ms: int) -> list[int] | None:
    """The contacts with an edge in ``(since_ms, now_ms]``, sorted; None when every contact is
    due (a coarse ``Everyone`` edge, or a fixed instant that passed)."""
    if now_ms <= since_ms:
        return []
    if any(isinstance(e, Everyone) or (isinstance(e, InstantEdge) and since_ms < e.at_ms <= now_ms)
           for e in edges.edges):
        return None
    found: set[int] = set()
    ev = schema.events.c
    type_ids = dict(conn.execute(select(schema.event_types.c.name, schema.event_types.c.id)).all())
    for event, ranges in sorted(_event_ranges(edges, since_ms, now_ms).items()):
        tid = type_ids.get(event)
        if tid is None:
            continue  # no event of this type was ever stored
        for lo, hi in ranges:
            q = select(ev.contact_id).where(ev.type_id == tid, _in(ev.ts, lo, hi)).distinct()
            found.update(int(c) for c in conn.execute(q).scalars())
    m = schema.memberships.c
    for e in edges.of(DwellEdge):
        assert isinstance(e, DwellEdge)
        lo, hi = since_ms - e.ms, now_ms - e.ms
        if e.kind == "min_dwell":
            cond = and_(m.exited_at.is_(None), m.entered_at > lo, m.entered_at <= hi)
        else:
            cond = and_(m.exited_at > lo, m.exited_at <= hi)
        found.update(int(c) for c in conn.execute(
            select(m.contact_id).where(m.segment == e.segment, cond).distinct()).scalars())
    conds = []
    attrs = schema.contacts.c.attributes
    for e in edges.of(AttrEdge):
        assert isinstance(e, AttrEdge)
        conds.append(_in(attrs[e.attr].as_float(), since_ms - e.offset_ms, now_ms - e.offset_ms))
    for e in edges.of(AttrSpan):
        assert isinstance(e, AttrSpan)
        conds.append(attrs[e.attr].as_float().is_not(None))
    if conds:  # one scan of the contacts for every date attribute edge
        q = select(schema.contacts.c.id).where(or_(*conds))
        found.update(int(c) for c in conn.execute(q).scalars())
    return sorted(found)


@dataclass(frozen=True)
class TickReport:
    """One tick: the interval it covered, who was due, and what re-evaluating them did."""

    since_ms: int
    as_of_ms: int
    due: int
    everyone: bool = False
    refresh: Refresh | None = None
    scan_seconds: float = 0.0
    coarse: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        return {"since": self.since_ms, "as_of": self.as_of_ms, "due": self.due, "everyone": self.everyone,
                "scan_seconds": round(self.scan_seconds, 4),
                "refresh": None if self.refresh is None else self.refresh.to_json()}


def last_tick(conn: Connection, now_ms: int, tick_ms: int = DEFAULT_TICK_MS) -> int:
    """The instant the previous tick covered up to (see the module docstring for the default)."""
    stored = load_cursor(conn, *CURSOR)
    if stored is not None:
        return int(stored)
    runs = schema.runs.c
    finished = and_(runs.as_of.is_not(None), runs.status.in_(("ok", "partial")), runs.as_of <= now_ms)
    latest = conn.execute(select(runs.as_of).where(finished).order_by(runs.as_of.desc()).limit(1)).scalar()
    return int(latest) if latest is not None else now_ms - tick_ms


def tick(engine: Engine, project: Project, now_ms: int, *, edges: TimeEdges | None = None,
         trigger: str = "tick", tick_ms: int = DEFAULT_TICK_MS,
         outbox_now_ms: int | None = None) -> TickReport:
    """Re-evaluate (and plan) the contacts with a time edge since the last tick; see the module
    docstring. ``outbox_now_ms`` stamps the outbox rows (default ``now_ms``)."""
    edges = edges if edges is not None else time_edges(project)
    started = time.perf_counter()
    with engine.connect() as conn:
        since = last_tick(conn, now_ms, tick_ms)
        if now_ms <= since:
            return TickReport(since, now_ms, 0)
        ids = due_contacts(conn, edges, since, now_ms)
        everyone = ids is None
        if ids is None:
            ids = all_contacts(conn)
    scanned = time.perf_counter() - started
    result = refresh(engine, project, ids, now_ms, trigger=trigger, now_ms=outbox_now_ms) if ids else None
    with begin_write(engine) as conn:
        save_cursor(conn, *CURSOR, str(now_ms), now_ms)
    report = TickReport(since, now_ms, len(ids), everyone, result, scanned, tuple(edges.coarse()))
    if result is not None and (result.entered or result.exited):
        LOG.info("tick at %d: %d contact(s) due, entered %s, exited %s, %d change(s) queued",
                 now_ms, len(ids), result.entered, result.exited, result.queued)
    return report
