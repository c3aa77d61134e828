"""Segment verdicts over stored state: exclusion, min_dwell, cooldown, exclusive and lifecycle
groups; and persisting memberships, group state and computed values.

A stateful segment's verdict, per contact, in this order:

1. *raw*: its rule holds (unknown is false) and, with flags, ``weight >= min_weight``
   (without ``min_weight``: at least one flag holds); ``weight`` is the sum of the points of
   the flags that hold.
2. *exclude* holding makes it false, always (it overrides ``min_dwell``).
3. *cooldown*: a contact that is not a member and left less than ``cooldown`` ago does not
   re-enter. *min_dwell*: a member that entered less than ``min_dwell`` ago stays a member
   while its raw verdict is false.
4. *groups*: in an exclusive group the candidate with the highest priority wins (ties: higher
   weight, then the earlier listed); with ``resolve_by = "weight"`` weight comes first. Only the
   winner is a member; the losers are **not** members of their own segments (so a contact is in
   at most one segment of an exclusive group — the group is one single-valued output). In a
   lifecycle group the stage is the later of the stored stage and the latest stage whose
   segment holds; only that stage's segment is a member, so a contact never moves back.

State (open memberships, last exits, group stages) is read from the store as written by the
last persisted evaluation; evaluating at an ``as_of`` earlier than that reads the same state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Dialect, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mapping.project import GroupDef, Project
from sync.evaluate.plan import Plan, SegmentPlan, peval
from sync.evaluate.rawsql import RawStatement
from sync.store.schema import computed_values, group_state, memberships


@dataclass
class ContactState:
    open: dict[str, int] = field(default_factory=dict)  # segment -> entered_at
    last_exit: dict[str, int] = field(default_factory=dict)  # segment -> latest exited_at
    groups: dict[str, str | None] = field(default_factory=dict)  # group -> stored value
    values: dict[str, Any] = field(default_factory=dict)  # computed value name -> stored value


@dataclass
class Decision:
    final: dict[str, bool]
    groups: dict[str, str | None]
    weights: dict[str, float]
    notes: dict[str, list[str]]


class StateReader:
    """The stored state of given contacts: memberships (open ones, and the exits of segments
    with a cooldown), lifecycle stages and, when persisting, computed values. Each is one
    statement rendered once (:class:`~sync.evaluate.rawsql.RawStatement`)."""

    def __init__(self, project: Project, dialect: Dialect, with_values: bool) -> None:
        ids: Any = bindparam("ids", expanding=True)
        m, g, v = memberships.c, group_state.c, computed_values.c
        cooling = sorted(s.name for s in project.segments.values() if s.cooldown_ms)
        live = or_(m.exited_at.is_(None), m.segment.in_(cooling)) if cooling else m.exited_at.is_(None)
        self.memberships = RawStatement(select(m.contact_id, m.segment, m.entered_at, m.exited_at)
                                        .where(m.contact_id.in_(ids), live), dialect)
        self.groups = (RawStatement(select(g.contact_id, g.group_name, g.value).where(g.contact_id.in_(ids)),
                                    dialect) if project.groups else None)
        self.values = (RawStatement(select(v.contact_id, v.name, v.value).where(v.contact_id.in_(ids)),
                                    dialect) if with_values else None)
        self.cooling = set(cooling)

    def read(self, conn: Connection, ids: Sequence[int]) -> dict[int, ContactState]:
        out: dict[int, ContactState] = {}

        def get(cid: int) -> ContactState:
            st = out.get(cid)
            if st is None:
                st = out[cid] = ContactState()
            return st

        for cid, seg, entered, exited in self.memberships.rows(conn, None, ids):
            st = get(cid)
            if exited is None:
                st.open[seg] = entered
            elif seg in self.cooling and exited > st.last_exit.get(seg, exited - 1):  # the latest exit
                st.last_exit[seg] = exited
        if self.groups is not None:
            for cid, name, value in self.groups.rows(conn, None, ids):
                get(cid).groups[name] = value
        if self.values is not None:
            for cid, name, value in self.values.rows(conn, None, ids):
                get(cid).values[name] = value
        return out


def _candidate(sp: SegmentPlan, row: Any, d: Decision, st: ContactState, as_of: int,
               explain: bool) -> bool:
    seg = sp.seg
    rule = sp.rule is None or peval(sp.rule, row, d.final) is True
    weight = float(sum(p for node, p in sp.flags if peval(node, row, d.final) is True))
    d.weights[seg.name] = weight
    if seg.min_weight is not None:
        raw = rule and weight >= seg.min_weight
    else:
        raw = rule and (weight > 0 or not sp.flags)
    excluded = sp.exclude is not None and peval(sp.exclude, row, d.final) is True
    entered = st.open.get(seg.name)
    notes = d.notes.setdefault(seg.name, []) if explain else []
    if excluded:
        notes.append("excluded")
        return False
    if raw:
        left = st.last_exit.get(seg.name)
        if entered is None and seg.cooldown_ms and left is not None and as_of - left < seg.cooldown_ms:
            notes.append(f"cooldown: left at {left}, no re-entry before {left + seg.cooldown_ms}")
            return False
        return True
    if entered is not None and seg.min_dwell_ms and as_of - entered < seg.min_dwell_ms:
        notes.append(f"min_dwell: entered at {entered}, stays until {entered + seg.min_dwell_ms}")
        return True
    return False


def decide(plan: Plan, row: Any, st: ContactState, as_of: int, explain: bool = False) -> Decision:
    """Final verdicts of the stateful segments and the group values of one contact."""
    d = Decision({}, {}, {}, {})
    for kind, name in plan.steps:
        if kind == "seg":
            d.final[name] = _candidate(plan.segments[name], row, d, st, as_of, explain)
            continue
        group = plan.project.groups[name]
        cands = [m for m in group.segments if d.final[m]]
        if group.kind == "exclusive":
            ranks = {m: _rank(plan, d, group, m) for m in cands}
            value = max(cands, key=ranks.__getitem__) if cands else None
        else:
            stored = st.groups.get(name)
            best = max((group.segments.index(m) for m in cands), default=-1)
            if stored in group.segments:
                best = max(best, group.segments.index(stored))
            value = group.segments[best] if best >= 0 else None
        for m in group.segments:
            if explain and d.final[m] and m != value:
                d.notes.setdefault(m, []).append(f"{group.kind} group {name}: {value} holds instead")
            d.final[m] = m == value
        d.groups[name] = value
    return d


def _rank(plan: Plan, d: Decision, group: GroupDef, m: str) -> tuple[float, float, int]:
    prio, weight = float(plan.project.segments[m].priority), d.weights.get(m, 0.0)
    first, second = (prio, weight) if group.resolve_by == "priority" else (weight, prio)
    return (first, second, -group.segments.index(m))


class Writer:
    """Collects the changes of one chunk and writes them in a few statements."""

    def __init__(self, conn: Connection, as_of: int) -> None:
        self.conn = conn
        self.as_of = as_of
        self.dialect = conn.dialect.name
        self.entered: list[dict[str, Any]] = []
        self.exited: list[dict[str, Any]] = []
        self.groups: list[dict[str, Any]] = []
        self.values: list[dict[str, Any]] = []

    def _upsert(self, table: Any, rows: list[dict[str, Any]], keys: list[str], sets: list[str]) -> None:
        if not rows:
            return
        ins = (postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table))
        stmt = ins.on_conflict_do_update(index_elements=keys,
                                         set_={c: getattr(ins.excluded, c) for c in sets})
        self.conn.execute(stmt, rows)

    def flush(self) -> None:
        m = memberships.c
        self._upsert(memberships, self.entered, ["contact_id", "segment", "entered_at"], ["exited_at"])
        if self.exited:
            self.conn.execute(update(memberships)
                              .where(m.contact_id == bindparam("b_cid"), m.segment == bindparam("b_seg"),
                                     m.exited_at.is_(None))
                              .values(exited_at=self.as_of), self.exited)
        self._upsert(group_state, self.groups, ["contact_id", "group_name"], ["value", "since"])
        self._upsert(computed_values, self.values, ["contact_id", "name"], ["value", "updated_at"])
        self.entered, self.exited, self.groups, self.values = [], [], [], []
