"""Rule text -> :mod:`mapping.rules.ast` nodes, through Python's own ``ast`` parser (never eval).

:func:`parse_rule` resolves every name against a :class:`~mapping.rules.source.Schema`
(attributes, traits, events and their properties, scores, segments) and reports each problem —
syntax, unknown name (with a "did you mean"), misused function, malformed duration — at its
line and column in the file the rule came from. Types are checked afterwards by
:mod:`mapping.rules.checker`. The grammar is documented in ``docs/rules.md``.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from datetime import UTC, date, datetime

from mapping.errors import Problem, RuleError
from mapping.models import parse_duration
from mapping.rules import ast as r
from mapping.rules.source import EVENT_FIELDS, ParsedRule, Schema, Source, did_you_mean

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
_COMPARE: dict[type[ast.cmpop], r.CompareOp] = {
    ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
}
_ARITH: dict[type[ast.operator], r.ArithOp] = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/",
}
_ERROR = r.Literal_(None, r.Type.BOOL)  # stands in for a sub-expression that had a problem


class _Fail(Exception):
    """A problem that stops parsing the current sub-expression."""

    def __init__(self, node: ast.AST | None, message: str, hint: str | None = None):
        super().__init__(message)
        self.node, self.message, self.hint = node, message, hint


class _Scope:
    """Contact scope (``event is None``) or one event type's filter scope."""

    def __init__(self, event: str | None = None, known: bool = True):
        self.event, self.known = event, known


def parse_rule(
    text: str | Source, schema: Schema, *, event: str | None = None
) -> ParsedRule:
    """Parse one rule string. With ``event``, names resolve to that event type's properties
    (an event filter such as ``[events.X] exclude``). Raises :class:`RuleError` with every
    problem found."""
    source = text if isinstance(text, Source) else Source(text)
    parser = _Parser(source, schema)
    expr = parser.run(_Scope(event, event in schema.events) if event else _Scope())
    if parser.problems:
        raise RuleError(problems=parser.problems)
    return ParsedRule(expr, source, parser.spans)


