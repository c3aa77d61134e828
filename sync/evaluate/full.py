"""The whole-population path, set-based end to end.

1. Traits: one grouped pass per event type into temporary tables (SQLite: pinned to the
   type-first index, so each pass streams in contact order), joined once into ``segsync_wide``.
2. Rank cut-offs from the wide table (stored for the subset path when persisting).
3. ``segsync_res``: per contact its key, the pure segments' verdicts as bit masks (``m0``, ...),
   the pure fields, and the inputs of the stateful segments; those are decided once per
   distinct tuple (:mod:`sync.evaluate.fullstate`) and joined in as ``segsync_fin``.
4. Changes: ``segsync_chg`` holds the contacts whose mask differs from their open memberships;
   the (mask, previous mask) pairs, counted with one GROUP BY, give ``entered`` / ``exited``
   and, expanded in Python into ``segsync_pairs`` (pair -> segment), drive one
   ``INSERT ... SELECT`` of the entries and one ``UPDATE`` of the exits. Sizes come from a
   GROUP BY of the masks. Group stages and computed values are compared in SQL and only the
   changed rows are written.
5. Results: compact rows (id, key, masks, fields), turned into ``ContactResult`` on demand.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    MetaData,
    String,
    Table,
    and_,
    case,
    cast,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.types import NullType

from mapping.project import Project
from mapping.rules import ast as r
from sync.evaluate.compile import Col, type_of
from sync.evaluate.fullstate import SQL_TYPES, WORD, StateTuples, bit_of
from sync.evaluate.parallel import Scratch, open_scratch, run_passes
from sync.evaluate.plan import Plan, convert
from sync.evaluate.ranks import bump_version, compute_cutoffs, store_cutoffs
from sync.evaluate.results import ContactResult, EvaluationResult
from sync.evaluate.scores import score_sql
from sync.evaluate.state import Writer
from sync.evaluate.traits import create_temp_as, pg_workspace, scratch_prefix
from sync.store.schema import BigId, computed_values, contacts, event_types, group_state, memberships
from sync.store.tx import WRITE_OPTION

TYPE_FIRST_INDEX = "ix_events_type_contact_ts"
SQLITE_CACHE_KIB = 256_000  # page cache for the run (the default 2 MB re-reads the events index)
ANALYZE_AFTER_ROWS = 100_000  # PostgreSQL: a run that writes this many membership rows analyses them


def ensure_math(conn: Connection) -> None:
    """Register ``power`` / ``exp`` on SQLite builds compiled without math functions."""
    if conn.dialect.name != "sqlite" or conn.connection.info.get("segsync_math"):
        return
    raw: Any = conn.connection.driver_connection
    try:
        raw.execute("SELECT power(2, 1), exp(0)").fetchone()
    except Exception:  # noqa: BLE001 - sqlite3.OperationalError: no such function
        raw.create_function("power", 2, lambda a, b: None if a is None or b is None else math.pow(a, b),
                            deterministic=True)
        raw.create_function("exp", 1, lambda a: None if a is None else math.exp(a), deterministic=True)
    conn.connection.info["segsync_math"] = True  # kept with the DBAPI connection


def _session(conn: Connection) -> str:
    """Session settings for a big read; returns the name of the type-first events index when
    the store has it (SQLite pins the passes to it; PostgreSQL streams them), else ""."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL work_mem = '256MB'")
        # JIT stays on, without LLVM's inlining and optimisation passes: for the verdict statement
        # (thirty segments' expressions) they took ~2.4 s of compile in the leader and ~0.8 s in
        # each worker, more than they saved over 1M rows (res 2.2-2.3 s -> 1.6-1.8 s)
        conn.exec_driver_sql("SET LOCAL jit_inline_above_cost = -1")
        conn.exec_driver_sql("SET LOCAL jit_optimize_above_cost = -1")
        found = conn.exec_driver_sql(f"SELECT to_regclass('{TYPE_FIRST_INDEX}')").scalar()
        return TYPE_FIRST_INDEX if found is not None else ""
    conn.exec_driver_sql(f"PRAGMA main.cache_size = -{SQLITE_CACHE_KIB}")
    conn.exec_driver_sql(f"PRAGMA temp.cache_size = -{SQLITE_CACHE_KIB // 2}")
    found = conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?",
                                 (TYPE_FIRST_INDEX,)).first()
    return TYPE_FIRST_INDEX if found else ""


