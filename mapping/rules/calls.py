"""Function calls of the rule language: argument binding and one builder per function.

Used by :mod:`mapping.rules.parser` through the small :class:`ExprParser` interface (parse a
sub-expression, report a problem). Every problem that stops a call raises :class:`Fail` at the
offending argument; the parser records it and carries on with the rest of the rule.
"""

from __future__ import annotations

import ast
from datetime import UTC, date, datetime
from typing import Protocol

from mapping.models import parse_duration
from mapping.rules import ast as r
from mapping.rules.source import EVENT_FIELDS, Schema, did_you_mean

AGG_FUNCS: tuple[r.AggFunc, ...] = (
    "count", "sum", "avg", "min", "max", "first", "last", "exists", "distinct"
)
RFM_FUNCS = {"rfm_r": "r", "rfm_f": "f", "rfm_m": "m", "rfm_score": "score", "rfm_segment": "segment"}
FUNCTIONS = frozenset(
    {
        "is_set", "is_not_set", "contains", "starts_with", "ends_with", "between", "ago",
        "days_since", "coalesce", "all", "any", "date", "datetime", "now", "sequence", "score",
        "tier", "segment", "percentile", "ntile", *AGG_FUNCS, *RFM_FUNCS,
    }
)
_CONTACT_ONLY = frozenset(
    {*AGG_FUNCS, "sequence", "score", "tier", "segment", "percentile", "ntile", *RFM_FUNCS}
)


class Fail(Exception):
    """A problem that stops parsing the current sub-expression."""

    def __init__(self, node: ast.AST | None, message: str, hint: str | None = None):
        super().__init__(message)
        self.node, self.message, self.hint = node, message, hint


class Scope:
    """Contact scope (``event is None``) or one event type's filter scope (``known``: the
    event type is declared, so its property names can be checked)."""

    def __init__(self, event: str | None = None, known: bool = True):
        self.event, self.known = event, known


class ExprParser(Protocol):
    schema: Schema

    def expr(self, node: ast.expr, scope: Scope) -> r.Expr: ...

    def fail(self, node: ast.AST | None, message: str, hint: str | None = None) -> None: ...


def call(p: ExprParser, node: ast.Call, scope: Scope) -> r.Expr:
    if not isinstance(node.func, ast.Name):
        raise Fail(node, "only plain function calls are supported, e.g. count(\"opened\")")
    name = node.func.id
    if name not in FUNCTIONS:
        raise Fail(node, f"unknown function {name!r}", did_you_mean(name, FUNCTIONS))
    if scope.event is not None and name in _CONTACT_ONLY:
        raise Fail(node, f"{name}() cannot be used inside an event filter")
    if name in AGG_FUNCS:
        return aggregate(p, node, name, scope)
    if name == "sequence":
        return sequence(p, node)
    return simple_calls(p, node, name, scope)


def args(
    node: ast.Call, name: str, positional: list[str], required: int,
    keywords: tuple[str, ...] = (),
) -> dict[str, ast.expr]:
    """Bind a call's arguments by name; reports arity and keyword problems."""
    if any(isinstance(a, ast.Starred) for a in node.args):
        raise Fail(node, "*args are not supported")
    if len(node.args) > len(positional):
        raise Fail(node.args[len(positional)], f"{name}() takes at most {len(positional)} "
                    f"positional argument{'s' if len(positional) != 1 else ''}")
    bound = dict(zip(positional, node.args, strict=False))
    for kw in node.keywords:
        if kw.arg is None or kw.arg not in keywords:
            raise Fail(kw.value, f"{name}() has no argument {kw.arg!r}",
                        did_you_mean(kw.arg or "", keywords))
        if kw.arg in bound:
            raise Fail(kw.value, f"{name}() got {kw.arg!r} twice")
        bound[kw.arg] = kw.value
    missing = [p for p in positional[:required] if p not in bound]
    if missing:
        raise Fail(node, f"{name}() needs {', '.join(missing)}")
    return bound


def string(node: ast.expr, what: str) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    raise Fail(node, f"{what} must be a string literal")


def duration(p: ExprParser, node: ast.expr, what: str = "a duration") -> int:
    text = string(node, what)
    try:
        return parse_duration(text)
    except ValueError as e:
        raise Fail(node, str(e)) from None


def event_type(p: ExprParser, node: ast.expr) -> str:
    name = string(node, 'the event type (e.g. "opened")')
    if name not in p.schema.events:
        p.fail(node, f"unknown event type {name!r}", did_you_mean(name, p.schema.events))
    return name


def window(p: ExprParser, bound: dict[str, ast.expr], name: str) -> r.Window:
    within, between = bound.get("within"), bound.get("between")
    if within is not None and between is not None:
        raise Fail(between, f"{name}() takes within= or between=, not both")
    if within is not None:
        ms = duration(p, within)
        if ms <= 0:
            raise Fail(within, "within= must be longer than 0")
        return r.Window("within", ms, 0)
    if between is not None:
        if not isinstance(between, ast.Tuple | ast.List) or len(between.elts) != 2:
            raise Fail(between, 'between= takes two durations, e.g. between=("14d", "7d")')
        older, newer = (duration(p, e) for e in between.elts)
        if older <= newer:
            raise Fail(between, "between=(A, B) needs the older offset first",
                        'e.g. between=("14d", "7d") is 14 to 7 days ago')
        return r.Window("between", older, newer)
    return r.ALL_TIME


