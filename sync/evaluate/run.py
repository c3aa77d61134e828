"""The entry point of an evaluation run, and the subset path (real time, ``explain``).

The whole population goes to :mod:`sync.evaluate.full`. A subset compiles the same
:class:`~sync.evaluate.plan.Plan` with the trait SELECTs inlined as derived tables filtered by
``contact_id IN (:ids)`` (index-backed), ranks against the cut-offs stored by the last persisted
full evaluation, and decides stateful segments with the same :func:`~sync.evaluate.state.decide`.

The real-time path is latency-bound, so a compiled subset plan is kept per project and store
dialect (:data:`_PREPARED`) together with its SQL, rendered once per number of ids
(:class:`~sync.evaluate.rawsql.RawStatement`), while the store's *fingerprint* holds: the
event type ids, and the version token every persisted full run renews
(:func:`~sync.evaluate.ranks.bump_version`). A call then runs three statements on the DBAPI
cursor: the fingerprint, the stored state and the per-contact SELECT. A plan whose cut-offs had
to be computed on the spot (no full run stored them yet) is not kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, bindparam, literal, select

from mapping.project import Project
from sync.evaluate.compile import type_of
from sync.evaluate.full import ensure_math, run_full
from sync.evaluate.plan import Plan, convert, number, peval
from sync.evaluate.ranks import VERSION_KEY, compute_cutoffs, load_cutoffs
from sync.evaluate.rawsql import RawStatement
from sync.evaluate.results import ContactResult, EvaluationResult
from sync.evaluate.state import ContactState, Decision, StateReader, Writer, decide
from sync.store.schema import contacts, event_types, rank_cutoffs
from sync.store.tx import begin_write

SUBSET_CHUNK = 500
PREPARED_MAX = 8
# (project id, dialect name) -> (project, store fingerprint, compiled subset evaluation)
_PREPARED: OrderedDict[tuple[int, str], tuple[Project, tuple[Any, ...], Evaluation]] = OrderedDict()
_FINGERPRINTS: dict[str, RawStatement] = {}
_LOCK = threading.Lock()


class Evaluation:
    """A plan compiled for the subset path (``extra`` adds columns to it, for ``explain``)."""

    offset = 3  # atom i of a row is row[offset + i]

    def __init__(self, conn: Connection, project: Project, as_of_ms: int, type_ids: dict[str, int],
                 extra: Callable[[Plan], None] | None = None) -> None:
        self.project = project
        self.computed = False  # whether rank cut-offs had to be computed from the population
        plan = self.plan = Plan(project, conn.dialect.name, type_ids)
        plan.compile()  # collect mode: registers trait columns and ranked expressions
        plan.resolver.mode = "final"
        for key, spec in plan.resolver.ranks.items():
            cut = load_cutoffs(conn, key)
            if cut is None:
                plan.traits.use_subqueries(False)
                self.computed = True
                cut = compute_cutoffs(conn, plan.traits.joins(contacts), spec.build(), spec.n, as_of_ms)
            plan.resolver.cutoffs[key] = cut
        plan.traits.use_subqueries(True)
        plan.compile()
        if extra is not None:
            extra(plan)
        cols = [a.label(f"a{i}") for i, (a, _) in enumerate(plan.atoms)]
        query = (select(contacts.c.id, contacts.c.email, contacts.c.external_id, *cols)
                 .select_from(plan.traits.joins(contacts))
                 .where(contacts.c.id.in_(bindparam("ids", expanding=True))).order_by(contacts.c.id))
        self.query = RawStatement(query, conn.dialect)
        self.field_conv = {name: convert(type_of(project, expr)) for name, expr in project.fields.items()}
        self._states: dict[bool, StateReader] = {}

    def states(self, dialect: Dialect, with_values: bool) -> StateReader:
        reader = self._states.get(with_values)
        if reader is None:
            reader = self._states[with_values] = StateReader(self.project, dialect, with_values)
        return reader

    def contact(self, row: Any, st: ContactState, as_of: int,
                explain: bool = False) -> tuple[ContactResult, Decision]:
        atoms = row[self.offset:]
        plan = self.plan
        d = decide(plan, atoms, st, as_of, explain)
        members = [n for n, sp in plan.segments.items() if (atoms[sp.verdict] if sp.pure else d.final[n])]
        conv = self.field_conv
        fields = {name: conv[name](peval(node, atoms, d.final)) for name, node in plan.fields.items()}
        for gname, group in self.project.groups.items():
            fields[group.field or gname] = d.groups.get(gname)
        key = row[1] if row[1] is not None else row[2]
        return ContactResult(row[0], key, tuple(sorted(members)), fields), d


def fingerprint(conn: Connection) -> tuple[tuple[Any, ...], dict[str, int]]:
    """The store facts a compiled subset plan depends on, and the event type ids."""
    stmt = _FINGERPRINTS.get(conn.dialect.name)
    if stmt is None:
        c = rank_cutoffs.c
        union = select(literal(0), event_types.c.id, event_types.c.name).union_all(
            select(literal(1), c.population, c.rank_key).where(c.rank_key == VERSION_KEY, c.k == 0))
        stmt = _FINGERPRINTS[conn.dialect.name] = RawStatement(union, conn.dialect)
    rows = sorted(tuple(row) for row in stmt.rows(conn))
    return tuple(rows), {name: tid for kind, tid, name in rows if kind == 0}


def prepared(conn: Connection, project: Project, as_of: int) -> Evaluation:
    """The compiled subset evaluation of ``project`` on ``conn``'s store (kept while valid)."""
    ensure_math(conn)
    fp, type_ids = fingerprint(conn)
    key = (id(project), conn.dialect.name)
    with _LOCK:
        hit = _PREPARED.get(key)
    if hit is not None and hit[0] is project and hit[1] == fp:
        return hit[2]
    ev = Evaluation(conn, project, as_of, type_ids)
    if not ev.computed:
        with _LOCK:
            _PREPARED[key] = (project, fp, ev)
            _PREPARED.move_to_end(key)
            while len(_PREPARED) > PREPARED_MAX:
                _PREPARED.popitem(last=False)
    return ev