class FullRun:
    def __init__(self, conn: Connection, project: Project, as_of: int, persist: bool) -> None:
        self.conn, self.project, self.as_of, self.persist = conn, project, as_of, persist
        self.md = MetaData()
        self.temps: list[Table] = []
        self.prev: Table | None = None
        self.derived: Table | None = None
        self.index = {name: i for i, name in enumerate(project.segments)}
        self.words = max(1, (len(project.segments) + WORD - 1) // WORD)

    def _temp(self, name: str, *cols: Column[Any]) -> Table:
        t = Table(name, self.md, *cols, prefixes=[scratch_prefix(self.conn)])
        t.create(self.conn)
        self.temps.append(t)
        return t

    def _filled(self, name: str, cols: list[Column[Any]], query: Any, *, streamed: bool = False) -> Table:
        """A temporary table ``name`` of ``cols`` holding the rows of ``query`` (one column per
        column, in order); on PostgreSQL by :func:`create_temp_as` (``streamed``: see there)."""
        if self.conn.dialect.name != "postgresql":
            table = self._temp(name, *cols)
            self.conn.execute(insert(table).from_select([c.name for c in cols], query), {"as_of": self.as_of})
            return table
        table = Table(name, self.md, *cols, prefixes=["TEMPORARY"])
        pairs = zip(query.selected_columns, cols, strict=True)
        named = [cast(qc, col.type).label(col.name) for qc, col in pairs]
        create_temp_as(self.conn, name, query.with_only_columns(*named), self.as_of, streamed=streamed)
        self.temps.append(table)
        return table

    def _masks(self, names: list[str], verdict: dict[str, Col]) -> list[Col]:
        masks: list[Col] = []
        for w in range(self.words):
            parts = [case((verdict[n], bit_of(self.index[n])[1]), else_=0)
                     for n in names if bit_of(self.index[n])[0] == w]
            total: Col = literal(0, BigInteger)
            for p in parts:
                total = total + p
            masks.append(total)
        return masks

    def run(self, plan: Plan, scratch: Scratch | None) -> EvaluationResult:
        conn, as_of = self.conn, self.as_of
        if self.persist:
            bump_version(conn, as_of)  # the first statement: takes the write lock
        read: dict[str, Any] = {}

        def first_read() -> None:
            read["hint"] = _session(conn)
            plan.traits.type_ids = dict(conn.execute(select(event_types.c.name, event_types.c.id)).all())

        done = run_passes(conn, scratch, first_read,
                          lambda: plan.traits.pass_jobs(conn, as_of, read["hint"] or None), self._prev)
        hint = read["hint"]
        plan.resolver.mode = "final"
        self.temps += plan.traits.materialise(conn, as_of, hint or None, done,
                                              lambda: self._derived_cols(plan))
        if plan.traits.wide is not None:  # it holds the scores, ranked values and attributes too
            self._use_derived(plan, plan.traits.wide)
            source = plan.traits.joins(contacts)
            ranked: Any = plan.traits.wide
        else:
            source = self._derived(plan, plan.traits.joins(contacts))
            ranked = self.derived if self.derived is not None else source  # one row per contact either way
        ranks = list(plan.resolver.ranks.items())
        xs = [plan.resolver.x(spec) for _, spec in ranks]
        totals = list(conn.execute(select(*(func.count(x) for x in xs)).select_from(ranked),
                                   {"as_of": as_of}).one()) if xs else []
        for (key, spec), x, total in zip(ranks, xs, totals, strict=True):
            cut = compute_cutoffs(conn, ranked, x, spec.n, as_of, total=int(total))
            if self.persist:
                store_cutoffs(conn, key, cut, as_of)
            plan.resolver.cutoffs[key] = cut
        plan.compile()
        fin, fields = self._result(plan, source)
        out = EvaluationResult(as_of)
        self._changes(fin, out)
        if self.persist:
            self._write_values(fin, fields, plan)
        self._results(fin, fields, out)
        for t in reversed(self.temps):
            t.drop(conn)
        return out

    def _derived_cols(self, plan: Plan) -> list[Col]:
        """Scores (``s<i>``, as floats), ranked values (``x<i>``, floats) and the non-list
        attributes (``at<i>``), computed once per contact (rules then compare a column instead
        of re-evaluating a score or a JSON extraction in every CASE branch)."""
        res = plan.resolver
        cols: list[Col] = [cast(score_sql(self.project.scores[n], plan.traits.points, self.conn.dialect.name),
                                Float).label(f"s{i}") for i, n in enumerate(sorted(res.scores_used))]
        cols += [cast(res.x(res.ranks[k]), Float).label(f"x{i}") for i, k in enumerate(sorted(res.ranks))]
        attrs = [n for n, t in self.project.attributes.items() if t is not r.Type.LIST]
        return cols + [plan.compiler.attribute(n).label(f"at{i}") for i, n in enumerate(attrs)]

    def _use_derived(self, plan: Plan, table: Table) -> None:
        """Point the resolver and the compiler at the derived columns stored in ``table``."""
        res = plan.resolver
        res.score_cols = {n: table.c[f"s{i}"] for i, n in enumerate(sorted(res.scores_used))}
        res.rank_x = {k: table.c[f"x{i}"] for i, k in enumerate(sorted(res.ranks))}
        attrs = [n for n, t in self.project.attributes.items() if t is not r.Type.LIST]
        plan.compiler.attr_cols = {n: table.c[f"at{i}"] for i, n in enumerate(attrs)}

    def _derived(self, plan: Plan, source: Any) -> Any:
        """The derived columns (:meth:`_derived_cols`) in their own ``segsync_derived`` table,
        when there is no wide trait table to hold them (no event traits)."""
        cols = self._derived_cols(plan)
        if not cols:
            return source
        derived = self.derived = self._temp("segsync_derived", Column("contact_id", BigId, primary_key=True),
                                            *(Column(c.name, _ddl_type(c.type)) for c in cols))
        self.conn.execute(insert(derived).from_select(
            ["contact_id", *(c.name for c in cols)], select(contacts.c.id, *cols).select_from(source)),
            {"as_of": self.as_of})
        if self.conn.dialect.name == "postgresql":
            self.conn.exec_driver_sql("ANALYZE segsync_derived")
        self._use_derived(plan, derived)
        return source.outerjoin(derived, derived.c.contact_id == contacts.c.id)

    # ------------------------------------------------------------------ result table

    def _result(self, plan: Plan, source: Any) -> tuple[Any, dict[str, tuple[str, Any]]]:
        """``segsync_fin`` (or ``segsync_res`` when nothing is stateful) and its field columns
        (output name -> (column, converter))."""
        conn, project = self.conn, self.project
        pure = [n for n in project.segments if n not in plan.stateful]
        verdict = {n: plan.atoms[plan.segments[n].verdict][0] for n in pure}
        field_types = {n: type_of(project, e) for n, e in project.fields.items()}
        sql_fields = {n: plan.compiler.sql(e) for n, e in project.fields.items() if not plan.stateful_refs(e)}
        stt = StateTuples(plan, self.as_of) if plan.stateful else None
        cols: list[Col] = [contacts.c.id.label("contact_id"),
                           func.coalesce(contacts.c.email, contacts.c.external_id).label("key")]
        cols += [m.label(f"m{w}") for w, m in enumerate(self._masks(pure, verdict))]
        cols += [sql.label(f"f{k}") for k, sql in enumerate(sql_fields.values())]
        if stt is not None:
            for st_table in stt.state_tables(conn, self.md):
                self.temps.append(st_table)
                source = source.outerjoin(st_table, st_table.c.contact_id == contacts.c.id)
                cols += [c for c in st_table.c if c.name != "contact_id"]
            cols += [plan.atoms[i][0].label(f"a{i}") for i in stt.atoms]
        ddl = {f"f{k}": SQL_TYPES[field_types[n]] for k, n in enumerate(sql_fields)}
        res_ddl: list[Column[Any]] = [Column("contact_id", BigId, primary_key=True),
                                      *(Column(c.name, ddl.get(c.name, _ddl_type(c.type))) for c in cols[1:])]
        res = self._filled("segsync_res", res_ddl, select(*cols).select_from(source))
        fields = {n: (f"f{k}", convert(field_types[n])) for k, n in enumerate(sql_fields)}
        if stt is None:
            return res, fields
        dec = stt.decide_all(conn, res, self.md, field_types)
        self.temps.append(dec)
        key = stt.key(res, conn.dialect.name)
        fcols: list[Col] = [res.c.contact_id, res.c.key]
        fcols += [(res.c[f"m{w}"] + func.coalesce(dec.c[f"sm{w}"], 0)).label(f"m{w}")
                  for w in range(self.words)]
        fcols += [res.c[f"f{k}"] for k in range(len(sql_fields))]
        fcols += [dec.c[f"pf{k}"] for k in range(len(stt.py_fields))]
        fcols += [dec.c[f"gv{k}"] for k in range(len(project.groups))]
        fin = self._temp("segsync_fin", Column("contact_id", BigId, primary_key=True),
                         *(Column(c.name, _ddl_type(c.type)) for c in fcols[1:]))
        conn.execute(insert(fin).from_select([c.name for c in fcols], select(*fcols).select_from(
            res.outerjoin(dec, dec.c.tkey == key))))
        for k, n in enumerate(stt.py_fields):
            fields[n] = (f"pf{k}", convert(field_types[n]))
        for k, g in enumerate(project.groups.values()):
            fields[g.field or g.name] = (f"gv{k}", convert(r.Type.STRING))
        return fin, fields

    # ------------------------------------------------------------------ memberships

    def _prev(self) -> Table:
        """``segsync_prev``: per contact the masks of its open memberships."""
        if self.prev is not None:
            return self.prev
        m, words, names = memberships.c, self.words, list(self.project.segments)
        pcols_ddl: list[Column[Any]] = [Column("contact_id", BigId, primary_key=True),
                                        *(Column(f"p{w}", BigInteger) for w in range(words))]
        if not names:
            self.prev = self._temp("segsync_prev", *pcols_ddl)
            return self.prev
        # segment -> (word, bit) as a tiny table: one index probe per open membership instead of
        # a CASE over every segment name; the open rows come from ix_memberships_open_contact
        bits = self._temp("segsync_bits", Column("segment", String(128), primary_key=True),
                          Column("word", BigInteger), Column("bit", BigInteger))
        self.conn.execute(insert(bits), [{"segment": n, "word": bit_of(self.index[n])[0],
                                          "bit": bit_of(self.index[n])[1]} for n in names])
        pcols = [func.sum(case((bits.c.word == w, bits.c.bit), else_=0)) for w in range(words)]
        joined = memberships.join(bits, bits.c.segment == m.segment)
        open_rows = (select(m.contact_id, *pcols).select_from(joined).where(m.exited_at.is_(None))
                     .group_by(m.contact_id))
        # grouped as ix_memberships_open_contact streams them, not in a hash table of every contact
        self.prev = self._filled("segsync_prev", pcols_ddl, open_rows, streamed=True)
        return self.prev

    def _changes(self, fin: Any, out: EvaluationResult) -> None:
        conn, project, words = self.conn, self.project, self.words
        m = memberships.c
        names = list(project.segments)
        prev = self._prev()
        chg = self._temp("segsync_chg", Column("contact_id", BigId, primary_key=True),
                         *(Column(f"{x}{w}", BigInteger) for x in "mp" for w in range(words)))
        now = [fin.c[f"m{w}"] for w in range(words)]
        was = [func.coalesce(prev.c[f"p{w}"], 0) for w in range(words)]
        conn.execute(insert(chg).from_select(
            ["contact_id", *(f"{x}{w}" for x in "mp" for w in range(words))],
            select(fin.c.contact_id, *now, *was)
            .select_from(fin.outerjoin(prev, prev.c.contact_id == fin.c.contact_id))
            .where(or_(*(a != b for a, b in zip(now, was, strict=True))))))
        sizes: Counter[str] = Counter()
        for row in conn.execute(select(*now, func.count()).group_by(*now)):
            for n in names:
                word, bit = bit_of(self.index[n])
                if row[word] & bit:
                    sizes[n] += row[-1]
        entered: Counter[str] = Counter()
        exited: Counter[str] = Counter()
        pairs: list[dict[str, Any]] = []
        cm = [chg.c[f"m{w}"] for w in range(words)]
        cp = [chg.c[f"p{w}"] for w in range(words)]
        for row in conn.execute(select(*cm, *cp, func.count()).group_by(*cm, *cp)):
            key = {f"{x}{w}": row[i * words + w] for i, x in enumerate("mp") for w in range(words)}
            for n in names:
                word, bit = bit_of(self.index[n])
                now_in, was_in = bool(row[word] & bit), bool(row[words + word] & bit)
                if now_in != was_in:
                    (entered if now_in else exited)[n] += row[-1]
                    pairs.append({**key, "segment": n, "enter": int(now_in)})
        out.sizes = {n: sizes[n] for n in names}
        out.entered = {n: entered[n] for n in names}
        out.exited = {n: exited[n] for n in names}
        if not self.persist or not pairs:
            return
        pt = self._temp("segsync_pairs", *(Column(f"{x}{w}", BigInteger) for x in "mp" for w in range(words)),
                        Column("segment", String(128)), Column("enter", BigInteger))
        conn.execute(insert(pt), pairs)
        if conn.dialect.name == "postgresql":  # autovacuum never analyses temporary tables
            conn.exec_driver_sql("ANALYZE segsync_chg")
            conn.exec_driver_sql("ANALYZE segsync_pairs")
        on = and_(*(col == pt.c[col.name] for col in chg.c if col.name != "contact_id"))
        if any(not p["enter"] for p in pairs):  # exits first: the table then holds only known rows
            gone = (select(chg.c.contact_id, pt.c.segment).select_from(chg.join(pt, on))
                    .where(pt.c.enter == 0).subquery("gone"))
            conn.execute(update(memberships).where(m.contact_id == gone.c.contact_id,
                                                   m.segment == gone.c.segment, m.exited_at.is_(None))
                         .values(exited_at=self.as_of))
        if any(p["enter"] for p in pairs):
            hashes = case({n: s.rule_hash for n, s in project.segments.items()}, value=pt.c.segment)
            entries = (select(chg.c.contact_id, pt.c.segment, literal(self.as_of, BigInteger), hashes)
                       .select_from(chg.join(pt, on)).where(pt.c.enter == 1))
            if conn.dialect.name == "sqlite":  # contacts outside: rows arrive in key order, so the
                entries = entries.order_by(chg.c.contact_id)  # B-tree inserts append (3x faster)
            self._insert_entries(entries)
        written = sum(out.entered.values()) + sum(out.exited.values())
        if conn.dialect.name == "postgresql" and written >= ANALYZE_AFTER_ROWS:
            # autovacuum analyses within a minute or so; a run that starts before then would plan
            # the open memberships from the old statistics (a first run: 0 rows -> 2.9M)
            conn.exec_driver_sql("ANALYZE memberships")

    def _insert_entries(self, entries: Any) -> None:
        ins = postgresql.insert if self.conn.dialect.name == "postgresql" else sqlite.insert
        stmt = ins(memberships).from_select(["contact_id", "segment", "entered_at", "rule_hash"], entries)
        m = memberships.c
        # a row an entry could collide with (entered at this instant) is closed, so it exited at or
        # after it; with none such (ix_memberships_segment_open), a plain INSERT is enough
        reopen = self.conn.execute(select(m.segment).where(m.segment.in_(list(self.project.segments)),
                                                           m.exited_at >= self.as_of).limit(1)).first()
        if reopen is None:
            self.conn.execute(stmt)
            return
        # re-entering at the same instant as an earlier exit reopens that row (the SELECT has a
        # WHERE, so SQLite parses the upsert clause unambiguously)
        self.conn.execute(stmt.on_conflict_do_update(index_elements=["contact_id", "segment", "entered_at"],
                                                     set_={"exited_at": None}))

    # ------------------------------------------------------------------ values and results

    def _write_values(self, fin: Any, fields: dict[str, tuple[str, Any]], plan: Plan) -> None:
        conn = self.conn
        writer = Writer(conn, self.as_of)
        pg = conn.dialect.name == "postgresql"
        for name, (col, conv) in fields.items():
            cv = computed_values.alias("cv")
            new = fin.c[col]
            if pg:
                changed = func.coalesce(text("cv.value::jsonb"), text("'null'::jsonb")).is_distinct_from(
                    func.coalesce(func.to_jsonb(new), text("'null'::jsonb")))
            else:
                changed = func.json_extract(cv.c.value, "$").is_not(new)
            q = (select(fin.c.contact_id, new).select_from(fin.outerjoin(
                cv, and_(cv.c.contact_id == fin.c.contact_id, cv.c.name == name))).where(changed))
            for cid, value in conn.execute(q):
                writer.values.append({"contact_id": cid, "name": name, "value": conv(value),
                                      "updated_at": self.as_of})
                if len(writer.values) >= 5000:
                    writer.flush()
        g = group_state.c
        for k, group in enumerate(self.project.groups.values()):
            if group.kind != "lifecycle":
                continue
            new = fin.c[f"gv{k}"]
            on = and_(g.contact_id == fin.c.contact_id, g.group_name == group.name)
            joined = fin.outerjoin(group_state, on)
            q = select(fin.c.contact_id, new).select_from(joined).where(g.value.is_distinct_from(new))
            for cid, value in conn.execute(q):
                writer.groups.append({"contact_id": cid, "group_name": group.name, "value": value,
                                      "since": self.as_of})
        writer.flush()

    def _results(self, fin: Any, fields: dict[str, tuple[str, Any]], out: EvaluationResult) -> None:
        words = self.words
        names = sorted(self.project.segments)
        bits = [(n, *bit_of(self.index[n])) for n in names]
        convs = [(name, conv) for name, (_, conv) in fields.items()]
        cols = [fin.c.contact_id, fin.c.key, *(fin.c[f"m{w}"] for w in range(words)),
                *(fin.c[c] for c, _ in fields.values())]
        rows = self._rows(select(*cols).order_by(fin.c.contact_id))
        cache: dict[tuple[int, ...], tuple[str, ...]] = {}

        def build(row: Any) -> ContactResult:
            masks = tuple(row[2:2 + words])
            segs = cache.get(masks)
            if segs is None:
                segs = cache[masks] = tuple(n for n, w, b in bits if masks[w] & b)
            values = {name: conv(row[2 + words + k]) for k, (name, conv) in enumerate(convs)}
            return ContactResult(row[0], row[1], segs, values)

        out.deferred(rows, build)

    def _rows(self, query: Any) -> list[Any]:
        """All rows of ``query``; on SQLite as the driver's plain tuples (a million SQLAlchemy
        rows cost a second and ~100 MB more), JSON columns decoded as SQLAlchemy would."""
        if self.conn.dialect.name != "sqlite":
            return list(self.conn.execute(query).all())
        sql = str(query.compile(dialect=self.conn.dialect, compile_kwargs={"literal_binds": True}))
        raw: Any = self.conn.connection.driver_connection
        rows: list[Any] = raw.execute(sql).fetchall()
        decode = [i for i, c in enumerate(query.selected_columns) if isinstance(c.type, JSON)]
        if decode and rows:
            def fix(row: tuple[Any, ...]) -> tuple[Any, ...]:
                cells = list(row)
                for i in decode:
                    if isinstance(cells[i], str):
                        cells[i] = json.loads(cells[i])
                return tuple(cells)
            rows = [fix(r) for r in rows]
        return rows


def _ddl_type(t: Any) -> Any:
    return String() if isinstance(t, NullType) else t


def run_full(engine: Engine, project: Project, as_of: int, persist: bool) -> EvaluationResult:
    """The whole population, in one transaction (rolled back for a dry run)."""
    with engine.connect() as conn:
        ensure_math(conn)
        plan = Plan(project, conn.dialect.name, {})
        plan.compile()  # collect mode: registers trait columns and ranked expressions
        scratch = open_scratch(conn, plan.traits.passes())
        try:
            if persist and scratch is None:
                conn.execution_options(**{WRITE_OPTION: True})  # SQLite: BEGIN IMMEDIATE
            with conn.begin() as tx:
                with pg_workspace(conn):
                    out = FullRun(conn, project, as_of, persist).run(plan, scratch)
                if not persist:
                    tx.rollback()
            return out
        finally:
            if scratch is not None:
                scratch.close()