class _Parser:
    def __init__(self, source: Source, schema: Schema):
        self.source, self.schema = source, schema
        self.problems: list[Problem] = []
        self.spans: dict[int, int] = {}
        self.lines = source.text.split("\n")
        self.line_starts = [0]
        for line in self.lines[:-1]:
            self.line_starts.append(self.line_starts[-1] + len(line) + 1)

    # ------------------------------------------------------------------ positions

    def offset_of(self, line: int | None, col: int | None, *, byte_col: bool = True) -> int:
        """Wrapped-source (line, col) -> offset in the rule text (see :meth:`run`)."""
        if line is None:
            return 0
        index = line - 2  # the text starts on line 2 of the wrapped source
        if index < 0:
            return 0
        if index >= len(self.lines):
            return len(self.source.text)
        text = self.lines[index]
        col = max(0, col or 0)
        chars = len(text.encode()[:col].decode(errors="ignore")) if byte_col else col
        return self.line_starts[index] + min(chars, len(text))

    def pos(self, node: ast.AST) -> int:
        return self.offset_of(getattr(node, "lineno", None), getattr(node, "col_offset", None))

    def after(self, node: ast.AST) -> int:
        """The offset of the first token after ``node`` (an operator), skipping ``)``."""
        end = self.offset_of(getattr(node, "end_lineno", None), getattr(node, "end_col_offset", None))
        text = self.source.text
        while end < len(text) and (text[end].isspace() or text[end] == ")"):
            end += 1
        return end

    def fail(self, node: ast.AST | None, message: str, hint: str | None = None) -> None:
        where = self.pos(node) if node is not None else 0
        self.problems.append(self.source.problem(where, message, hint))

    def mark(self, expr: r.Expr, node: ast.AST) -> r.Expr:
        self.spans.setdefault(id(expr), self.pos(node))
        return expr

    # ------------------------------------------------------------------ entry

    def run(self, scope: _Scope) -> r.Expr:
        text = self.source.text
        if not text.strip():
            self.problems.append(self.source.problem(0, "empty rule"))
            return _ERROR
        if not self._balanced(text):
            return _ERROR
        try:  # parenthesised so that a rule may span lines; see offset_of
            tree = ast.parse("(\n" + text + "\n)", mode="eval")
        except SyntaxError as e:
            where = self.offset_of(e.lineno, (e.offset or 1) - 1, byte_col=False)
            message = re.sub(r"\s*\(detected at line \d+\)", "", e.msg)
            hint = "use == to compare" if text[where:where + 1] == "=" else None
            self.problems.append(self.source.problem(where, f"syntax error: {message}", hint))
            return _ERROR
        return self.expr(tree.body, scope)

    def _balanced(self, text: str) -> bool:
        """Report an unmatched or unclosed bracket where it is (ast.parse, wrapped in
        parentheses, would blame the wrong one)."""
        opened: list[tuple[str, int]] = []
        try:
            for tok in tokenize.generate_tokens(io.StringIO(text).readline):
                if tok.type == tokenize.ERRORTOKEN:
                    return True  # e.g. an unterminated string: ast.parse reports it
                if tok.type != tokenize.OP or tok.string not in "()[]{}":
                    continue
                where = self.line_starts[min(tok.start[0], len(self.lines)) - 1] + tok.start[1]
                if tok.string in "([{":
                    opened.append((tok.string, where))
                elif not opened or "([{"[")]}".index(tok.string)] != opened[-1][0]:
                    self.problems.append(
                        self.source.problem(where, f"syntax error: unmatched {tok.string!r}")
                    )
                    return False
                else:
                    opened.pop()
        except tokenize.TokenError:
            if not opened:
                return True
        except SyntaxError:
            return True
        if opened:
            bracket, where = opened[-1]
            self.problems.append(self.source.problem(where, f"syntax error: {bracket!r} was never closed"))
            return False
        return True

    def expr(self, node: ast.expr, scope: _Scope) -> r.Expr:
        try:
            return self.mark(self._expr(node, scope), node)
        except _Fail as f:
            self.fail(f.node or node, f.message, f.hint)
            return _ERROR

    # ------------------------------------------------------------------ node kinds

    def _expr(self, node: ast.expr, scope: _Scope) -> r.Expr:
        if isinstance(node, ast.BoolOp):
            items = tuple(self.expr(v, scope) for v in node.values)
            return r.And(items) if isinstance(node.op, ast.And) else r.Or(items)
        if isinstance(node, ast.UnaryOp):
            return self._unary(node, scope)
        if isinstance(node, ast.BinOp):
            op = _ARITH.get(type(node.op))
            if op is None:
                raise _Fail(node, "unsupported operator: only + - * / are allowed")
            return r.Arith(op, self.expr(node.left, scope), self.expr(node.right, scope))
        if isinstance(node, ast.Compare):
            return self._compare(node, scope)
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._name(node, scope)
        if isinstance(node, ast.Call):
            return self._call(node, scope)
        if isinstance(node, ast.List | ast.Tuple):
            return self._list(node)
        if isinstance(node, ast.Attribute):
            raise _Fail(node, "attribute access (a.b) is not supported", f"did you mean {node.attr!r}?")
        raise _Fail(node, f"unsupported syntax: {type(node).__name__.lower()}")

    def _unary(self, node: ast.UnaryOp, scope: _Scope) -> r.Expr:
        if isinstance(node.op, ast.Not):
            return r.Not(self.expr(node.operand, scope))
        if isinstance(node.op, ast.USub | ast.UAdd):
            inner = node.operand
            if isinstance(inner, ast.Constant) and isinstance(inner.value, int | float) and not (
                isinstance(inner.value, bool)
            ):
                value: int | float = inner.value
                return r.Literal_(-value if isinstance(node.op, ast.USub) else value, r.Type.NUMBER)
            operand = self.expr(inner, scope)
            if isinstance(node.op, ast.UAdd):
                return operand
            return r.Arith("-", r.Literal_(0, r.Type.NUMBER), operand)
        raise _Fail(node, "unsupported operator ~")

    def _constant(self, node: ast.Constant) -> r.Expr:
        value = node.value
        if isinstance(value, bool):
            return r.Literal_(value, r.Type.BOOL)
        if isinstance(value, str):
            return r.Literal_(value, r.Type.STRING)
        if isinstance(value, int | float):
            return r.Literal_(value, r.Type.NUMBER)
        if value is None:
            raise _Fail(node, "None is not a value here", "use is_set(x) / is_not_set(x)")
        raise _Fail(node, f"unsupported literal {value!r}")

    def _list(self, node: ast.List | ast.Tuple) -> r.Literal_:
        items: list[str | int | float] = []
        for elt in node.elts:
            lit: r.Expr | None = None
            if isinstance(elt, ast.Constant):
                lit = self._constant(elt)
            elif isinstance(elt, ast.UnaryOp) and isinstance(elt.op, ast.USub | ast.UAdd):
                lit = self._unary(elt, _Scope())
            if not isinstance(lit, r.Literal_) or not isinstance(lit.value, str | int | float) or (
                lit.type is r.Type.BOOL
            ):
                raise _Fail(elt, "a list may only hold string or number literals")
            items.append(lit.value)
        if len({isinstance(i, str) for i in items}) > 1:
            raise _Fail(node, "a list must hold only strings or only numbers")
        return r.Literal_(tuple(items), r.Type.LIST)

    def _name(self, node: ast.Name, scope: _Scope) -> r.Expr:
        name = node.id
        if name in ("true", "false"):
            return r.Literal_(name == "true", r.Type.BOOL)
        if name == "now":
            return r.Now()
        if scope.event is not None:
            if name in EVENT_FIELDS:
                return r.EventField(name)  # type: ignore[arg-type]
            props = self.schema.events.get(scope.event, {})
            if name in props or not scope.known:
                return r.Prop(name)
            hint = did_you_mean(name, [*props, *EVENT_FIELDS])
            if hint is None and (name in self.schema.attributes or name in self.schema.traits):
                hint = "an event filter sees only the event's properties, value and ts"
            raise _Fail(node, f"unknown property {name!r} of event {scope.event!r}", hint)
        if name in self.schema.attributes:
            return r.Attr(name)
        if name in self.schema.traits:
            return r.TraitRef(name)
        if name in FUNCTIONS:
            raise _Fail(node, f"{name} is a function", f"call it: {name}(...)")
        hint = did_you_mean(name, [*self.schema.attributes, *self.schema.traits])
        if hint is None and name in EVENT_FIELDS:
            hint = f"{name} exists only inside an aggregate's where="
        raise _Fail(node, f"unknown attribute or trait {name!r}", hint)

    def _compare(self, node: ast.Compare, scope: _Scope) -> r.Expr:
        ops, operands = node.ops, [node.left, *node.comparators]
        for op in ops:
            if isinstance(op, ast.Is | ast.IsNot):
                raise _Fail(node, "'is' is not supported", "use is_set(x) / is_not_set(x) or ==")
        if len(ops) == 1 and isinstance(ops[0], ast.In | ast.NotIn):
            right = node.comparators[0]
            if not isinstance(right, ast.List | ast.Tuple):
                raise _Fail(
                    right, "'in' needs a list literal on its right",
                    "use contains(x, s) to test a list attribute or a substring",
                )
            values = self._list(right)
            self.mark(values, right)
            return r.In(self.expr(node.left, scope), values, isinstance(ops[0], ast.NotIn))
        if any(isinstance(op, ast.In | ast.NotIn) for op in ops):
            raise _Fail(node, "'in' cannot be chained with other comparisons")
        exprs = [self.expr(e, scope) for e in operands]
        if len(ops) == 2 and all(isinstance(op, ast.LtE) for op in ops):
            return r.Between(exprs[1], exprs[0], exprs[2])
        pairs: list[r.Expr] = []
        for i, op in enumerate(ops):
            pair = r.Compare(_COMPARE[type(op)], exprs[i], exprs[i + 1])
            self.spans[id(pair)] = self.after(operands[i])
            pairs.append(pair)
        return pairs[0] if len(pairs) == 1 else r.And(tuple(pairs))

    # ------------------------------------------------------------------ calls

    def _call(self, node: ast.Call, scope: _Scope) -> r.Expr:
        if not isinstance(node.func, ast.Name):
            raise _Fail(node, "only plain function calls are supported, e.g. count(\"opened\")")
        name = node.func.id
        if name not in FUNCTIONS:
            raise _Fail(node, f"unknown function {name!r}", did_you_mean(name, FUNCTIONS))
        if scope.event is not None and name in {*AGG_FUNCS, "sequence", "score", "tier", "segment",
                                                 "percentile", "ntile", *RFM_FUNCS}:
            raise _Fail(node, f"{name}() cannot be used inside an event filter")
        if name in AGG_FUNCS:
            return self._aggregate(node, name, scope)
        if name == "sequence":
            return self._sequence(node)
        return _simple_calls(self, node, name, scope)

    def args(
        self, node: ast.Call, name: str, positional: list[str], required: int,
        keywords: tuple[str, ...] = (),
    ) -> dict[str, ast.expr]:
        """Bind a call's arguments by name; reports arity and keyword problems."""
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise _Fail(node, "*args are not supported")
        if len(node.args) > len(positional):
            raise _Fail(node.args[len(positional)], f"{name}() takes at most {len(positional)} "
                        f"positional argument{'s' if len(positional) != 1 else ''}")
        bound = dict(zip(positional, node.args, strict=False))
        for kw in node.keywords:
            if kw.arg is None or kw.arg not in keywords:
                raise _Fail(kw.value, f"{name}() has no argument {kw.arg!r}",
                            did_you_mean(kw.arg or "", keywords))
            if kw.arg in bound:
                raise _Fail(kw.value, f"{name}() got {kw.arg!r} twice")
            bound[kw.arg] = kw.value
        missing = [p for p in positional[:required] if p not in bound]
        if missing:
            raise _Fail(node, f"{name}() needs {', '.join(missing)}")
        return bound

    def string(self, node: ast.expr, what: str) -> str:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        raise _Fail(node, f"{what} must be a string literal")

    def duration(self, node: ast.expr, what: str = "a duration") -> int:
        text = self.string(node, what)
        try:
            return parse_duration(text)
        except ValueError as e:
            raise _Fail(node, str(e)) from None

    def event(self, node: ast.expr) -> str:
        name = self.string(node, 'the event type (e.g. "opened")')
        if name not in self.schema.events:
            self.fail(node, f"unknown event type {name!r}", did_you_mean(name, self.schema.events))
        return name

    def window(self, bound: dict[str, ast.expr], name: str) -> r.Window:
        within, between = bound.get("within"), bound.get("between")
        if within is not None and between is not None:
            raise _Fail(between, f"{name}() takes within= or between=, not both")
        if within is not None:
            ms = self.duration(within)
            if ms <= 0:
                raise _Fail(within, "within= must be longer than 0")
            return r.Window("within", ms, 0)
        if between is not None:
            if not isinstance(between, ast.Tuple | ast.List) or len(between.elts) != 2:
                raise _Fail(between, 'between= takes two durations, e.g. between=("14d", "7d")')
            older, newer = (self.duration(e) for e in between.elts)
            if older <= newer:
                raise _Fail(between, "between=(A, B) needs the older offset first",
                            'e.g. between=("14d", "7d") is 14 to 7 days ago')
            return r.Window("between", older, newer)
        return r.ALL_TIME

    def _aggregate(self, node: ast.Call, func: r.AggFunc, scope: _Scope) -> r.Expr:
        keywords = ("where", "within", "between") + (
            ("of",) if func not in ("count", "exists", "first", "last") else ()
        )
        bound = self.args(node, func, ["event"], 1, keywords)
        event = self.event(bound["event"])
        of: r.Prop | r.EventField | None = None
        if "of" in bound:
            of = self._of(bound["of"], event)
        elif func == "distinct":
            raise _Fail(node, 'distinct() needs of="property"')
        where = self._filter(bound.get("where"), event)
        return r.Agg(func, event, of, where, self.window(bound, func))

    def _of(self, node: ast.expr, event: str) -> r.Prop | r.EventField:
        name = self.string(node, "of=")
        if name in EVENT_FIELDS:
            return r.EventField(name)  # type: ignore[arg-type]
        props = self.schema.events.get(event)
        if props is not None and name not in props:
            self.fail(node, f"unknown property {name!r} of event {event!r}",
                      did_you_mean(name, [*props, "value"]))
        return r.Prop(name)

    def _filter(self, node: ast.expr | None, event: str) -> r.Expr | None:
        if node is None:
            return None
        return self.expr(node, _Scope(event, event in self.schema.events))

    def _sequence(self, node: ast.Call) -> r.Expr:
        bound = self.args(
            node, "sequence", ["event"], 1,
            ("not_followed_by", "gap", "within", "between", "where", "then_where", "latest"),
        )
        for needed in ("not_followed_by", "gap"):
            if needed not in bound:
                raise _Fail(node, f"sequence() needs {needed}=")
        first = self.event(bound["event"])
        then_not = self.event(bound["not_followed_by"])
        gap = self.duration(bound["gap"], "gap=")
        latest = False
        if "latest" in bound:
            flag = self.expr(bound["latest"], _Scope())
            if not (isinstance(flag, r.Literal_) and isinstance(flag.value, bool)):
                raise _Fail(bound["latest"], "latest= must be true or false")
            latest = flag.value
        return r.Sequence(
            first, then_not, gap, self.window(bound, "sequence"),
            self._filter(bound.get("where"), first), self._filter(bound.get("then_where"), then_not),
            latest,
        )