def _record(w: Writer | None, ev: Evaluation, res: ContactResult, st: ContactState, d: Decision,
            as_of: int, out: EvaluationResult) -> None:
    now = set(res.segments)
    project = ev.project
    for seg in now - st.open.keys():
        out.entered[seg] += 1
        if w is not None:
            w.entered.append({"contact_id": res.contact_id, "segment": seg, "entered_at": as_of,
                              "exited_at": None, "rule_hash": project.segments[seg].rule_hash})
    for seg in st.open.keys() - now:
        if seg in project.segments:
            out.exited[seg] += 1
            if w is not None:
                w.exited.append({"b_cid": res.contact_id, "b_seg": seg})
    if w is None:
        return
    for gname, group in project.groups.items():
        if group.kind == "lifecycle" and d.groups.get(gname) != st.groups.get(gname):
            w.groups.append({"contact_id": res.contact_id, "group_name": gname,
                             "value": d.groups.get(gname), "since": as_of})
    for name, value in res.fields.items():
        if name not in st.values or _norm(st.values[name]) != value:
            w.values.append({"contact_id": res.contact_id, "name": name, "value": value, "updated_at": as_of})


def _norm(value: Any) -> Any:
    return number(value) if isinstance(value, float) else value


def run_subset(conn: Connection, project: Project, as_of_ms: int, contact_ids: Sequence[int],
               persist: bool, out: EvaluationResult) -> None:
    if conn.dialect.name == "postgresql":
        # The contact query is large and its row estimates for a few ids are wild (51M rows for
        # one contact at 1M contacts), so its cost passes every JIT threshold and PostgreSQL
        # spent 14 s compiling it with inlining and optimisation for a plan that runs in 1 ms.
        conn.exec_driver_sql("SET LOCAL jit = off")
        # once psycopg has prepared it (5th use), reuse one plan instead of planning this large
        # query on every call: measured p99 11.8 -> 6.1 ms over 1,000 random contacts
        conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
    ev = prepared(conn, project, as_of_ms)
    states = ev.states(conn.dialect, persist)
    writer = Writer(conn, as_of_ms) if persist else None
    empty = ContactState()
    ids = sorted(set(contact_ids))
    for start in range(0, len(ids), SUBSET_CHUNK):
        part = ids[start:start + SUBSET_CHUNK]
        found = states.read(conn, part)
        for row in ev.query.rows(conn, as_of_ms, part):
            st = found.get(row[0], empty)
            res, d = ev.contact(row, st, as_of_ms)
            out.results.append(res)
            for seg in res.segments:
                out.sizes[seg] += 1
            _record(writer, ev, res, st, d, as_of_ms, out)
        if writer is not None:
            writer.flush()


def run_evaluation(engine: Engine, project: Project, as_of_ms: int,
                   contact_ids: Sequence[int] | None, persist: bool) -> EvaluationResult:
    if contact_ids is None:
        return run_full(engine, project, as_of_ms, persist)
    with (begin_write(engine) if persist else engine.connect()) as conn:
        if not persist:
            conn.begin()  # one snapshot for the state and the contacts' rows
        out = EvaluationResult(as_of_ms, dict.fromkeys(project.segments, 0),
                               dict.fromkeys(project.segments, 0), dict.fromkeys(project.segments, 0))
        out.results = []
        run_subset(conn, project, as_of_ms, contact_ids, persist, out)
        if not persist:
            # a dry run wrote nothing; ending it with COMMIT keeps psycopg's prepared statements,
            # which it drops on every ROLLBACK
            conn.commit()
        return out
