"""The time edges of a project's rules: when can a contact's verdicts change with the clock alone?

A rule's verdict for one contact is piecewise constant in ``as_of``; it can only change at an
*edge*: an event entering or leaving a window, a date turning N days old, a ``min_dwell`` or
``cooldown`` running out. :func:`time_edges` walks every segment (rule, ``exclude``, flags, the
traits, scores and segments they reference, the event types' ``exclude`` filters) and returns
the edges as data; :mod:`sync.realtime.ticks` turns each into one index-backed query for the
contacts whose edge fell in ``(last_tick, now]``. Pure: no I/O.

Exact edges (a contact is found only when one of its own edges passed):

* ``EventEdge(T, d)``: an event of type ``T`` with ``ts + d`` in the interval — for every
  aggregate / sequence window on ``T`` (``within W``: ``d = W`` and ``d = 0``; ``between (A, B)``:
  ``A`` and ``B``; all time: ``0``, events dated in the future start counting), a sequence's
  ``gap``, ``first``/``last(T) <op> ago(D)`` (``d = D`` and ``D + 1 ms``: ``<`` turns one
  millisecond after ``<=``), ``ts <op> ago(D)`` in a filter,
  ``days_since(last(T)) <op> k`` (``d = k`` days, either side of the floor), scores without decay
  (``0`` and the score's window).
* ``AttrEdge(a, d)``: the date attribute ``a`` plus ``d`` in the interval (``signup_date <
  ago("30d")``, ``days_since(birthday) >= 365``).
* ``DwellEdge(s, kind, d)``: an open membership of ``s`` entered ``min_dwell`` ago, or a closed
  one that left ``cooldown`` ago.
* ``InstantEdge(t)``: a fixed instant (``now >= datetime("2024-12-24T00:00:00Z")``): everyone, once.

Coarse edges, for time dependence that has no per-contact instant the store can index
(re-evaluated on every tick, reported by :meth:`TimeEdges.coarse`): ``EventSpan`` (every contact
with an event of ``T`` in a span — decaying scores, RFM recency, ``ago()`` compared with an
event property), ``AttrSpan`` (``days_since(a)`` in arithmetic) and ``Everyone`` (``now`` inside
an expression the analysis does not follow). ``[fields]`` are not scanned: a time-dependent
output value is refreshed whenever its contact is evaluated, and by the scheduled full run;
so are percentile and RFM cut-offs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, TypeAlias

from mapping.project import Project
from mapping.rules import ast as r
from mapping.rules.checker import children

DAY_MS = 86_400_000


@dataclass(frozen=True, order=True)
class EventEdge:
    """Contacts with an event of ``event`` whose ``ts + offset_ms`` passed."""

    event: str
    offset_ms: int


@dataclass(frozen=True, order=True)
class EventSpan:
    """Every contact with an event of ``event`` in ``(last - start_ms, now - end_ms]``
    (``start_ms`` None: of any age). Coarse."""

    event: str
    start_ms: int | None
    end_ms: int
    why: str


@dataclass(frozen=True, order=True)
class AttrEdge:
    """Contacts whose date attribute ``attr`` plus ``offset_ms`` passed."""

    attr: str
    offset_ms: int


@dataclass(frozen=True, order=True)
class AttrSpan:
    """Every contact with the attribute ``attr`` set. Coarse."""

    attr: str
    why: str


@dataclass(frozen=True, order=True)
class DwellEdge:
    """``min_dwell``: open memberships of ``segment`` entered ``ms`` ago; ``cooldown``:
    memberships that left ``ms`` ago."""

    segment: str
    kind: Literal["min_dwell", "cooldown"]
    ms: int


@dataclass(frozen=True, order=True)
class InstantEdge:
    """A fixed instant: every contact, on the tick that passes it."""

    at_ms: int


@dataclass(frozen=True, order=True)
class Everyone:
    """Every contact, on every tick. Coarse."""

    why: str


Edge: TypeAlias = EventEdge | EventSpan | AttrEdge | AttrSpan | DwellEdge | InstantEdge | Everyone
COARSE = (EventSpan, AttrSpan, Everyone)


@dataclass(frozen=True)
class TimeEdges:
    """Every edge of a project's segments."""

    edges: frozenset[Edge]

    def of(self, kind: type[Edge]) -> list[Edge]:
        return sorted((e for e in self.edges if isinstance(e, kind)), key=repr)

    def coarse(self) -> list[str]:
        """Why some contacts are re-evaluated on every tick (empty: every edge is exact)."""
        out = []
        for e in sorted(self.edges, key=repr):
            if isinstance(e, EventSpan):
                out.append(f"contacts with {e.event!r} events ({e.why})")
            elif isinstance(e, AttrSpan):
                out.append(f"contacts with {e.attr!r} set ({e.why})")
            elif isinstance(e, Everyone):
                out.append(f"every contact ({e.why})")
        return out


