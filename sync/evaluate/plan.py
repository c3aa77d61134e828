"""The evaluation plan: which parts of the project run in SQL and which (few) in Python.

Everything that does not depend on stored state compiles to SQL *atoms* — columns of one
per-contact SELECT. A segment is *stateful* when it has ``min_dwell``, ``cooldown``, belongs to
a group, or references a stateful segment; a *pure* segment's verdict is one atom, and a
``segment("x")`` reference to a pure segment is inlined as SQL. Only expressions that
reference a stateful segment keep a small Python skeleton (and/or/not, ==/!=, coalesce over
atoms and segment verdicts), evaluated in SQL's three-valued logic by :func:`peval`.

``steps`` orders the stateful segments and groups so that every segment's references are
decided before it (a group is decided once all its members are).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    String,
    and_,
    case,
    false,
    func,
    literal,
    not_,
    true,
    type_coerce,
)
from sqlalchemy.sql.type_api import TypeEngine
from sqlalchemy.types import NullType

from mapping.errors import ConfigError, RuleError
from mapping.project import Project, SegmentDef
from mapping.rules import ast as r
from sync.evaluate.compile import Col, as_bool, type_of
from sync.evaluate.leaves import LeafResolver, walk
from sync.evaluate.traits import TraitTables
from sync.store.schema import contacts

# Python skeleton nodes: ("atom", i) | ("seg", name) | ("and", [..]) | ("or", [..]) | ("not", n)
# | ("eq", a, b, negate) | ("coalesce", a, b) | ("call", n, python function of n's value)
PNode = tuple[Any, ...]
_TYPED: dict[r.Type, TypeEngine[Any]] = {r.Type.BOOL: Boolean(), r.Type.NUMBER: Float(),
                                         r.Type.STRING: String(), r.Type.DATETIME: BigInteger()}


def peval(node: PNode, row: Any, final: dict[str, bool]) -> Any:
    """Three-valued evaluation of a skeleton (None is unknown)."""
    kind = node[0]
    if kind == "atom":
        return row[node[1]]
    if kind == "seg":
        return final[node[1]]
    if kind == "not":
        v = peval(node[1], row, final)
        return None if v is None else not v
    if kind in ("and", "or"):
        stop = kind == "or"
        unknown = False
        for item in node[1]:
            v = peval(item, row, final)
            if v is None:
                unknown = True
            elif bool(v) is stop:
                return stop
        return None if unknown else not stop
    if kind == "eq":
        a, b = peval(node[1], row, final), peval(node[2], row, final)
        return None if a is None or b is None else (a == b) != node[3]
    if kind == "call":
        return node[2](peval(node[1], row, final))
    a = peval(node[1], row, final)
    return peval(node[2], row, final) if a is None else a


def convert(typ: r.Type) -> Callable[[Any], Any]:
    """Driver value -> the engine's value of an expression of type ``typ``."""
    if typ is r.Type.BOOL:
        return as_bool
    if typ is r.Type.NUMBER:
        return number
    if typ is r.Type.DATETIME:
        return lambda v: None if v is None else int(v)
    return lambda v: v


def number(v: Any) -> int | float | None:
    """Numbers compare equal on every engine: Decimal -> float, integral floats -> int."""
    if v is None:
        return None
    f = float(v)
    return int(f) if f.is_integer() and abs(f) < 2**53 else f


@dataclass
class SegmentPlan:
    seg: SegmentDef
    pure: bool
    rule: PNode | None = None
    exclude: PNode | None = None
    flags: tuple[tuple[PNode, float], ...] = ()
    verdict: int = -1  # pure: the atom holding the final verdict


