"""Per-contact traits: one GROUP BY per event type, restricted to the widest window needed.

Every aggregate leaf of the project (``count(...)``, ``sum(...)``, sequences, score points, the
RFM aggregates) is registered here and becomes one column of its event type's *trait table*::

    SELECT e.contact_id, count(CASE WHEN <window> AND <where> THEN 1 END) AS t0, ...
    FROM events e
    WHERE e.type_id = :type AND e.ts > :as_of - <widest window> AND e.ts <= :as_of
      AND NOT <the type's exclude filter>
      [AND e.contact_id IN (:ids)]                        -- the subset path
    GROUP BY e.contact_id

Each event is read once per type (the covering index ``ix_events_contact_type_ts``), and only
the columns of its own type are evaluated for it. The whole-population path materialises each
trait table into a temporary table keyed by contact id; the subset path (real time, explain)
inlines the same SELECTs as derived tables filtered by contact id. Contacts without events of a
type get NULL columns from the LEFT JOIN; :meth:`TraitTables.column` turns those into the
documented empty values (count 0, exists false).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    FromClause,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    exists,
    false,
    func,
    insert,
    literal,
    not_,
    select,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql.type_api import TypeEngine
from sqlalchemy.types import NullType

from mapping.project import Project
from mapping.rules import ast as r
from sync.evaluate.compile import Col, ExprCompiler, as_of_param, window_condition
from sync.store.schema import BigId, contacts, events

LOG = logging.getLogger("segsync.evaluate")


@dataclass
class _TypeTraits:
    event: str
    columns: dict[object, tuple[str, Col, TypeEngine[Any]]] = field(default_factory=dict)
    lower_ms: int | None = 0  # widest "ago" start needed; None = all time
    unbounded: bool = False


@dataclass(frozen=True)
class PointsKey:
    score: str
    index: int


class TraitTables:
    """Registry of aggregate leaves, and the trait tables that compute them."""

    def __init__(self, project: Project, dialect: str, type_ids: dict[str, int]) -> None:
        self.project = project
        self.dialect = dialect
        self.type_ids = type_ids
        self._types: dict[str, _TypeTraits] = {}
        self.alias = events.alias("e")
        self.tables: dict[str, FromClause] = {}
        self.wide: Table | None = None
        self.split_types: set[str] = set()
        self.probes: dict[r.Sequence, Table] = {}
        self._counter = 0

    # ------------------------------------------------------------------ registration

    def _event(self, event: str) -> ExprCompiler:
        return ExprCompiler(self.project, self.dialect, None, None, self.alias, event)

    def _widen(self, tt: _TypeTraits, window_start: int | None) -> None:
        if window_start is None:
            tt.unbounded = True
        elif tt.lower_ms is not None:
            tt.lower_ms = max(tt.lower_ms, window_start)

    def _add(self, event: str, key: object, window_start: int | None,
             build: Any, sqltype: TypeEngine[Any]) -> None:
        tt = self._types.setdefault(event, _TypeTraits(event))
        if key in tt.columns:
            return
        self._widen(tt, window_start)
        label = f"t{self._counter}"
        self._counter += 1
        tt.columns[key] = (label, build, sqltype)

    def _window_start(self, window: r.Window) -> int | None:
        return None if window.kind == "all" else window.start_ms

    def register_agg(self, agg: r.Agg) -> None:
        if agg.func == "exists":
            agg = r.Agg("count", agg.event, None, agg.where, agg.window)
        self._add(agg.event, agg, self._window_start(agg.window), agg, _agg_type(agg.func))

    def register_sequence(self, seq: r.Sequence) -> None:
        self._add(seq.first, seq, self._window_start(seq.window), seq,
                  BigInteger() if seq.latest else Integer())

    def register_points(self, key: PointsKey) -> None:
        score = self.project.scores[key.score]
        self._add(score.points[key.index].event, key, score.window_ms, key, Float())

    # ------------------------------------------------------------------ building

    def _cond(self, event: str, window: r.Window | None, where: r.Expr | None) -> list[Col]:
        tt = self._types[event]
        parts: list[Col] = []
        if window is not None and window.kind != "all":
            same = not tt.unbounded and window.start_ms == tt.lower_ms and window.end_ms == 0
            if not same:
                parts.append(window_condition(self.alias.c.ts, window))
        if where is not None:
            parts.append(self._event(event).condition(where))
        return parts

    def excluded(self, table: FromClause, event: str) -> Col:
        """True for an event of type ``event`` in ``table`` dropped by its exclude filter."""
        rule = self.project.event_excludes.get(event)
        if rule is None:
            return false()
        return ExprCompiler(self.project, self.dialect, None, None, table, event).condition(rule)

    def _agg_arg(self, agg: r.Agg) -> Col:
        """The value an aggregate other than ``count`` reads: NULL outside its window/where."""
        e = self.alias
        parts = self._cond(agg.event, agg.window, agg.where)
        if agg.func in ("first", "last"):
            x: Col = e.c.ts
        elif isinstance(agg.of, r.Prop):
            x = self._event(agg.event).sql(agg.of)
        else:
            x = e.c.value if agg.of is None else e.c[agg.of.name]
        return case((and_(*parts), x)) if parts else x

    def _agg_sql(self, agg: r.Agg) -> Col:
        if agg.func == "count":
            parts = self._cond(agg.event, agg.window, agg.where)
            return func.count(case((and_(*parts), 1))) if parts else func.count()
        x = self._agg_arg(agg)
        if agg.func == "distinct":
            return func.count(x.distinct())
        name = {"first": "min", "last": "max"}.get(agg.func, agg.func)
        return getattr(func, name)(x)  # type: ignore[no-any-return]

    def _column_sql(self, spec: object) -> Col:
        if isinstance(spec, r.Agg):
            return self._agg_sql(spec)
        if isinstance(spec, r.Sequence):
            return self._sequence_sql(spec)
        if isinstance(spec, PointsKey):
            return self._points_sql(spec)
        raise TypeError(spec)

    def _two_level(self, tt: _TypeTraits, where: list[Col]) -> Select[Any] | None:
        """PostgreSQL: a pass holding exactly one ``count(DISTINCT x)`` as two GROUP BYs, by
        (contact, x) and then by contact, with every other aggregate split into a partial and a
        combining step (counts and sums add up, minima and maxima of parts). PostgreSQL neither
        hashes nor parallelises an aggregate with DISTINCT: it sorts the whole pass and
        aggregates it on one core, where the two-level form runs in parallel (`bench/RESULTS.md`).
        None when the pass has no such aggregate, several, or an ``avg``."""
        specs = list(tt.columns.values())
        distinct = [spec for _, spec, _ in specs if isinstance(spec, r.Agg) and spec.func == "distinct"]
        if len(distinct) != 1 or any(isinstance(spec, r.Agg) and spec.func == "avg" for _, spec, _ in specs):
            return None
        e = self.alias
        d = self._agg_arg(distinct[0])
        inner: list[Col] = [e.c.contact_id.label("contact_id"), d.label("d")]
        combine: list[tuple[str, str | None, Any]] = []
        for label, spec, sqltype in specs:
            if spec is distinct[0]:
                combine.append((label, None, sqltype))
                continue
            if isinstance(spec, r.Agg):
                how = {"count": "sum", "sum": "sum", "min": "min", "max": "max", "first": "min",
                       "last": "max"}[spec.func]
            else:
                how = "sum" if isinstance(spec, PointsKey) else "max"
            inner.append(self._column_sql(spec).label(f"p{label}"))
            combine.append((label, how, sqltype))
        part = select(*inner).where(*where).group_by(e.c.contact_id, d).subquery("pass_parts")
        outer: list[Col] = [part.c.contact_id.label("contact_id")]
        for label, step, sqltype in combine:
            col = func.count(part.c.d) if step is None else getattr(func, step)(part.c[f"p{label}"])
            outer.append(cast(col, sqltype).label(label))
        return select(*outer).group_by(part.c.contact_id)

    def _followed(self, seq: r.Sequence, a_ts: Col, contact_id: Col) -> Col:
        b = events.alias("b")
        conds = [b.c.contact_id == contact_id, b.c.type_id == self._type_id(seq.then_not),
                 b.c.ts >= a_ts, b.c.ts <= a_ts + seq.gap_ms, not_(self.excluded(b, seq.then_not))]
        if seq.then_where is not None:
            conds.append(ExprCompiler(self.project, self.dialect, None, None, b, seq.then_not)
                         .condition(seq.then_where))
        return exists(select(literal(1)).select_from(b).where(*conds))

    def _sequence_sql(self, seq: r.Sequence) -> Col:
        e = self.alias
        parts = self._cond(seq.first, seq.window, seq.where)
        if seq.latest:
            return func.max(case((and_(*parts), e.c.ts))) if parts else func.max(e.c.ts)
        parts += [e.c.ts <= as_of_param() - seq.gap_ms,
                  not_(self._followed(seq, e.c.ts, e.c.contact_id))]
        return func.max(case((and_(*parts), 1), else_=0))

    def _points_sql(self, key: PointsKey) -> Col:
        score = self.project.scores[key.score]
        rule = score.points[key.index]
        window = r.Window("within", score.window_ms) if score.window_ms is not None else None
        parts = self._cond(rule.event, window, rule.where)
        if score.half_life_ms:  # 0.5 ** (age / half_life), in floating point on every engine
            age = cast(self.alias.c.ts - as_of_param(), Float)
            weight: Col = func.exp(age * literal(math.log(2) / score.half_life_ms, Float))
        else:
            weight = literal(1.0)
        return func.sum(case((and_(*parts), weight)) if parts else weight)

    def _type_id(self, event: str) -> Col:
        return literal(self.type_ids.get(event, -1), Integer)

    def selects(self, subset: bool, *,
                split: bool = False) -> dict[str, tuple[Select[Any], list[tuple[str, Any]]]]:
        """Per event type: its trait SELECT and its (label, type) columns. ``split``
        (PostgreSQL, whole population) writes a pass with one DISTINCT aggregate in two levels
        (:meth:`_two_level`); those types are left in ``self.split_types``."""
        out: dict[str, tuple[Select[Any], list[tuple[str, Any]]]] = {}
        e = self.alias
        self.split_types = set()
        for event, tt in self._types.items():
            shape = [(label, sqltype) for label, _, sqltype in tt.columns.values()]
            where = [e.c.type_id == self._type_id(event), e.c.ts <= as_of_param(),
                     not_(self.excluded(e, event))]
            if not tt.unbounded and tt.lower_ms:
                where.append(e.c.ts > as_of_param() - tt.lower_ms)
            if subset:
                where.append(e.c.contact_id.in_(bindparam("ids", expanding=True)))
            two = self._two_level(tt, where) if split else None
            if two is not None:
                self.split_types.add(event)
                out[event] = (two, shape)
                continue
            cols = [e.c.contact_id.label("contact_id"),
                    *(self._column_sql(spec).label(label) for label, spec, _ in tt.columns.values())]
            out[event] = (select(*cols).where(*where).group_by(e.c.contact_id), shape)
        return out

    def use_subqueries(self, subset: bool) -> None:
        """Trait tables as derived tables (subset path, or an ad-hoc population scan)."""
        self.tables = {ev: sel.subquery(f"tt_{i}")
                       for i, (ev, (sel, _)) in enumerate(self.selects(subset).items())}

    def _pass_table(self, i: int, shape: list[tuple[str, Any]], md: MetaData, schema: str | None) -> Table:
        return Table(f"segsync_tt_{i}", md, Column("contact_id", BigId, primary_key=True),
                     *(Column(label, sqltype) for label, sqltype in shape), schema=schema,
                     prefixes=[] if schema else ["TEMPORARY"])

    def _pinned(self, conn: Connection, stmt: Any, hint: str) -> str:
        """SQLite text of ``stmt`` (values inlined) with the events scan pinned to ``hint``."""
        sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        return sql.replace("FROM events AS e ", f"FROM events AS e INDEXED BY {hint} ", 1)

    def materialise(self, conn: Connection, as_of_ms: int, hint: str | None = None,
                    done: dict[str, str] | None = None,
                    extra: Callable[[], list[Col]] | None = None) -> list[Table]:
        """Whole-population path: each trait table becomes a temporary table, then all of them
        one *wide* temporary table keyed by contact id (``self.wide``), which every later
        contact-level query joins once. ``hint`` names an index in (type_id, contact_id) order:
        SQLite pins the per-type passes to it and PostgreSQL aggregates them without hashing
        (:func:`create_temp_as`), so each pass streams its GROUP BY without sorting.
        ``done`` maps event types whose tables worker connections already built (see
        :meth:`pass_jobs`) to the attached schema holding them. ``extra`` returns more labelled
        contact-level columns (scores, ranked values, attributes), compiled while the trait
        accessors still read the per-type tables, which the wide table stores too (one 1M-row
        write instead of two)."""
        md = MetaData()
        made: list[Table] = []
        scratch: list[Table] = []
        passes = self.selects(False, split=self.dialect == "postgresql")
        for i, (event, (sel, shape)) in enumerate(passes.items()):
            if done is not None and event in done:
                scratch.append(self._pass_table(i, shape, md, done[event]))
                continue
            table = self._pass_table(i, shape, md, None)
            made.append(table)
            if self.dialect == "postgresql":  # columns are named as the table object says
                streamed = hint is not None and event not in self.split_types
                create_temp_as(conn, table.name, sel, as_of_ms, streamed=streamed)
                continue
            table.create(conn)
            names = ["contact_id", *(s[0] for s in shape)]
            stmt = insert(table).from_select(names, sel.params(as_of=as_of_ms))
            if hint is not None and self.dialect == "sqlite":
                conn.exec_driver_sql(self._pinned(conn, stmt, hint))
            else:
                conn.execute(stmt)
        every = made + scratch
        if not every:
            return made
        by_type = {t.name: t for t in every}
        self.tables = {ev: by_type[f"segsync_tt_{i}"] for i, ev in enumerate(passes)}
        cols: list[Col] = [c for t in every for c in t.c if c.name != "contact_id"]
        more = extra() if extra is not None else []
        wide = Table("segsync_wide", md, Column("contact_id", BigId, primary_key=True),
                     *(Column(c.name, c.type) for c in cols),
                     *(Column(c.name, String() if isinstance(c.type, NullType) else c.type) for c in more),
                     prefixes=["TEMPORARY"])
        source: FromClause = contacts
        for t in every:
            source = source.outerjoin(t, t.c.contact_id == contacts.c.id)
        cols += more
        if self.dialect == "postgresql":
            typed = [cast(c, wide.c[c.name].type).label(c.name) for c in cols]
            query = select(contacts.c.id.label("contact_id"), *typed).select_from(source)
            create_temp_as(conn, wide.name, query, as_of_ms)
        else:
            wide.create(conn)
            conn.execute(insert(wide).from_select(["contact_id", *(c.name for c in cols)],
                                                  select(contacts.c.id, *cols).select_from(source)),
                         {"as_of": as_of_ms})
        for t in made:
            t.drop(conn)
        self.wide = wide
        self.tables = dict.fromkeys(passes, wide)
        return [wide, *self._latest_probes(conn, wide, md, as_of_ms)]

    def _latest_probes(self, conn: Connection, wide: Table, md: MetaData, as_of_ms: int) -> list[Table]:
        """PostgreSQL: for each ``latest`` sequence, the contacts whose latest A is not followed
        by a B in time, as a table (``segsync_sq<k>``) built by one anti-join over the wide
        table. Left in the verdicts as a correlated probe, it made their whole plan
        parallel-restricted (a ``SubPlan`` runs in the leader only); as a table the verdicts
        only join it (:meth:`sequence`)."""
        if self.dialect != "postgresql":
            return []
        made: list[Table] = []
        for tt in self._types.values():
            for label, spec, _ in tt.columns.values():
                if not (isinstance(spec, r.Sequence) and spec.latest):
                    continue
                col = wide.c[label]
                table = Table(f"segsync_sq{len(made)}", md, Column("contact_id", BigId, primary_key=True))
                query = select(wide.c.contact_id.label("contact_id")).where(
                    col.is_not(None), col <= as_of_param() - spec.gap_ms,
                    not_(self._followed(spec, col, wide.c.contact_id)))
                create_temp_as(conn, table.name, query, as_of_ms)
                self.probes[spec] = table
                made.append(table)
        return made

    def pass_jobs(self, conn: Connection, as_of_ms: int, hint: str | None) -> list[tuple[str, list[str]]]:
        """Per event type, the statements that build its trait table in the attached schema
        ``w`` of a worker connection (:mod:`sync.evaluate.parallel`): SQLite text with the
        values inlined. Types that read JSON properties come first (they take longest)."""
        md = MetaData()
        jobs: list[tuple[int, str, list[str]]] = []
        for i, (event, (sel, shape)) in enumerate(self.selects(False).items()):
            table = self._pass_table(i, shape, md, "w")
            ddl = str(CreateTable(table).compile(dialect=conn.dialect))
            names = ["contact_id", *(s[0] for s in shape)]
            stmt = insert(table).from_select(names, sel.params(as_of=as_of_ms))
            sql = (self._pinned(conn, stmt, hint) if hint is not None else
                   str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})))
            jobs.append((-sql.count("properties"), event, [ddl, sql]))
        return [(event, sqls) for _, event, sqls in sorted(jobs, key=lambda j: j[0])]

    # ------------------------------------------------------------------ contact level

    def joins(self, contacts: FromClause) -> FromClause:
        if self.wide is not None:
            joined: FromClause = contacts.outerjoin(self.wide, self.wide.c.contact_id == contacts.c.id)
            for probe in self.probes.values():
                joined = joined.outerjoin(probe, probe.c.contact_id == contacts.c.id)
            return joined
        joined = contacts
        for table in self.tables.values():
            joined = joined.outerjoin(table, table.c.contact_id == contacts.c.id)
        return joined

    def _raw(self, event: str, key: object) -> Col:
        label = self._types[event].columns[key][0]
        return self.tables[event].c[label]

    def agg(self, agg: r.Agg) -> Col:
        if agg.func == "exists":
            count = self.agg(r.Agg("count", agg.event, None, agg.where, agg.window))
            return count > 0
        col = self._raw(agg.event, agg)
        return func.coalesce(col, 0) if agg.func in ("count", "distinct") else col

    def sequence(self, seq: r.Sequence, contacts: FromClause) -> Col:
        col = self._raw(seq.first, seq)
        if not seq.latest:
            return func.coalesce(col, 0) > 0
        if seq in self.probes:
            return self.probes[seq].c.contact_id.is_not(None)
        return func.coalesce(and_(col.is_not(None), col <= as_of_param() - seq.gap_ms,
                                  not_(self._followed(seq, col, contacts.c.id))), false())

    def points(self, key: PointsKey) -> Col:
        return func.coalesce(self._raw(self.project.scores[key.score].points[key.index].event, key),
                             0.0)

    def passes(self) -> int:
        """How many per-type passes the whole-population path runs."""
        return len(self._types)

    def empty(self) -> bool:
        return not self._types


PG_WORKSPACE_KEY = "segsync_pg_workspace"  # conn.info: the run's schema, while a run has one


def _open_pg_workspace(conn: Connection) -> str | None:
    """PostgreSQL: a schema of the run's own (``segsync_run_<backend pid>``) put first on the
    transaction's search path, so the big working tables (:func:`create_temp_as`) are UNLOGGED
    tables instead of temporary ones. Parallel workers cannot read a temporary table (it lives
    in the session's local buffers), so every join over the trait tables ran in one process on
    one core; an unlogged table is read by the whole parallel plan. The schema is created in
    the run's transaction and dropped before it ends (:func:`pg_workspace`), so no other
    session ever sees it and a failed run leaves nothing behind; the backend pid keeps two
    concurrent runs apart. Without the CREATE privilege on the database this answers None and
    the run keeps temporary tables."""
    pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    name = f"segsync_run_{int(pid)}"
    try:
        with conn.begin_nested():
            conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    except DBAPIError as e:
        LOG.info("working tables stay temporary (no schema of the run's own: %s)",
                 str(e.orig).strip().splitlines()[0] if e.orig else e)
        return None
    path = str(conn.exec_driver_sql("SHOW search_path").scalar_one()).strip()
    conn.exec_driver_sql(f"SET LOCAL search_path = {name}" + (f", {path}" if path else ""))
    conn.info[PG_WORKSPACE_KEY] = name
    return name


def scratch_prefix(conn: Connection) -> str:
    """``CREATE <prefix> TABLE`` for a working table: UNLOGGED inside a run's workspace."""
    return "UNLOGGED" if conn.info.get(PG_WORKSPACE_KEY) else "TEMPORARY"


@contextmanager
def pg_workspace(conn: Connection) -> Iterator[None]:
    """The run's workspace (:func:`_open_pg_workspace`) on PostgreSQL, for the ``with`` body;
    dropped after a body that succeeds (a failed one is rolled back with its transaction)."""
    name = _open_pg_workspace(conn) if conn.dialect.name == "postgresql" else None
    try:
        yield
    finally:
        conn.info.pop(PG_WORKSPACE_KEY, None)
    if name is not None:
        conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")


def create_temp_as(conn: Connection, name: str, query: Select[Any], as_of_ms: int, *,
                   streamed: bool = False) -> None:
    """PostgreSQL: ``CREATE TEMPORARY TABLE name AS query`` (values inlined), then ANALYZE; an
    UNLOGGED table in the run's own schema when it has one (:func:`pg_workspace`).
    CREATE TABLE AS may run its SELECT with parallel workers, INSERT ... SELECT never does
    (PostgreSQL 15), and no index is kept up row by row; autovacuum never analyses temporary
    tables. The query's column labels name the table's columns.

    ``streamed`` (a per-type pass over an index in (type_id, contact_id) order) turns hash
    aggregation off for the statement: the planner then aggregates each worker's share of the
    index as it streams (partial GroupAggregate, a cheap merge), where it otherwise builds a
    hash table of every contact in each worker and merges them in the leader on one core (the
    opens pass: 3.5 s -> 1.9 s at 1M contacts, `bench/RESULTS.md`)."""
    sql = query.params(as_of=as_of_ms).compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    if streamed:  # no reset on failure: the transaction is aborted, and SET LOCAL ends with it
        conn.exec_driver_sql("SET LOCAL enable_hashagg = off")
    conn.exec_driver_sql(f"CREATE {scratch_prefix(conn)} TABLE {name} AS {sql}")
    if streamed:
        conn.exec_driver_sql("SET LOCAL enable_hashagg TO DEFAULT")
    conn.exec_driver_sql(f"ANALYZE {name}")


def _agg_type(fn: str) -> TypeEngine[Any]:
    if fn in ("count", "distinct", "first", "last"):
        return BigInteger()
    return Float()


