"""One run's plan, from the store: evaluation -> desired state -> plan -> outbox.

::

    plan_run(engine, project, evaluation, as_of_ms, *, full=True, commit=True,
             run_id=None, trigger="manual", empty_sources=(), allow_mass_removal=None) -> Plan

In one transaction (``commit=True``): the desired values of the records in scope are stored
(``desired_values``), diffed against the acknowledged ones (``acked_values``) with the pure
:func:`sync.plan.diff`, checked by the mass-removal guard (``sync.safety``), committed to the
outbox (``sync.outbox.enqueue``; held changes are audited as skipped), and audit entries past
the retention are deleted. Nothing is sent: :func:`sync.executor.push_pending` does that.
With ``commit=False`` (``segsync plan``, the dry run) nothing is written and the returned plan
is exactly what a committing run would enqueue and hold.

``full=False`` plans only the contacts of ``evaluation`` (the real-time path). Records whose
identity is archived, and targets no longer mapped, are left alone (never cleared).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, and_, bindparam, func, select

from connectors.records import Change, ChangeOp, JsonValue
from mapping.models import parse_duration
from mapping.project import Project
from mapping.targets import TargetDef, segment_reason
from sync import audit, cost, outbox, safety
from sync.desired import DesiredState, compute_desired, open_entries, store_desired
from sync.evaluate import EvaluationResult
from sync.plan import Key, Plan, PlannedChange, diff, tag_set, target_key
from sync.store import schema
from sync.store.tx import begin_write

_IN = 500


def _load_acked(conn: Connection, state: DesiredState) -> dict[Key, JsonValue]:
    a = schema.acked_values
    cols = (a.c.destination, a.c.record_id, a.c.target, a.c.value)
    rows: Iterable[tuple[str, str, str, JsonValue]]
    if state.full:
        rows = conn.execute(select(*cols).where(a.c.destination.in_(sorted(state.targets))))
        return {(d, r, t): v for d, r, t, v in rows}
    out: dict[Key, JsonValue] = {}
    by_dest: dict[str, list[str]] = {}
    for dest, rid in state.records:
        by_dest.setdefault(dest, []).append(rid)
    q = select(*cols).where(and_(a.c.destination == bindparam("d"),
                                 a.c.record_id.in_(bindparam("r", expanding=True))))
    for dest, rids in by_dest.items():
        for i in range(0, len(rids), _IN):
            for d, r, t, v in conn.execute(q, {"d": dest, "r": rids[i:i + _IN]}):
                out[(d, r, t)] = v
    return out


def _explain(project: Project, t: TargetDef, old: JsonValue, new: JsonValue) -> tuple[str, tuple[str, ...]]:
    """(reason, segments) of a change of target ``t`` from ``old`` to ``new``."""
    if t.kind == "tags":
        moved = sorted(tag_set(old) ^ tag_set(new))
        moved = [s for s in moved if s in project.segments]
        return (",".join(segment_reason(project, s) for s in moved) or t.reason), tuple(moved)
    if t.kind == "group" or (t.kind == "value" and t.reason.startswith("group:")):
        involved = sorted({str(v) for v in (old, new) if isinstance(v, str) and v in project.segments})
        return t.reason, tuple(involved)
    return t.reason, t.segments


def _transitions(conn: Connection, project: Project, evaluation: EvaluationResult,
                 state: DesiredState, full: bool) -> list[PlannedChange]:
    """Segment-transition events of the evaluated contacts (entered / exited at ``as_of``)."""
    as_of = evaluation.as_of_ms
    out: list[PlannedChange] = []
    for provider, mapping in project.config.destinations.enabled().items():
        if not mapping.events:
            continue
        segs = sorted({e.segment for e in mapping.events})
        ids = None if full else [r.contact_id for r in evaluation.results]
        opened = open_entries(conn, segs, ids)
        m = schema.memberships
        closed = {(int(c), str(s)) for c, s in conn.execute(
            select(m.c.contact_id, m.c.segment).where(m.c.segment.in_(segs), m.c.exited_at == as_of))}
        records: dict[int, list[str]] = {}
        for (dest, rid), (cid, _k) in state.records.items():
            if dest == provider:
                records.setdefault(cid, []).append(rid)
        for res in evaluation.results:
            for ev in mapping.events:
                member = ev.segment in res.segments
                since = opened.get(res.contact_id, {}).get(ev.segment)
                entered = member and (since is None or since == as_of)
                exited = not member and (since is not None or (res.contact_id, ev.segment) in closed)
                if not (entered if ev.on == "enter" else exited):
                    continue
                props: dict[str, JsonValue] = {f: res.fields.get(f) for f in ev.fields}
                props.update(segment=ev.segment, transition=ev.on, at=_iso(as_of))
                for rid in sorted(records.get(res.contact_id, [])):
                    change = Change(provider, rid, ChangeOp.EVENT, ev.event_name(), props)
                    out.append(PlannedChange(change, res.contact_id, res.key, None,
                                             segment_reason(project, ev.segment), (ev.segment,)))
    return _unsent(conn, out)


def _unsent(conn: Connection, events: list[PlannedChange]) -> list[PlannedChange]:
    """The events not already confirmed (a re-plan at the same ``as_of`` finds them again)."""
    a = schema.acked_values
    sent: set[Key] = set()
    keys = [(p.change.destination, p.change.record_id, outbox.row_target(p)) for p in events]
    for i in range(0, len(keys), _IN):
        q = select(a.c.destination, a.c.record_id, a.c.target).where(
            a.c.target.in_([k[2] for k in keys[i:i + _IN]]))
        sent |= {(d, r, t) for d, r, t in conn.execute(q)}
    return [p for p, k in zip(events, keys, strict=True) if k not in sent]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _desired_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(schema.desired_values)).scalar() or 0)


def plan_run(engine: Engine, project: Project, evaluation: EvaluationResult, as_of_ms: int | None = None,
             *, full: bool = True, commit: bool = True, run_id: int | None = None,
             trigger: str = "manual", empty_sources: Sequence[str] = (),
             allow_mass_removal: bool | None = None, now_ms: int | None = None) -> Plan:
    """Plan (and with ``commit``, enqueue) the changes that bring every destination record of
    the evaluated contacts to its desired state. See the module docstring."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    as_of = evaluation.as_of_ms if as_of_ms is None else as_of_ms
    settings = project.config.destinations
    guard = safety.Guard(settings.mass_removal_min, settings.mass_removal_share,
                         settings.allow_mass_removal if allow_mass_removal is None else allow_mass_removal)
    tx: AbstractContextManager[Connection] = begin_write(engine) if commit else engine.connect()
    with tx as conn:
        had_desired = _desired_count(conn) > 0
        state = compute_desired(conn, project, evaluation, full=full)
        acked = _load_acked(conn, state)
        by_key = {dest: {t.key: t for t in defs} for dest, defs in state.targets.items()}
        desired = {k: v.value for k, v in state.values.items()}
        keys = set(desired) | {k for k in acked if (k[0], k[1]) in state.records and k[2] in by_key[k[0]]}
        planned = []
        for change in diff(desired, acked, keys):
            key = (change.destination, change.record_id, target_key(change))
            cid, ckey = state.records[(key[0], key[1])]
            reason, segs = _explain(project, by_key[key[0]][key[2]], acked.get(key), change.value)
            planned.append(PlannedChange(change, cid, ckey, acked.get(key), reason, segs))
        planned += _transitions(conn, project, evaluation, state, full)
        empty = list(empty_sources)
        if full and not evaluation.results and had_desired:
            empty.append("the evaluation")
        tag_fields = {d: frozenset(t.name for t in defs if t.kind == "tags")
                      for d, defs in state.targets.items()}
        current = safety.members(acked, tag_fields)
        send, held, problems = safety.check(planned, current, tag_fields, guard, empty)
        records = {d: frozenset(r for dd, r in state.records if dd == d) for d in state.targets}
        plan = Plan(as_of, tuple(send), tuple(held), full, records, tuple(problems),
                    _costs(project, send, state.targets))
        if commit:
            store_desired(conn, state, now)
            outbox.enqueue(conn, plan, run_id=run_id, trigger=trigger, now_ms=now)
            audit.enforce_retention(conn, parse_duration(project.config.audit.retention), now)
        else:
            conn.rollback()
    return plan


def _costs(project: Project, send: Sequence[PlannedChange],
           dests: Mapping[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for dest in dests:
        changes = [p.change for p in send if p.change.destination == dest]
        hub = project.config.destinations.hubspot
        if dest == "hubspot" and hub is not None:
            out[dest] = cost.hubspot_cost(changes, hub.rate_per_10s, hub.daily_quota).to_json()
        else:
            out[dest] = cost.klaviyo_cost(changes).to_json()
    return out