class Plan:
    """Compiles a project for one dialect; see the module docstring."""

    def __init__(self, project: Project, dialect: str, type_ids: dict[str, int]) -> None:
        self.project = project
        self.dialect = dialect
        self.contacts = contacts
        self.traits = TraitTables(project, dialect, type_ids)
        self.resolver = LeafResolver(project, dialect, self.traits, contacts, self._segment_sql)
        self.compiler = self.resolver.compiler
        self.group_of = {m: g.name for g in project.groups.values() for m in g.segments}
        self.stateful = self._stateful()
        self.atoms: list[tuple[Col, Callable[[Any], Any]]] = []
        self.segments: dict[str, SegmentPlan] = {}
        self.fields: dict[str, PNode] = {}
        self._seg_sql: dict[str, Col] = {}
        self.steps = self._steps()

    # ------------------------------------------------------------------ structure

    def _refs(self, exprs: list[r.Expr | None]) -> set[str]:
        return {n.name for e in exprs if e is not None for n in walk(self.project, e)
                if isinstance(n, r.SegmentRef)}

    def stateful_refs(self, expr: r.Expr) -> bool:
        """Whether ``expr`` references a stateful segment (directly or through others)."""
        return bool(self._refs([expr]) & self.stateful)

    def seg_exprs(self, seg: SegmentDef) -> list[r.Expr | None]:
        return [seg.rule, seg.exclude, *(f.when for f in seg.flags)]

    def _stateful(self) -> set[str]:
        out: set[str] = set()
        for name, seg in self.project.segments.items():  # dependency order
            if (seg.min_dwell_ms or seg.cooldown_ms or name in self.group_of
                    or self._refs(self.seg_exprs(seg)) & out):
                out.add(name)
        return out

    def _steps(self) -> list[tuple[str, str]]:
        deps: dict[tuple[str, str], set[tuple[str, str]]] = {}
        for name in self.stateful:
            refs = self._refs(self.seg_exprs(self.project.segments[name])) & self.stateful
            deps[("seg", name)] = {("group", self.group_of[t]) if t in self.group_of else ("seg", t)
                                   for t in refs}
        for g in self.project.groups.values():
            deps[("group", g.name)] = {("seg", m) for m in g.segments}
        order: list[tuple[str, str]] = []
        state: dict[tuple[str, str], int] = {}

        def visit(node: tuple[str, str], path: list[str]) -> None:
            if state.get(node) == 2:
                return
            if state.get(node) == 1:
                raise ConfigError(f"segments and groups depend on each other in a cycle: "
                                  f"{' -> '.join([*path, node[1]])}")
            state[node] = 1
            for dep in sorted(deps.get(node, ())):
                visit(dep, [*path, node[1]])
            state[node] = 2
            order.append(node)

        for node in sorted(deps):
            visit(node, [])
        return order

    # ------------------------------------------------------------------ compilation

    def atom(self, sql: Col, typ: r.Type) -> PNode:
        if isinstance(sql.type, NullType) and typ in _TYPED:
            # e.g. NOT (x OR y) has no SQL type: without one, drivers hand back 0/1 (SQLite) and
            # result tables store text, where a Python skeleton needs the engine's value
            sql = type_coerce(sql, _TYPED[typ])
        self.atoms.append((sql, convert(typ)))
        return ("atom", len(self.atoms) - 1)

    def split(self, expr: r.Expr) -> PNode:
        """A skeleton for ``expr``: one atom unless it references a stateful segment."""
        if isinstance(expr, r.Rank) and self.resolver.mode == "final":
            x, rank = self.resolver.rank_value(expr)
            return ("call", self.atom(x, r.Type.NUMBER), rank)
        if not self._refs([expr]) & self.stateful:
            return self.atom(self.compiler.sql(expr), type_of(self.project, expr))
        if isinstance(expr, r.TraitRef):
            return self.split(self.project.traits[expr.name])
        if isinstance(expr, r.SegmentRef):
            return ("seg", expr.name)
        if isinstance(expr, r.And | r.Or):
            return ("and" if isinstance(expr, r.And) else "or", [self.split(i) for i in expr.items])
        if isinstance(expr, r.Not):
            return ("not", self.split(expr.item))
        if isinstance(expr, r.Compare) and expr.op in ("==", "!="):
            return ("eq", self.split(expr.left), self.split(expr.right), expr.op == "!=")
        if isinstance(expr, r.Coalesce):
            return ("coalesce", self.split(expr.expr), self.split(expr.default))
        raise RuleError("a segment with min_dwell, cooldown or a group can only be referenced "
                        "with and/or/not, ==, != or coalesce")

    def _weight_ok(self, seg: SegmentDef, weight: Col) -> Col:
        if seg.min_weight is not None:
            return weight >= seg.min_weight
        return weight > 0 if seg.flags else true()

    def _segment_sql(self, name: str) -> Col:
        """A pure segment's final verdict in SQL (never NULL)."""
        if name not in self._seg_sql:
            if name in self.stateful:
                raise RuleError(f"internal: stateful segment {name!r} reached SQL")
            seg = self.project.segments[name]
            parts: list[Col] = [self.compiler.condition(seg.rule)] if seg.rule is not None else []
            weight = self.weight_sql(seg)
            parts.append(self._weight_ok(seg, weight))
            if seg.exclude is not None:
                parts.append(not_(self.compiler.condition(seg.exclude)))
            self._seg_sql[name] = func.coalesce(and_(*parts), false())
        return self._seg_sql[name]

    def weight_sql(self, seg: SegmentDef) -> Col:
        weight: Col = literal(0.0, Float)
        for flag in seg.flags:
            points = literal(float(flag.points), Float)
            weight = weight + case((self.compiler.condition(flag.when), points), else_=0.0)
        return weight

    def compile(self) -> None:
        """Compile every segment and field (again), in the resolver's current mode."""
        self.atoms = []
        self._seg_sql = {}
        self.segments = {}
        for name, seg in self.project.segments.items():
            if name not in self.stateful:
                sp = SegmentPlan(seg, True)
                sp.verdict = self.atom(self._segment_sql(name), r.Type.BOOL)[1]
            else:
                sp = SegmentPlan(seg, False)
                sp.rule = self.split(seg.rule) if seg.rule is not None else None
                sp.exclude = self.split(seg.exclude) if seg.exclude is not None else None
                sp.flags = tuple((self.split(f.when), f.points) for f in seg.flags)
            self.segments[name] = sp
        self.fields = {name: self.split(expr) for name, expr in self.project.fields.items()}