def aggregate(p: ExprParser, node: ast.Call, func: r.AggFunc, scope: Scope) -> r.Expr:
    keywords = ("where", "within", "between") + (
        ("of",) if func not in ("count", "exists", "first", "last") else ()
    )
    bound = args(node, func, ["event"], 1, keywords)
    event = event_type(p, bound["event"])
    of: r.Prop | r.EventField | None = None
    if "of" in bound:
        of = of_field(p, bound["of"], event)
    elif func == "distinct":
        raise Fail(node, 'distinct() needs of="property"')
    where = filter_(p, bound.get("where"), event)
    return r.Agg(func, event, of, where, window(p, bound, func))


def of_field(p: ExprParser, node: ast.expr, event: str) -> r.Prop | r.EventField:
    name = string(node, "of=")
    if name in EVENT_FIELDS:
        return r.EventField(name)  # type: ignore[arg-type]
    props = p.schema.events.get(event)
    if props is not None and name not in props:
        p.fail(node, f"unknown property {name!r} of event {event!r}",
                  did_you_mean(name, [*props, "value"]))
    return r.Prop(name)


def filter_(p: ExprParser, node: ast.expr | None, event: str) -> r.Expr | None:
    if node is None:
        return None
    return p.expr(node, Scope(event, event in p.schema.events))


def sequence(p: ExprParser, node: ast.Call) -> r.Expr:
    bound = args(
        node, "sequence", ["event"], 1,
        ("not_followed_by", "gap", "within", "between", "where", "then_where", "latest"),
    )
    for needed in ("not_followed_by", "gap"):
        if needed not in bound:
            raise Fail(node, f"sequence() needs {needed}=")
    first = event_type(p, bound["event"])
    then_not = event_type(p, bound["not_followed_by"])
    gap = duration(p, bound["gap"], "gap=")
    latest = False
    if "latest" in bound:
        flag = p.expr(bound["latest"], Scope())
        if not (isinstance(flag, r.Literal_) and isinstance(flag.value, bool)):
            raise Fail(bound["latest"], "latest= must be true or false")
        latest = flag.value
    return r.Sequence(
        first, then_not, gap, window(p, bound, "sequence"),
        filter_(p, bound.get("where"), first), filter_(p, bound.get("then_where"), then_not),
        latest,
    )


def simple_calls(p: ExprParser, node: ast.Call, name: str, scope: Scope) -> r.Expr:
    """Every function but the aggregates and sequence()."""
    schema = p.schema
    if name in ("all", "any"):
        if node.keywords or not node.args:
            raise Fail(node, f"{name}() takes one or more conditions")
        items = tuple(p.expr(a, scope) for a in node.args)
        return r.And(items) if name == "all" else r.Or(items)
    if name in RFM_FUNCS:
        args(node, name, [], 0)
        if not schema.rfm:
            raise Fail(node, f"{name}() needs an [rfm] section in the configuration")
        return r.Rfm(RFM_FUNCS[name])  # type: ignore[arg-type]
    if name == "now":
        args(node, name, [], 0)
        return r.Now()
    one = {"is_set", "is_not_set", "days_since", "percentile", "ago", "date", "datetime",
           "score", "tier", "segment"}
    if name in one:
        arg = args(node, name, ["x"], 1)["x"]
        if name in ("is_set", "is_not_set"):
            return r.IsSet(p.expr(arg, scope), name == "is_not_set")
        if name == "days_since":
            return r.DaysSince(p.expr(arg, scope))
        if name == "percentile":
            return r.Rank("percentile", p.expr(arg, scope), 100)
        if name == "ago":
            return r.Ago(duration(p, arg))
        if name in ("date", "datetime"):
            return r.Literal_(instant(arg, string(arg, f"{name}()"), name == "date"), r.Type.DATETIME)
        ref = string(arg, f"the {name} name")
        if name == "segment":
            if ref not in schema.segments:
                p.fail(arg, f"unknown segment {ref!r}", did_you_mean(ref, schema.segments))
            return r.SegmentRef(ref)
        if ref not in schema.scores:
            p.fail(arg, f"unknown score {ref!r}", did_you_mean(ref, schema.scores))
        elif name == "tier" and not schema.scores[ref]:
            p.fail(arg, f"score {ref!r} declares no tiers")
        return r.ScoreRef(ref) if name == "score" else r.TierRef(ref)
    if name == "ntile":
        bound = args(node, name, ["x", "n"], 2)
        n = bound["n"]
        if not (isinstance(n, ast.Constant) and type(n.value) is int and n.value >= 2):
            raise Fail(n, "ntile(x, n) needs a whole number n >= 2")
        return r.Rank("ntile", p.expr(bound["x"], scope), n.value)
    if name == "between":
        b = args(node, name, ["x", "low", "high"], 3)
        return r.Between(p.expr(b["x"], scope), p.expr(b["low"], scope), p.expr(b["high"], scope))
    if name == "coalesce":
        b = args(node, name, ["x", "default"], 2)
        return r.Coalesce(p.expr(b["x"], scope), p.expr(b["default"], scope))
    b = args(node, name, ["x", "s"], 2)  # contains / starts_with / ends_with
    return r.StrOp(name, p.expr(b["x"], scope), p.expr(b["s"], scope))  # type: ignore[arg-type]


def instant(node: ast.expr, text: str, date_only: bool) -> int:
    """``date("2024-01-31")`` / ``datetime("2024-01-31T10:00:00+02:00")`` -> epoch ms."""
    try:
        if date_only:
            d = date.fromisoformat(text)
            return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) * 1000
        dt = datetime.fromisoformat(text)
    except ValueError:
        kind = "date" if date_only else "datetime"
        what = 'a date like "2024-01-31"' if date_only else 'an ISO-8601 time like "2024-01-31T10:00:00Z"'
        raise Fail(node, f"malformed {kind} {text!r}: expected {what}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000

