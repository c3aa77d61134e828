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
import math
import re
import tokenize

from mapping.errors import Problem, RuleError
from mapping.rules import ast as r
from mapping.rules.calls import FUNCTIONS, Fail, Scope, call
from mapping.rules.source import EVENT_FIELDS, ParsedRule, Schema, Source, did_you_mean

_COMPARE: dict[type[ast.cmpop], r.CompareOp] = {
    ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
}
_ARITH: dict[type[ast.operator], r.ArithOp] = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/",
}
MAX_DEPTH = 100  # nesting levels of a rule (keeps every later recursive pass safe)
MAX_NUMBER = 10**18  # literals beyond this are refused (SQL integer range, float precision)
_ERROR = r.Literal_(None, r.Type.BOOL)  # stands in for a sub-expression that had a problem


def parse_rule(
    text: str | Source, schema: Schema, *, event: str | None = None
) -> ParsedRule:
    """Parse one rule string. With ``event``, names resolve to that event type's properties
    (an event filter such as ``[events.X] exclude``). Raises :class:`RuleError` with every
    problem found."""
    source = text if isinstance(text, Source) else Source(text)
    parser = _Parser(source, schema)
    expr = parser.run(Scope(event, event in schema.events) if event else Scope())
    if parser.problems:
        raise RuleError(problems=parser.problems)
    return ParsedRule(expr, source, parser.spans)


class _Parser:
    def __init__(self, source: Source, schema: Schema):
        self.source, self.schema = source, schema
        self.problems: list[Problem] = []
        self.depth, self.too_deep = 0, False
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

    def run(self, scope: Scope) -> r.Expr:
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

    def expr(self, node: ast.expr, scope: Scope) -> r.Expr:
        if self.depth >= MAX_DEPTH:
            if not self.too_deep:
                self.too_deep = True
                self.fail(node, f"the rule is nested too deeply (more than {MAX_DEPTH} levels)")
            return _ERROR
        self.depth += 1
        try:
            return self.mark(self._expr(node, scope), node)
        except Fail as f:
            self.fail(f.node or node, f.message, f.hint)
            return _ERROR
        finally:
            self.depth -= 1

    # ------------------------------------------------------------------ node kinds

    def _expr(self, node: ast.expr, scope: Scope) -> r.Expr:
        if isinstance(node, ast.BoolOp):
            items = tuple(self.expr(v, scope) for v in node.values)
            return r.And(items) if isinstance(node.op, ast.And) else r.Or(items)
        if isinstance(node, ast.UnaryOp):
            return self._unary(node, scope)
        if isinstance(node, ast.BinOp):
            op = _ARITH.get(type(node.op))
            if op is None:
                raise Fail(node, "unsupported operator: only + - * / are allowed")
            return r.Arith(op, self.expr(node.left, scope), self.expr(node.right, scope))
        if isinstance(node, ast.Compare):
            return self._compare(node, scope)
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._name(node, scope)
        if isinstance(node, ast.Call):
            return call(self, node, scope)
        if isinstance(node, ast.List | ast.Tuple):
            return self._list(node)
        if isinstance(node, ast.Attribute):
            raise Fail(node, "attribute access (a.b) is not supported", f"did you mean {node.attr!r}?")
        raise Fail(node, f"unsupported syntax: {type(node).__name__.lower()}")

    def _unary(self, node: ast.UnaryOp, scope: Scope) -> r.Expr:
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
        raise Fail(node, "unsupported operator ~")

    def _constant(self, node: ast.Constant) -> r.Expr:
        value = node.value
        if isinstance(value, bool):
            return r.Literal_(value, r.Type.BOOL)
        if isinstance(value, str):
            return r.Literal_(value, r.Type.STRING)
        if isinstance(value, int | float):
            if not (math.isfinite(value) and abs(value) < MAX_NUMBER):
                raise Fail(node, f"number out of range: {value!r}", "numbers must be below 1e18 in size")
            return r.Literal_(value, r.Type.NUMBER)
        if value is None:
            raise Fail(node, "None is not a value here", "use is_set(x) / is_not_set(x)")
        raise Fail(node, f"unsupported literal {value!r}")

    def _list(self, node: ast.List | ast.Tuple) -> r.Literal_:
        items: list[str | int | float] = []
        for elt in node.elts:
            lit: r.Expr | None = None
            if isinstance(elt, ast.Constant):
                lit = self._constant(elt)
            elif isinstance(elt, ast.UnaryOp) and isinstance(elt.op, ast.USub | ast.UAdd):
                lit = self._unary(elt, Scope())
            if not isinstance(lit, r.Literal_) or not isinstance(lit.value, str | int | float) or (
                lit.type is r.Type.BOOL
            ):
                raise Fail(elt, "a list may only hold string or number literals")
            items.append(lit.value)
        if len({isinstance(i, str) for i in items}) > 1:
            raise Fail(node, "a list must hold only strings or only numbers")
        return r.Literal_(tuple(items), r.Type.LIST)

    def _name(self, node: ast.Name, scope: Scope) -> r.Expr:
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
            raise Fail(node, f"unknown property {name!r} of event {scope.event!r}", hint)
        if name in self.schema.attributes:
            return r.Attr(name)
        if name in self.schema.traits:
            return r.TraitRef(name)
        if name in FUNCTIONS:
            raise Fail(node, f"{name} is a function", f"call it: {name}(...)")
        hint = did_you_mean(name, [*self.schema.attributes, *self.schema.traits])
        if hint is None and name in EVENT_FIELDS:
            hint = f"{name} exists only inside an aggregate's where="
        raise Fail(node, f"unknown attribute or trait {name!r}", hint)

    def _compare(self, node: ast.Compare, scope: Scope) -> r.Expr:
        ops, operands = node.ops, [node.left, *node.comparators]
        for op in ops:
            if isinstance(op, ast.Is | ast.IsNot):
                raise Fail(node, "'is' is not supported", "use is_set(x) / is_not_set(x) or ==")
        if len(ops) == 1 and isinstance(ops[0], ast.In | ast.NotIn):
            right = node.comparators[0]
            if not isinstance(right, ast.List | ast.Tuple):
                raise Fail(
                    right, "'in' needs a list literal on its right",
                    "use contains(x, s) to test a list attribute or a substring",
                )
            values = self._list(right)
            self.mark(values, right)
            return r.In(self.expr(node.left, scope), values, isinstance(ops[0], ast.NotIn))
        if any(isinstance(op, ast.In | ast.NotIn) for op in ops):
            raise Fail(node, "'in' cannot be chained with other comparisons")
        exprs = [self.expr(e, scope) for e in operands]
        if len(ops) == 2 and all(isinstance(op, ast.LtE) for op in ops):
            return r.Between(exprs[1], exprs[0], exprs[2])
        pairs: list[r.Expr] = []
        for i, op in enumerate(ops):
            pair = r.Compare(_COMPARE[type(op)], exprs[i], exprs[i + 1])
            self.spans[id(pair)] = self.after(operands[i])
            pairs.append(pair)
        return pairs[0] if len(pairs) == 1 else r.And(tuple(pairs))
