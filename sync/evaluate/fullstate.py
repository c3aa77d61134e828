"""Stateful verdicts on the whole-population path, decided once per distinct input tuple.

A stateful segment's verdict (``sync.evaluate.state.decide``) is a function of a few SQL atoms
(the parts of its rules that do not depend on other stateful segments) and of the contact's
stored state reduced to what the rules look at, as of ``as_of``: per stateful segment "open",
"inside min_dwell" and "cooling down", and per lifecycle group the stored stage. Those are
columns of the result table; the distinct tuples (typically a few dozen, never more than the
contacts) are read into Python, decided with the same :func:`decide` the subset path uses, and
written back as a small table ``segsync_dec`` keyed by the tuple's text, which the result
table joins. Nothing is decided per contact in Python.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    MetaData,
    String,
    Table,
    Text,
    and_,
    case,
    cast,
    column,
    func,
    insert,
    literal,
    select,
    table,
)
from sqlalchemy.sql.type_api import TypeEngine

from mapping.rules import ast as r
from sync.evaluate.compile import Col, type_of
from sync.evaluate.plan import Plan, PNode, convert, peval
from sync.evaluate.state import ContactState, decide
from sync.evaluate.traits import scratch_prefix
from sync.store.schema import BigId, group_state, memberships

WORD = 60  # segments per mask word (bits of a BIGINT, sign bit unused)
SQL_TYPES: dict[r.Type, TypeEngine[Any]] = {r.Type.NUMBER: Float(), r.Type.STRING: String(),
                                              r.Type.BOOL: Boolean(), r.Type.DATETIME: BigInteger(),
                                              r.Type.LIST: JSON()}


def atoms_of(node: PNode, out: set[int]) -> set[int]:
    kind = node[0]
    if kind == "atom":
        out.add(node[1])
    elif kind in ("and", "or"):
        for item in node[1]:
            atoms_of(item, out)
    elif kind in ("not", "call"):
        atoms_of(node[1], out)
    elif kind in ("eq", "coalesce"):
        atoms_of(node[1], out)
        atoms_of(node[2], out)
    return out


def bit_of(index: int) -> tuple[int, int]:
    """(mask word, bit) of the segment at ``index`` in project order."""
    return index // WORD, 1 << (index % WORD)


class StateTuples:
    """The stateful part of a plan (``plan.stateful`` non-empty), see the module docstring."""

    def __init__(self, plan: Plan, as_of: int) -> None:
        self.plan, self.as_of = plan, as_of
        project = plan.project
        self.segs = [n for n in project.segments if n in plan.stateful]
        self.lifecycle = [g.name for g in project.groups.values() if g.kind == "lifecycle"]
        self.py_fields = [n for n, e in project.fields.items() if plan.stateful_refs(e)]
        atoms: set[int] = set()
        for name in self.segs:
            sp = plan.segments[name]
            for node in (sp.rule, sp.exclude, *(f for f, _ in sp.flags)):
                if node is not None:
                    atoms_of(node, atoms)
        for name in self.py_fields:
            atoms_of(plan.fields[name], atoms)
        self.atoms = sorted(atoms)
        self.state_cols: list[str] = []
        for j, name in enumerate(self.segs):
            seg = project.segments[name]
            self.state_cols += [f"so{j}"] + ([f"sd{j}"] if seg.min_dwell_ms else []) \
                + ([f"sc{j}"] if seg.cooldown_ms else [])
        self.state_cols += [f"sg{k}" for k in range(len(self.lifecycle))]
        self.words = (len(project.segments) + WORD - 1) // WORD

    # ------------------------------------------------------------------ stored state

    def state_tables(self, conn: Connection, md: MetaData) -> list[Table]:
        """``segsync_stm`` (membership flags) and ``segsync_stg`` (lifecycle stages)."""
        m = memberships.c
        project, as_of = self.plan.project, self.as_of
        cols: list[Col] = []
        names: list[str] = []
        longest = 0
        for j, name in enumerate(self.segs):
            seg = project.segments[name]
            mine, is_open = m.segment == name, m.exited_at.is_(None)
            cols.append(func.max(case((and_(mine, is_open), 1), else_=0)))
            names.append(f"so{j}")
            if seg.min_dwell_ms:
                cols.append(func.max(case((and_(mine, is_open, m.entered_at > as_of - seg.min_dwell_ms), 1),
                                          else_=0)))
                names.append(f"sd{j}")
            if seg.cooldown_ms:
                longest = max(longest, seg.cooldown_ms)
                cols.append(func.max(case((and_(mine, m.exited_at > as_of - seg.cooldown_ms), 1), else_=0)))
                names.append(f"sc{j}")
        stm = Table("segsync_stm", md, Column("contact_id", BigId, primary_key=True),
                    *(Column(n, BigInteger) for n in names), prefixes=[scratch_prefix(conn)])
        stm.create(conn)
        live = m.exited_at.is_(None) | (m.exited_at > as_of - longest) if longest else m.exited_at.is_(None)
        conn.execute(insert(stm).from_select(["contact_id", *names], select(m.contact_id, *cols).where(
            m.segment.in_(self.segs), live).group_by(m.contact_id)))
        made = [stm]
        if self.lifecycle:
            g = group_state.c
            stg = Table("segsync_stg", md, Column("contact_id", BigId, primary_key=True),
                        *(Column(f"sg{k}", String) for k in range(len(self.lifecycle))),
                        prefixes=[scratch_prefix(conn)])
            stg.create(conn)
            gcols = [func.max(case((g.group_name == name, g.value))) for name in self.lifecycle]
            conn.execute(insert(stg).from_select(
                ["contact_id", *(f"sg{k}" for k in range(len(self.lifecycle)))],
                select(g.contact_id, *gcols).where(g.group_name.in_(self.lifecycle)).group_by(g.contact_id)))
            made.append(stg)
        return made

    # ------------------------------------------------------------------ tuples

    def columns(self) -> list[tuple[str, TypeEngine[Any]]]:
        """The result table's tuple columns: atoms, then state flags and stages."""
        out = [(f"a{i}", self.plan.atoms[i][0].type) for i in self.atoms]
        return out + [(n, String() if n.startswith("sg") else BigInteger()) for n in self.state_cols]

    def key(self, res: Any, dialect: str) -> Col:
        """The tuple of a result row as one text (NULL-safe, exact for floats)."""
        parts: list[Col] = []
        for name, _ in self.columns():
            c = res.c[name]
            if dialect == "postgresql":
                parts.append(func.coalesce(func.quote_literal(cast(c, Text)), "N"))
            else:
                parts.append(func.quote(c))
        out: Col = literal("", Text)
        for p in parts:
            out = out.concat(p).concat(",")
        return out

    def decide_all(self, conn: Connection, res: Any, md: MetaData,
                   field_types: dict[str, r.Type]) -> Table:
        """Decide every distinct tuple of ``res``; returns ``segsync_dec``."""
        plan, project, as_of = self.plan, self.plan.project, self.as_of
        dialect = conn.dialect.name
        tcols = self.columns()
        src = table(res.name, *(column(n, t) for n, t in tcols), *(column(n) for n in ("contact_id",)))
        key = self.key(src, dialect).label("tkey")
        rows = conn.execute(select(key, *(src.c[n] for n, _ in tcols)).distinct()).all()
        groups = list(project.groups)
        dec = Table("segsync_dec", md, Column("tkey", Text, primary_key=True),
                    *(Column(f"sm{w}", BigInteger) for w in range(self.words)),
                    *(Column(f"gv{k}", String) for k in range(len(groups))),
                    *(Column(f"pf{k}", SQL_TYPES.get(field_types[n], String()))
                      for k, n in enumerate(self.py_fields)),
                    prefixes=[scratch_prefix(conn)])
        dec.create(conn)
        index = {name: i for i, name in enumerate(project.segments)}
        conv = {n: convert(field_types[n]) for n in self.py_fields}
        out: list[dict[str, Any]] = []
        for row in rows:
            atoms: list[Any] = [None] * len(plan.atoms)
            for pos, i in enumerate(self.atoms):
                atoms[i] = row[1 + pos]
            values = dict(zip(self.state_cols, row[1 + len(self.atoms):], strict=True))
            d = decide(plan, atoms, self._state(values), as_of)
            item: dict[str, Any] = {"tkey": row[0], **{f"sm{w}": 0 for w in range(self.words)}}
            for name in self.segs:
                if d.final[name]:
                    word, bit = bit_of(index[name])
                    item[f"sm{word}"] += bit
            for k, gname in enumerate(groups):
                item[f"gv{k}"] = d.groups.get(gname)
            for k, fname in enumerate(self.py_fields):
                item[f"pf{k}"] = conv[fname](peval(plan.fields[fname], atoms, d.final))
            out.append(item)
        for start in range(0, len(out), 5000):
            conn.execute(insert(dec), out[start:start + 5000])
        return dec

    def _state(self, values: dict[str, Any]) -> ContactState:
        st = ContactState()
        project, as_of = self.plan.project, self.as_of
        for j, name in enumerate(self.segs):
            seg = project.segments[name]
            if values.get(f"so{j}"):
                st.open[name] = as_of if values.get(f"sd{j}") else as_of - (seg.min_dwell_ms or 0)
            if values.get(f"sc{j}"):
                st.last_exit[name] = as_of
        for k, gname in enumerate(self.lifecycle):
            st.groups[gname] = values.get(f"sg{k}")
        return st


def field_sql_type(plan: Plan, name: str) -> r.Type:
    return type_of(plan.project, plan.project.fields[name])
