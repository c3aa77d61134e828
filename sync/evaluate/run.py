"""One evaluation run: plan, trait tables, rank cut-offs, the per-contact SELECT, state, writes.

The whole-population path materialises the trait tables as temporary tables and reads the
per-contact SELECT in keyset chunks of :data:`CHUNK` contacts (bounded memory); the subset
path inlines the trait SELECTs filtered by contact id (index-backed). Both compile from the
same :class:`~sync.evaluate.plan.Plan`, so they share one semantics. Everything happens in
one transaction: nothing is written unless the whole evaluation succeeds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Table, bindparam, func, select

from mapping.project import Project
from sync.evaluate.compile import type_of
from sync.evaluate.full import ensure_math, run_full
from sync.evaluate.plan import Plan, convert, number, peval
from sync.evaluate.ranks import compute_cutoffs, load_cutoffs, store_cutoffs
from sync.evaluate.results import ContactResult, EvaluationResult
from sync.evaluate.state import ContactState, Decision, Writer, decide, load_states
from sync.store.schema import contacts, event_types, rank_cutoffs
from sync.store.tx import begin_write

CHUNK = 20_000
SUBSET_CHUNK = 500
PREPARED_MAX = 8
# (project id, store url) -> (project, fingerprint of event types and stored cut-offs, plan, query,
# field converters): compiled subset plans, reused while the fingerprint holds
_PREPARED: dict[tuple[int, str], tuple[Project, tuple[Any, ...], Plan, Any, dict[str, Any]]] = {}


class Evaluation:
    """Prepares a plan on ``conn`` for the population (``ids is None``) or a subset."""

    def __init__(self, conn: Connection, project: Project, as_of_ms: int,
                 ids: Sequence[int] | None, persist: bool,
                 extra: Callable[[Plan], None] | None = None) -> None:
        self.conn, self.project, self.as_of, self.ids, self.persist = conn, project, as_of_ms, ids, persist
        self.offset = 3
        self.temp: list[Table] = []
        self.computed = False  # whether a subset evaluation had to compute rank cut-offs
        ensure_math(conn)
        type_ids = {name: tid for tid, name in conn.execute(select(event_types.c.id, event_types.c.name))}
        cache_key = (id(project), conn.engine.url.render_as_string())
        fingerprint: tuple[Any, ...] = ()
        if ids is not None and extra is None:
            c = rank_cutoffs.c
            fingerprint = (sorted(type_ids.items()), conn.execute(
                select(c.rank_key, func.max(c.computed_at), func.max(c.population), func.sum(c.cutoff))
                .group_by(c.rank_key).order_by(c.rank_key)).all())
            hit = _PREPARED.get(cache_key)
            if hit is not None and hit[0] is project and hit[1] == fingerprint:
                self.plan, self.query, self.field_conv = hit[2], hit[3], hit[4]
                return
        self.plan = Plan(project, conn.dialect.name, type_ids)
        self.plan.compile()  # collect mode: registers trait columns and ranked expressions
        traits = self.plan.traits
        if ids is None:
            self.temp = traits.materialise(conn, as_of_ms)
        self.plan.resolver.mode = "final"
        self._cutoffs()
        if ids is not None:
            traits.use_subqueries(True)
        self.plan.compile()
        if extra is not None:
            extra(self.plan)
        cols = [a.label(f"a{i}") for i, (a, _) in enumerate(self.plan.atoms)]
        self.query = (select(contacts.c.id, contacts.c.email, contacts.c.external_id, *cols)
                      .select_from(traits.joins(contacts)))
        self.field_conv = {name: convert(type_of(project, expr)) for name, expr in project.fields.items()}
        if fingerprint and not self.computed:  # the real-time path reuses the compiled plan
            _PREPARED[cache_key] = (project, fingerprint, self.plan, self.query, self.field_conv)
            while len(_PREPARED) > PREPARED_MAX:
                _PREPARED.pop(next(iter(_PREPARED)))

    def _cutoffs(self) -> None:
        resolver, traits = self.plan.resolver, self.plan.traits
        for key, spec in resolver.ranks.items():
            cut = None if self.ids is None else load_cutoffs(self.conn, key)
            if cut is None:
                if self.ids is not None:
                    traits.use_subqueries(False)
                    self.computed = True
                cut = compute_cutoffs(self.conn, traits.joins(contacts), spec.build(), spec.n, self.as_of)
                if self.persist and self.ids is None:
                    store_cutoffs(self.conn, key, cut, self.as_of)
            resolver.cutoffs[key] = cut

    def close(self) -> None:
        for table in self.temp:
            table.drop(self.conn)

    def chunks(self) -> Iterator[tuple[Sequence[Any], Callable[[Any], Any]]]:
        """Rows of the per-contact SELECT (shifted so atom i is ``row[i]``) and an id filter."""
        params: dict[str, Any] = {"as_of": self.as_of}
        if self.ids is None:
            after = -1
            while True:
                rows = self.conn.execute(self.query.where(contacts.c.id > after)
                                         .order_by(contacts.c.id).limit(CHUNK), params).all()
                if not rows:
                    return
                lo, hi = rows[0][0], rows[-1][0]
                yield rows, _between(lo, hi)
                after = hi
        ids = sorted(set(self.ids))
        for start in range(0, len(ids), SUBSET_CHUNK):
            part = ids[start:start + SUBSET_CHUNK]
            rows = self.conn.execute(self.query.where(contacts.c.id.in_(bindparam("ids", expanding=True)))
                                     .order_by(contacts.c.id), {**params, "ids": part}).all()
            yield rows, _within(part)

    def contact(self, row: Any, st: ContactState, explain: bool = False) -> tuple[ContactResult, Decision]:
        atoms = row[self.offset:]
        d = decide(self.plan, atoms, st, self.as_of, explain)
        members = [n for n, sp in self.plan.segments.items()
                   if (atoms[sp.verdict] if sp.pure else d.final[n])]
        fields = {name: self.field_conv[name](peval(node, atoms, d.final))
                  for name, node in self.plan.fields.items()}
        for gname, group in self.project.groups.items():
            fields[group.field or gname] = d.groups.get(gname)
        key = row[1] if row[1] is not None else row[2]
        return ContactResult(row[0], key, tuple(sorted(members)), fields), d


def _between(lo: int, hi: int) -> Callable[[Any], Any]:
    return lambda col: col.between(lo, hi)


def _within(ids: list[int]) -> Callable[[Any], Any]:
    return lambda col: col.in_(ids)


def _record(w: Writer, ev: Evaluation, res: ContactResult, st: ContactState, d: Decision,
            out: EvaluationResult) -> None:
    now = set(res.segments)
    for seg in now - st.open.keys():
        out.entered[seg] += 1
        w.entered.append({"contact_id": res.contact_id, "segment": seg, "entered_at": ev.as_of,
                          "exited_at": None, "rule_hash": ev.project.segments[seg].rule_hash})
    for seg in st.open.keys() - now:
        if seg in ev.project.segments:
            out.exited[seg] += 1
            w.exited.append({"b_cid": res.contact_id, "b_seg": seg})
    for gname, group in ev.project.groups.items():
        if group.kind == "lifecycle" and d.groups.get(gname) != st.groups.get(gname):
            w.groups.append({"contact_id": res.contact_id, "group_name": gname,
                             "value": d.groups.get(gname), "since": ev.as_of})
    for name, value in res.fields.items():
        if name not in st.values or _norm(st.values[name]) != value:
            w.values.append({"contact_id": res.contact_id, "name": name, "value": value,
                             "updated_at": ev.as_of})


def _norm(value: Any) -> Any:
    return number(value) if isinstance(value, float) else value


def run_evaluation(engine: Engine, project: Project, as_of_ms: int,
                   contact_ids: Sequence[int] | None, persist: bool) -> EvaluationResult:
    out = EvaluationResult(as_of_ms)
    out.sizes = dict.fromkeys(project.segments, 0)
    out.entered = dict.fromkeys(project.segments, 0)
    out.exited = dict.fromkeys(project.segments, 0)
    with (begin_write(engine) if persist else engine.connect()) as conn:
        if contact_ids is None:
            full = run_full(conn, project, as_of_ms, persist)
            if not persist:
                conn.rollback()
            return full
        ev = Evaluation(conn, project, as_of_ms, contact_ids, persist)
        writer = Writer(conn, as_of_ms)
        empty = ContactState()
        for rows, ids in ev.chunks():
            states = load_states(conn, ev.plan, ids, persist)
            for row in rows:
                st = states.get(row[0], empty)
                res, d = ev.contact(row, st)
                out.results.append(res)
                for seg in res.segments:
                    out.sizes[seg] += 1
                _record(writer, ev, res, st, d, out)
            if persist:
                writer.flush()
            else:
                writer = Writer(conn, as_of_ms)
        ev.close()
        if not persist:
            conn.rollback()
    return out
