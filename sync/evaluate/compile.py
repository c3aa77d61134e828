"""Rule expressions -> SQLAlchemy Core column expressions (one semantics, every dialect).

:class:`ExprCompiler` turns a checked :mod:`mapping.rules.ast` expression into a SQL expression.
Per-contact leaves (aggregates, sequences, scores, ranks, RFM, segment references) are not
compiled here: a :class:`Resolver` supplies them (``sync.evaluate.traits`` maps them to columns
of per-event-type trait tables). Inside an aggregate's ``where`` the compiler is bound to one
event row (``event_table``), where :class:`~mapping.rules.ast.Prop` and
:class:`~mapping.rules.ast.EventField` resolve.

Semantics shared with the documentation (``docs/rules.md``):

* SQL three-valued logic: a comparison with NULL is unknown, and ``not`` unknown is unknown.
* ``as_of`` is the bound parameter ``:as_of`` (epoch ms); every window and ``ago`` derives from it.
* JSON values are read typed: on PostgreSQL a value whose JSON type does not match the declared
  type reads as NULL (instead of a cast error); the store keeps values typed, so on SQLite the
  same data gives the same result.
* ``x / y`` is float division; division by zero is NULL. ``days_since(x)`` is floored.
* ``contains`` / ``starts_with`` / ``ends_with`` are case-sensitive on every engine.
* A list value is "set" when it is a non-empty array; ``contains(list, s)`` tests membership.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    FromClause,
    String,
    and_,
    bindparam,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    not_,
    null,
    or_,
    select,
    true,
)

from mapping.errors import RuleError
from mapping.project import Project
from mapping.rules import ast as r

T = r.Type
DAY_MS = 86_400_000
Col = ColumnElement[Any]
LEAF_TYPES = (r.Agg, r.Sequence, r.ScoreRef, r.TierRef, r.Rank, r.Rfm, r.SegmentRef)
Leaf = r.Agg | r.Sequence | r.ScoreRef | r.TierRef | r.Rank | r.Rfm | r.SegmentRef
_AGG_TYPE = {"count": T.NUMBER, "distinct": T.NUMBER, "exists": T.BOOL, "first": T.DATETIME,
             "last": T.DATETIME, "sum": T.NUMBER, "avg": T.NUMBER, "min": T.NUMBER, "max": T.NUMBER}
_RFM_TYPE = {"r": T.NUMBER, "f": T.NUMBER, "m": T.NUMBER, "score": T.STRING, "segment": T.STRING}


def as_of_param() -> Col:
    """The evaluation instant, a bound parameter (the value is given at execution)."""
    return bindparam("as_of", type_=BigInteger)


class Resolver(Protocol):
    """Supplies the SQL of per-contact leaves at the contact level."""

    def leaf(self, node: Leaf) -> Col: ...

    def rank_compare(self, node: r.Rank, op: str, value: float) -> Col | None:
        """``rank op value`` as a comparison of the ranked value with one cut-off (None: no
        shortcut, compile the rank itself)."""


def type_of(project: Project, node: r.Expr, event: str | None = None) -> r.Type:
    """The type of a (checked) expression; ``event`` is the event type of a filter."""
    if isinstance(node, r.Literal_):
        return node.type
    if isinstance(node, r.Attr):
        return project.attributes[node.name]
    if isinstance(node, r.Prop):
        if event is None:
            raise RuleError(f"property {node.name!r} used outside an event filter")
        return project.events[event][node.name]
    if isinstance(node, r.EventField):
        return T.NUMBER if node.name == "value" else T.DATETIME
    if isinstance(node, r.Now | r.Ago):
        return T.DATETIME
    if isinstance(node, r.Agg):
        return _AGG_TYPE[node.func]
    if isinstance(node, r.TraitRef):
        return type_of(project, project.traits[node.name], event)
    if isinstance(node, r.Rfm):
        return _RFM_TYPE[node.part]
    if isinstance(node, r.TierRef):
        return T.STRING
    if isinstance(node, r.ScoreRef | r.Rank | r.DaysSince):
        return T.NUMBER
    if isinstance(node, r.Arith):
        left = type_of(project, node.left, event)
        if node.op in "+-" and left is T.DATETIME and type_of(project, node.right, event) is T.NUMBER:
            return T.DATETIME
        return T.NUMBER
    if isinstance(node, r.Coalesce):
        inner = type_of(project, node.expr, event)
        return inner if inner is not T.DURATION else type_of(project, node.default, event)
    return T.BOOL  # Sequence, SegmentRef, comparisons, predicates, and/or/not


def window_condition(ts: Col, window: r.Window) -> Col:
    """``ts`` inside ``window`` relative to ``:as_of`` (half-open, see ``mapping.rules.ast``)."""
    as_of = as_of_param()
    if window.kind == "all" or window.start_ms is None:
        return ts <= as_of
    return and_(ts > as_of - window.start_ms, ts <= as_of - window.end_ms)


class ExprCompiler:
    """Compiles expressions at the contact level, or at the event level (``event_table``)."""

    def __init__(
        self,
        project: Project,
        dialect: str,
        contacts: FromClause | None,
        resolver: Resolver | None = None,
        event_table: FromClause | None = None,
        event: str | None = None,
    ) -> None:
        self.project = project
        self.dialect = dialect
        self.contacts = contacts
        self.resolver = resolver
        self.event_table = event_table
        self.event = event
        self.attr_cols: dict[str, Col] = {}  # attributes already extracted (whole-population path)

    def for_event(self, table: FromClause, event: str) -> ExprCompiler:
        """A compiler for filters over rows of ``table`` of event type ``event``."""
        return ExprCompiler(self.project, self.dialect, None, None, table, event)

    def type(self, node: r.Expr) -> r.Type:
        return type_of(self.project, node, self.event)

    # ------------------------------------------------------------------ entry point

    def sql(self, node: r.Expr) -> Col:
        if isinstance(node, r.Literal_):
            return self._literal(node)
        if isinstance(node, r.Attr):
            if self.contacts is None:
                raise RuleError(f"contact attribute {node.name!r} cannot be used in an event filter")
            if node.name in self.attr_cols:
                return self.attr_cols[node.name]
            return self._json(self.contacts.c.attributes, node.name, self.type(node))
        if isinstance(node, r.Prop):
            if self.event_table is None:
                raise RuleError(f"property {node.name!r} used outside an event filter")
            return self._json(self.event_table.c.properties, node.name, self.type(node))
        if isinstance(node, r.EventField):
            if self.event_table is None:
                raise RuleError(f"{node.name!r} used outside an event filter")
            return self.event_table.c[node.name]
        if isinstance(node, r.Now):
            return as_of_param()
        if isinstance(node, r.Ago):
            return as_of_param() - node.duration_ms
        if isinstance(node, LEAF_TYPES):
            if self.resolver is None:
                raise RuleError("aggregates, scores and segments cannot be used in an event filter")
            return self.resolver.leaf(node)
        if isinstance(node, r.TraitRef):
            return self.sql(self.project.traits[node.name])
        if isinstance(node, r.Compare):
            return self._compare(node)
        if isinstance(node, r.In):
            return self._in(node)
        if isinstance(node, r.StrOp):
            return self._strop(node)
        if isinstance(node, r.IsSet):
            return self._is_set(node)
        if isinstance(node, r.Between):
            x = self.sql(node.expr)
            return and_(x >= self.sql(node.low), x <= self.sql(node.high))
        if isinstance(node, r.Arith):
            return self._arith(node)
        if isinstance(node, r.DaysSince):
            return floor(self.dialect, cast(as_of_param() - self.sql(node.expr), Float) / DAY_MS)
        if isinstance(node, r.Coalesce):
            return func.coalesce(self.sql(node.expr), self.sql(node.default))
        if isinstance(node, r.And):
            return and_(*(self.sql(i) for i in node.items))
        if isinstance(node, r.Or):
            return or_(*(self.sql(i) for i in node.items))
        if isinstance(node, r.Not):
            return not_(self.sql(node.item))
        raise RuleError(f"cannot compile {type(node).__name__}")

    def condition(self, node: r.Expr | None) -> Col:
        """A filter: true only when ``node`` is true (unknown counts as false)."""
        return true() if node is None else func.coalesce(self.sql(node), false())

    # ------------------------------------------------------------------ helpers

    def _literal(self, node: r.Literal_) -> Col:
        v = node.value
        if v is None:
            return null()
        if isinstance(v, tuple):
            raise RuleError("a list literal can only follow 'in'")
        if isinstance(v, bool):
            return true() if v else false()
        if isinstance(v, str):
            return literal(v, String)
        if node.type is T.DATETIME or (isinstance(v, int) and node.type is not T.NUMBER):
            return literal(int(v), BigInteger)
        return literal(float(v), Float)

    def _json_type_guard(self, col: Col, key: str, kinds: tuple[str, ...]) -> Col:
        if self.dialect == "postgresql":
            return func.jsonb_typeof(col[key]).in_(kinds)
        return func.json_type(col, f'$."{key}"').in_(kinds)

    def attribute(self, name: str) -> Col:
        """A (non-list) contact attribute read from the JSON column, typed."""
        if self.contacts is None:
            raise RuleError(f"contact attribute {name!r} cannot be used in an event filter")
        return self._json(self.contacts.c.attributes, name, self.project.attributes[name])

    def _json(self, col: Any, key: str, typ: r.Type) -> Col:
        elem = col[key]
        if typ is T.LIST:
            return case((self._json_type_guard(col, key, ("array",)), elem))
        kinds: tuple[str, ...]
        if typ is T.STRING:
            value, kinds = elem.as_string(), ("string", "text")
        elif typ is T.BOOL:
            value, kinds = elem.as_boolean(), ("boolean", "true", "false")
        else:
            value, kinds = elem.as_float(), ("number", "integer", "real")
        if self.dialect != "postgresql":
            return value  # type: ignore[no-any-return]
        return case((self._json_type_guard(col, key, kinds), value))

    def _list_parts(self, node: r.Expr) -> tuple[Any, str]:
        if isinstance(node, r.TraitRef):
            return self._list_parts(self.project.traits[node.name])
        if isinstance(node, r.Attr) and self.contacts is not None:
            return self.contacts.c.attributes, node.name
        if isinstance(node, r.Prop) and self.event_table is not None:
            return self.event_table.c.properties, node.name
        raise RuleError("only list attributes and list properties can be tested with contains/is_set")

    def _list_contains(self, node: r.Expr, item: Col) -> Col:
        col, key = self._list_parts(node)
        if self.dialect == "postgresql":
            elements = func.jsonb_array_elements_text(col[key]).table_valued("value")
        else:
            elements = func.json_each(col, f'$."{key}"').table_valued("value")
        hit = exists(select(literal(1)).select_from(elements).where(elements.c.value == item))
        return case((self._json_type_guard(col, key, ("array",)), hit))

    def _compare(self, node: r.Compare) -> Col:
        if T.LIST in (self.type(node.left), self.type(node.right)):
            raise RuleError("lists cannot be compared; use contains(list, value)")
        flip = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
        for rank, other, op in ((node.left, node.right, node.op), (node.right, node.left, flip[node.op])):
            if (isinstance(rank, r.Rank) and isinstance(other, r.Literal_) and self.resolver is not None
                    and isinstance(other.value, int | float) and not isinstance(other.value, bool)):
                shortcut = self.resolver.rank_compare(rank, op, float(other.value))
                if shortcut is not None:
                    return shortcut
        left, right = self.sql(node.left), self.sql(node.right)
        ops: dict[str, Callable[[Col, Col], Col]] = {
            "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
        }
        return ops[node.op](left, right)

    def _in(self, node: r.In) -> Col:
        values = node.values.value
        items = list(values) if isinstance(values, tuple) else [values]
        x = self.sql(node.expr)
        if self.type(node.expr) is T.LIST:
            raise RuleError("'in' needs a single value on the left; use contains(list, value)")
        if not items:
            return true() if node.negate else false()
        lits = [self._literal(r.Literal_(v, self.type(node.expr))) for v in items]
        return x.notin_(lits) if node.negate else x.in_(lits)

    def _strop(self, node: r.StrOp) -> Col:
        arg = self.sql(node.arg)
        if node.op == "contains" and self.type(node.expr) is T.LIST:
            return self._list_contains(node.expr, arg)
        x = self.sql(node.expr)
        if node.op == "contains":
            pos = func.strpos(x, arg) if self.dialect == "postgresql" else func.instr(x, arg)
            return pos > 0
        n = func.length(arg)
        if node.op == "starts_with":
            return func.substr(x, 1, n) == arg
        return and_(func.length(x) >= n, func.substr(x, func.length(x) - n + 1) == arg)

    def _is_set(self, node: r.IsSet) -> Col:
        typ = self.type(node.expr)
        if typ is T.LIST:
            col, key = self._list_parts(node.expr)
            if self.dialect == "postgresql":
                length = func.jsonb_array_length(col[key])
            else:
                length = func.json_array_length(col, f'$."{key}"')
            is_set: Col = func.coalesce(case((self._json_type_guard(col, key, ("array",)), length > 0)),
                                        false())
        else:
            x = self.sql(node.expr)
            is_set = and_(x.is_not(None), x != "") if typ is T.STRING else x.is_not(None)
            is_set = func.coalesce(is_set, false())
        return not_(is_set) if node.negate else is_set

    def _arith(self, node: r.Arith) -> Col:
        left, right = self.sql(node.left), self.sql(node.right)
        if node.op == "+":
            return left + right
        if node.op == "-":
            return left - right
        if node.op == "*":
            return left * right
        return cast(left, Float) / func.nullif(cast(right, Float), 0.0)


def floor(dialect: str, x: Col) -> Col:
    """``floor(x)``. SQLAlchemy replaces SQLite's ``floor`` by a Python function that fails on
    NULL, so SQLite gets the same value in plain SQL."""
    if dialect == "postgresql":
        return func.floor(x)
    whole = cast(x, BigInteger)
    return whole - case((x < whole, 1), else_=0)


def as_bool(value: Any) -> bool | None:
    """A SQL boolean as read from any driver (1/0 on SQLite)."""
    return None if value is None else bool(value)