@dataclass(frozen=True)
class _Scope:
    """Inside an event filter: the event type and the window its events count in."""

    event: str
    start_ms: int | None
    end_ms: int


def _clock(x: r.Expr) -> int | None:
    """``now`` -> 0, ``ago(D)`` -> D: how far before ``as_of`` the term is; else None."""
    if isinstance(x, r.Now):
        return 0
    if isinstance(x, r.Ago):
        return x.duration_ms
    return None


def _number(x: r.Expr) -> float | None:
    if isinstance(x, r.Literal_) and x.type is r.Type.NUMBER and isinstance(x.value, int | float) \
            and not isinstance(x.value, bool):
        return float(x.value)
    return None


class _Walker:
    def __init__(self, project: Project) -> None:
        self.project = project
        self.out: set[Edge] = set()
        self.segments: set[str] = set()
        self.events: set[str] = set()
        self.scores: set[str] = set()

    # ------------------------------------------------------------------ definitions

    def segment(self, name: str) -> None:
        if name in self.segments or name not in self.project.segments:
            return
        self.segments.add(name)
        seg = self.project.segments[name]
        for expr in (seg.rule, seg.exclude, *(f.when for f in seg.flags)):
            if expr is not None:
                self.visit(expr, None)
        if seg.min_dwell_ms:
            self.out.add(DwellEdge(name, "min_dwell", seg.min_dwell_ms))
        if seg.cooldown_ms:
            self.out.add(DwellEdge(name, "cooldown", seg.cooldown_ms))

    def event_type(self, event: str) -> None:
        """The type's global ``exclude`` filter applies to every aggregate over it."""
        if event in self.events:
            return
        self.events.add(event)
        exclude = self.project.event_excludes.get(event)
        if exclude is not None:
            self.visit(exclude, _Scope(event, None, 0))

    def score(self, name: str) -> None:
        if name in self.scores or name not in self.project.scores:
            return
        self.scores.add(name)
        score = self.project.scores[name]
        for points in score.points:
            self.event_type(points.event)
            if score.half_life_ms:
                self.out.add(EventSpan(points.event, score.window_ms, 0, f"score {name!r} decays"))
            else:
                self.window_edges(points.event, score.window_ms, 0)
            if points.where is not None:
                self.visit(points.where, _Scope(points.event, score.window_ms, 0))

    def window_edges(self, event: str, start_ms: int | None, end_ms: int) -> None:
        self.out.add(EventEdge(event, end_ms))
        if start_ms is not None:
            self.out.add(EventEdge(event, start_ms))

    # ------------------------------------------------------------------ expressions

    def visit(self, x: r.Expr, scope: _Scope | None) -> None:
        if isinstance(x, r.Compare):
            self.compare(x.left, x.right, scope)
        elif isinstance(x, r.Between):
            self.compare(x.expr, x.low, scope)
            self.compare(x.expr, x.high, scope)
        elif isinstance(x, r.Now | r.Ago):
            self.unknown(scope, "now / ago() inside an expression")
        elif isinstance(x, r.DaysSince):
            self.days_any(x.expr, scope)
            self.visit(x.expr, scope)
        elif isinstance(x, r.Agg):
            self.event_type(x.event)
            start = x.window.start_ms if x.window.kind != "all" else None
            self.window_edges(x.event, start, x.window.end_ms)
            if x.where is not None:
                self.visit(x.where, _Scope(x.event, start, x.window.end_ms))
        elif isinstance(x, r.Sequence):
            self.sequence(x)
        elif isinstance(x, r.ScoreRef | r.TierRef):
            self.score(x.name)
        elif isinstance(x, r.Rfm):
            rfm = self.project.rfm
            if rfm is not None:
                self.event_type(rfm.event)
                self.out.add(EventSpan(rfm.event, rfm.window_ms, 0, "RFM recency"))
        elif isinstance(x, r.SegmentRef):
            self.segment(x.name)
        elif isinstance(x, r.TraitRef):
            trait = self.project.traits.get(x.name)
            if trait is not None:
                self.visit(trait, scope)
        else:  # Rank (its cut-offs come from the full run), And/Or/Not, In, arithmetic, ...
            for child in children(x):
                self.visit(child, scope)

    def sequence(self, s: r.Sequence) -> None:
        self.event_type(s.first)
        self.event_type(s.then_not)
        start = s.window.start_ms if s.window.kind != "all" else None
        self.window_edges(s.first, start, s.window.end_ms)
        self.out.add(EventEdge(s.first, 0))  # a newer A replaces the latest one
        self.out.add(EventEdge(s.first, s.gap_ms))  # the A event is now ``gap`` old
        if s.where is not None:
            self.visit(s.where, _Scope(s.first, start, s.window.end_ms))
        if s.then_where is not None:
            self.visit(s.then_where, _Scope(s.then_not, None, 0))

    def compare(self, left: r.Expr, right: r.Expr, scope: _Scope | None) -> None:
        """``x <op> ago(D)`` flips when x turns D old; ``days_since(x) <op> k`` when x turns
        about k days old; anything else: the operands' own edges."""
        lc, rc = _clock(left), _clock(right)
        if lc is not None and rc is not None:
            return  # now vs ago(): a constant
        for side, shift in ((left, rc), (right, lc)):
            if shift is not None:  # ``x < t - D`` turns at x + D + 1 ms, ``x <= t - D`` at x + D
                self.shifted(side, shift, scope)
                self.shifted(side, shift + 1, scope)
                self.visit(side, scope)
                return
        for side, other in ((left, right), (right, left)):
            k = _number(other)
            if isinstance(side, r.DaysSince) and k is not None:
                if _clock(side.expr) is None:
                    for n in {math.ceil(k), math.floor(k) + 1}:
                        self.shifted(side.expr, n * DAY_MS, scope)
                    self.visit(side.expr, scope)
                return
        self.visit(left, scope)
        self.visit(right, scope)

    def shifted(self, x: r.Expr, offset: int, scope: _Scope | None) -> None:
        """Edges of "the instant ``x`` plus ``offset`` passed"."""
        if isinstance(x, r.Attr):
            self.out.add(AttrEdge(x.name, offset))
        elif isinstance(x, r.Agg) and (x.func in ("first", "last") or x.of == r.EventField("ts")):
            self.out.add(EventEdge(x.event, offset))
        elif isinstance(x, r.EventField) and x.name == "ts" and scope is not None:
            self.out.add(EventEdge(scope.event, offset))
        elif isinstance(x, r.Literal_) and x.type is r.Type.DATETIME and isinstance(x.value, int | float):
            self.out.add(InstantEdge(int(x.value) + offset))
        elif isinstance(x, r.Literal_) and x.value is None:
            pass
        elif isinstance(x, r.Coalesce):
            self.shifted(x.expr, offset, scope)
            self.shifted(x.default, offset, scope)
        elif isinstance(x, r.TraitRef) and x.name in self.project.traits:
            self.shifted(self.project.traits[x.name], offset, scope)
        elif _clock(x) is None:
            self.unknown(scope, "a date compared with now / ago() that is not an attribute or event time")

    def days_any(self, x: r.Expr, scope: _Scope | None) -> None:
        """``days_since(x)`` not compared with a number: it changes every day."""
        if _clock(x) is not None:
            return
        if isinstance(x, r.Attr):
            self.out.add(AttrSpan(x.name, "days_since() in an expression"))
        elif isinstance(x, r.Agg):
            self.out.add(EventSpan(x.event, None, 0, "days_since() in an expression"))
        else:
            self.unknown(scope, "days_since() in an expression")

    def unknown(self, scope: _Scope | None, why: str) -> None:
        if scope is not None:
            self.out.add(EventSpan(scope.event, scope.start_ms, scope.end_ms, why))
        else:
            self.out.add(Everyone(why))


def time_edges(project: Project) -> TimeEdges:
    """Every time edge of ``project``'s segments (see the module docstring)."""
    walker = _Walker(project)
    for name in project.segments:
        walker.segment(name)
    return TimeEdges(frozenset(walker.out))


def describe(edges: TimeEdges) -> Iterator[str]:
    """One line per edge, for logs and ``--json`` reports."""
    for e in sorted(edges.edges, key=repr):
        yield repr(e)
