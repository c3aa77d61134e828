"""What ``segsync segments`` shows beside the sizes: entries and exits since the last run,
engagement per segment, and the segments too small to act on (``[report]``).

::

    segment_report(engine, project, evaluation) -> SegmentReport

* **Entries / exits since the last run**: the memberships recorded after the last finished
  ``segsync run`` (by the real-time path, say) plus what evaluating now would change
  (``evaluation`` is usually a dry one: its ``entered`` / ``exited`` compare with the stored
  state). Without a previous run, everything ever recorded counts.
* **Open and click rates** over ``[report] window`` (default 30 days before ``as_of``): among
  the members who were sent an email in the window (``sent_event``), the share who opened
  (``open_event``) and who clicked (``click_event``). When the configuration declares no send
  event type the denominator is every member. A rate is ``None`` when its event type is not
  declared or nobody was sent anything.
* **Small segments**: fewer members than ``[report] min_segment_size``.

Naming an event type in ``[report]`` that the configuration does not declare is a
:class:`~mapping.errors.ConfigError`; the defaults (``email_sent``, ``opened_email``,
``clicked_email``) are simply skipped when undeclared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine, func, select

from mapping.errors import ConfigError, Location, Problem
from mapping.models import parse_duration
from mapping.project import Project
from sync.evaluate import EvaluationResult
from sync.store import schema

__all__ = ["SegmentReport", "SegmentStats", "last_run_as_of", "segment_report"]

SENT, OPEN, CLICK = 0, 1, 2


@dataclass(frozen=True)
class SegmentStats:
    segment: str
    members: int
    entered: int  # since the last run
    exited: int
    recipients: int  # members sent an email in the window (every member without a send type)
    open_rate: float | None
    click_rate: float | None
    small: bool


@dataclass(frozen=True)
class SegmentReport:
    as_of_ms: int
    last_run_as_of_ms: int | None
    window_ms: int
    min_size: int
    segments: tuple[SegmentStats, ...]

    @property
    def warnings(self) -> list[str]:
        return [f"{s.segment}: {s.members:,} members, fewer than the minimum of {self.min_size:,} "
                "([report] min_segment_size)" for s in self.segments if s.small]

    def to_json(self) -> dict[str, Any]:
        return {"last_run_as_of": self.last_run_as_of_ms, "window_ms": self.window_ms,
                "min_segment_size": self.min_size,
                "segments": {s.segment: {k: v for k, v in asdict(s).items() if k != "segment"}
                             for s in self.segments},
                "warnings": self.warnings}


def last_run_as_of(engine: Engine) -> int | None:
    """The ``as_of`` of the last ``segsync run`` that finished (ok or partial)."""
    r = schema.runs
    with engine.connect() as conn:
        found = conn.execute(select(r.c.as_of).where(r.c.kind == "run", r.c.status.in_(("ok", "partial")),
                                                     r.c.as_of.is_not(None))
                             .order_by(r.c.id.desc()).limit(1)).scalar()
    return None if found is None else int(found)


def _event_types(project: Project) -> dict[int, str]:
    """kind (SENT/OPEN/CLICK) -> declared event type; ConfigError for an explicit unknown one."""
    cfg = project.config.report
    given = cfg.model_fields_set
    out: dict[int, str] = {}
    problems = []
    for kind, key in ((SENT, "sent_event"), (OPEN, "open_event"), (CLICK, "click_event")):
        name = str(getattr(cfg, key))
        if name in project.events:
            out[kind] = name
        elif key in given:
            problems.append(Problem(Location(path=f"report.{key}"),
                                    f"{name!r} is not a declared event type"))
    if problems:
        raise ConfigError(problems=problems)
    return out


def _moves(engine: Engine, since_ms: int | None) -> tuple[dict[str, int], dict[str, int]]:
    m = schema.memberships
    entered: dict[str, int] = {}
    exited: dict[str, int] = {}
    with engine.connect() as conn:
        for column, out in ((m.c.entered_at, entered), (m.c.exited_at, exited)):
            q = select(m.c.segment, func.count()).where(column.is_not(None))
            if since_ms is not None:
                q = q.where(column > since_ms)
            for segment, n in conn.execute(q.group_by(m.c.segment)):
                out[str(segment)] = int(n)
    return entered, exited


def _engagement(engine: Engine, types: Mapping[int, str], start_ms: int,
                end_ms: int) -> dict[int, set[int]]:
    """kind -> the contacts with at least one such event in (start, end]."""
    if not types:
        return {}
    e, t = schema.events, schema.event_types
    with engine.connect() as conn:
        ids = {str(name): int(i) for i, name in conn.execute(select(t.c.id, t.c.name))}
        kind_of = {ids[name]: kind for kind, name in types.items() if name in ids}
        out: dict[int, set[int]] = {kind: set() for kind in types}
        if not kind_of:
            return out
        q = select(e.c.type_id, e.c.contact_id).where(
            e.c.type_id.in_(sorted(kind_of)), e.c.ts > start_ms, e.c.ts <= end_ms).distinct()
        for type_id, contact_id in conn.execute(q):
            out[kind_of[int(type_id)]].add(int(contact_id))
    return out


def segment_report(engine: Engine, project: Project, evaluation: EvaluationResult) -> SegmentReport:
    """See the module docstring."""
    cfg = project.config.report
    types = _event_types(project)
    window = parse_duration(cfg.window)
    as_of = evaluation.as_of_ms
    last = last_run_as_of(engine)
    recorded_in, recorded_out = _moves(engine, last)
    active = _engagement(engine, types, as_of - window, as_of)
    members: dict[str, list[int]] = {name: [] for name in project.segments}
    for res in evaluation.iter_results():
        for seg in res.segments:
            members.setdefault(seg, []).append(res.contact_id)
    rows = []
    for name in project.segments:
        ids = members.get(name, [])
        sent = [c for c in ids if c in active[SENT]] if SENT in types else ids
        rates: list[float | None] = []
        for kind in (OPEN, CLICK):
            if kind not in types or not sent:
                rates.append(None)
            else:
                rates.append(round(sum(1 for c in sent if c in active[kind]) / len(sent), 4))
        rows.append(SegmentStats(
            name, len(ids), recorded_in.get(name, 0) + int(evaluation.entered.get(name, 0)),
            recorded_out.get(name, 0) + int(evaluation.exited.get(name, 0)), len(sent), rates[0],
            rates[1], len(ids) < cfg.min_segment_size))
    return SegmentReport(as_of, last, window, cfg.min_segment_size, tuple(rows))