def _simple_calls(p: _Parser, node: ast.Call, name: str, scope: _Scope) -> r.Expr:
    """Every function but the aggregates and sequence()."""
    schema = p.schema
    if name in ("all", "any"):
        if node.keywords or not node.args:
            raise _Fail(node, f"{name}() takes one or more conditions")
        items = tuple(p.expr(a, scope) for a in node.args)
        return r.And(items) if name == "all" else r.Or(items)
    if name in RFM_FUNCS:
        p.args(node, name, [], 0)
        if not schema.rfm:
            raise _Fail(node, f"{name}() needs an [rfm] section in the configuration")
        return r.Rfm(RFM_FUNCS[name])  # type: ignore[arg-type]
    if name == "now":
        p.args(node, name, [], 0)
        return r.Now()
    one = {"is_set", "is_not_set", "days_since", "percentile", "ago", "date", "datetime",
           "score", "tier", "segment"}
    if name in one:
        arg = p.args(node, name, ["x"], 1)["x"]
        if name in ("is_set", "is_not_set"):
            return r.IsSet(p.expr(arg, scope), name == "is_not_set")
        if name == "days_since":
            return r.DaysSince(p.expr(arg, scope))
        if name == "percentile":
            return r.Rank("percentile", p.expr(arg, scope), 100)
        if name == "ago":
            return r.Ago(p.duration(arg))
        if name in ("date", "datetime"):
            return r.Literal_(_instant(arg, p.string(arg, f"{name}()"), name == "date"), r.Type.DATETIME)
        ref = p.string(arg, f"the {name} name")
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
        bound = p.args(node, name, ["x", "n"], 2)
        n = bound["n"]
        if not (isinstance(n, ast.Constant) and type(n.value) is int and n.value >= 2):
            raise _Fail(n, "ntile(x, n) needs a whole number n >= 2")
        return r.Rank("ntile", p.expr(bound["x"], scope), n.value)
    if name == "between":
        b = p.args(node, name, ["x", "low", "high"], 3)
        return r.Between(p.expr(b["x"], scope), p.expr(b["low"], scope), p.expr(b["high"], scope))
    if name == "coalesce":
        b = p.args(node, name, ["x", "default"], 2)
        return r.Coalesce(p.expr(b["x"], scope), p.expr(b["default"], scope))
    b = p.args(node, name, ["x", "s"], 2)  # contains / starts_with / ends_with
    return r.StrOp(name, p.expr(b["x"], scope), p.expr(b["s"], scope))  # type: ignore[arg-type]


def _instant(node: ast.expr, text: str, date_only: bool) -> int:
    """``date("2024-01-31")`` / ``datetime("2024-01-31T10:00:00+02:00")`` -> epoch ms."""
    try:
        if date_only:
            d = date.fromisoformat(text)
            return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) * 1000
        dt = datetime.fromisoformat(text)
    except ValueError:
        kind = "date" if date_only else "datetime"
        what = 'a date like "2024-01-31"' if date_only else 'an ISO-8601 time like "2024-01-31T10:00:00Z"'
        raise _Fail(node, f"malformed {kind} {text!r}: expected {what}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000

