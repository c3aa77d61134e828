"""Type checks for parsed rules, and the reference graph between segments and traits.

* :func:`check_rule` reports every type problem of a :class:`ParsedRule` at its location
  (comparing a datetime with a number, ``sum`` of a string property, a segment rule that is not
  a condition, ...). Sub-expressions that are already wrong do not cascade into more problems.
* :func:`type_of` is the type of a checked expression (the engine uses it for traits/fields).
* :func:`references` and :func:`find_cycles` find segment/trait reference cycles.

Typing rules (``docs/rules.md`` has the full table): both sides of a comparison have the same
type, and only numbers, strings and datetimes are ordered; arithmetic is on numbers;
``sum/avg/min/max`` take a NUMBER ``of``; an event filter sees that event's properties plus
``value`` (NUMBER) and ``ts`` (DATETIME).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import fields

from mapping.errors import Problem, RuleError
from mapping.rules import ast as r
from mapping.rules.source import ParsedRule, Schema, Source

T = r.Type
_ORDERED = (T.NUMBER, T.STRING, T.DATETIME)
_AGG_TYPE = {"count": T.NUMBER, "distinct": T.NUMBER, "exists": T.BOOL, "first": T.DATETIME,
             "last": T.DATETIME, "sum": T.NUMBER, "avg": T.NUMBER, "min": T.NUMBER, "max": T.NUMBER}
_RFM_TYPE = {"r": T.NUMBER, "f": T.NUMBER, "m": T.NUMBER, "score": T.STRING, "segment": T.STRING}


def check_rule(
    parsed: ParsedRule, schema: Schema, *, expect: r.Type | None = T.BOOL,
    event: str | None = None, what: str = "a rule",
) -> list[Problem]:
    """Every type problem of ``parsed`` (empty when it type-checks). ``expect`` is the type the
    whole expression must have (None: any); ``event`` is the event type of a filter."""
    checker = _Checker(schema, parsed)
    got = checker.type(parsed.expr, event)
    if expect is not None and got is not None and got is not expect:
        checker.problem(parsed.expr, f"{what} must be a {_name(expect)}, not a {_name(got)}",
                        _bool_hint(got) if expect is T.BOOL else None)
    return checker.problems


def type_of(expr: r.Expr, schema: Schema, event: str | None = None) -> r.Type:
    """The type of ``expr``; raises :class:`RuleError` when it does not type-check."""
    checker = _Checker(schema, ParsedRule(expr, Source("")))
    got = checker.type(expr, event)
    if checker.problems or got is None:
        raise RuleError(problems=checker.problems or None, message="expression does not type-check")
    return got


def children(expr: r.Expr) -> Iterator[r.Expr]:
    """The direct sub-expressions of a node (including ``where`` filters)."""
    for f in fields(expr):
        value = getattr(expr, f.name)
        if isinstance(value, tuple) and f.name == "items":
            yield from value
        elif f.name != "values" and value is not None and not isinstance(  # In.values: a literal
            value, str | int | float | tuple | r.Window | r.Type
        ):
            yield value


def walk(expr: r.Expr) -> Iterator[r.Expr]:
    """``expr`` and all its descendants, depth first."""
    yield expr
    for child in children(expr):
        yield from walk(child)


def references(expr: r.Expr) -> set[tuple[str, str]]:
    """``("segment", name)`` and ``("trait", name)`` referenced anywhere in ``expr``."""
    out: set[tuple[str, str]] = set()
    for node in walk(expr):
        if isinstance(node, r.SegmentRef):
            out.add(("segment", node.name))
        elif isinstance(node, r.TraitRef):
            out.add(("trait", node.name))
    return out


def find_cycles(graph: Mapping[tuple[str, str], set[tuple[str, str]]]) -> list[list[tuple[str, str]]]:
    """Each elementary cycle found by a depth-first search, once, as a path that returns to its
    start (``[a, b, a]``), starting at its smallest node."""
    cycles: list[list[tuple[str, str]]] = []
    seen: set[frozenset[tuple[str, str]]] = set()
    state: dict[tuple[str, str], int] = {}  # 1 = on the stack, 2 = done
    stack: list[tuple[str, str]] = []

    def visit(node: tuple[str, str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    start = cycle.index(min(cycle))
                    rotated = cycle[start:] + cycle[:start]
                    cycles.append([*rotated, rotated[0]])
            elif nxt in graph and state.get(nxt) is None:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def _name(t: r.Type) -> str:
    return {T.BOOL: "condition (bool)", T.LIST: "list"}.get(t, str(t))


def _bool_hint(got: r.Type) -> str | None:
    if got is T.NUMBER:
        return "compare it, e.g. x > 0"
    if got in (T.STRING, T.DATETIME, T.LIST):
        return "test it, e.g. is_set(x)"
    return None


class _Checker:
    def __init__(self, schema: Schema, parsed: ParsedRule):
        self.schema, self.parsed = schema, parsed
        self.problems: list[Problem] = []
        self._traits: dict[str, r.Type | None] = {}
        self._busy: set[str] = set()

    def problem(self, node: r.Expr, message: str, hint: str | None = None) -> None:
        self.problems.append(self.parsed.source.problem(self.parsed.offset(node), message, hint))

    def trait(self, name: str) -> r.Type | None:
        if name in self._traits:
            return self._traits[name]
        expr = self.schema.traits.get(name)
        if expr is None or name in self._busy:
            return None  # unknown, or a cycle (reported by the loader)
        self._busy.add(name)
        sub = _Checker(self.schema, ParsedRule(expr, Source("")))
        sub._busy, sub._traits = self._busy, self._traits
        got = sub.type(expr, None)
        self._busy.discard(name)
        self._traits[name] = None if sub.problems else got
        return self._traits[name]

    def expect(self, node: r.Expr, event: str | None, want: tuple[r.Type, ...], what: str) -> r.Type | None:
        got = self.type(node, event)
        if got is not None and got not in want:
            self.problem(node, f"{what} must be {' or '.join(_name(w) for w in want)}, not {_name(got)}")
            return None
        return got

    def type(self, e: r.Expr, event: str | None) -> r.Type | None:
        match e:
            case r.Literal_(value, t):
                return None if value is None else t
            case r.Attr(name):
                return self.schema.attributes.get(name)
            case r.Prop(name):
                return self.schema.events.get(event or "", {}).get(name)
            case r.EventField(name):
                return T.NUMBER if name == "value" else T.DATETIME
            case r.Now() | r.Ago():
                return T.DATETIME
            case r.Agg():
                return self.agg(e)
            case r.Sequence():
                for sub, ev in ((e.where, e.first), (e.then_where, e.then_not)):
                    if sub is not None:
                        self.expect(sub, ev, (T.BOOL,), "where=")
                return T.BOOL
            case r.ScoreRef() | r.Rank():
                if isinstance(e, r.Rank):
                    self.expect(e.expr, event, (T.NUMBER,), f"{e.kind}() of an expression")
                return T.NUMBER
            case r.TierRef():
                return T.STRING
            case r.TraitRef(name):
                return self.trait(name)
            case r.Rfm(part):
                return _RFM_TYPE[part]
            case r.SegmentRef() | r.IsSet():
                if isinstance(e, r.IsSet):
                    self.type(e.expr, event)
                return T.BOOL
            case r.Compare(op, left, right):
                self.compare(e, op, self.type(left, event), self.type(right, event), left, right)
                return T.BOOL
            case r.In(x, values, _):
                self.membership(e, self.type(x, event), values)
                return T.BOOL
            case r.StrOp(op, x, arg):
                self.expect(x, event, (T.STRING, T.LIST) if op == "contains" else (T.STRING,),
                            f"the first argument of {op}()")
                self.expect(arg, event, (T.STRING,), f"the second argument of {op}()")
                return T.BOOL
            case r.Between(x, low, high):
                types = [self.type(v, event) for v in (x, low, high)]
                self.compare(e, "<=", types[1], types[0], low, x)
                self.compare(e, "<=", types[0], types[2], x, high)
                return T.BOOL
            case r.Arith(op, left, right):
                ok = [self.expect(v, event, (T.NUMBER,), f"an operand of {op}") for v in (left, right)]
                return T.NUMBER if all(ok) else None
            case r.DaysSince(x):
                self.expect(x, event, (T.DATETIME,), "the argument of days_since()")
                return T.NUMBER
            case r.Coalesce(x, default):
                xt, dt = self.type(x, event), self.type(default, event)
                if xt is not None and dt is not None and xt is not dt:
                    self.problem(e, f"coalesce() of a {_name(xt)} needs a {_name(xt)} default, "
                                    f"not a {_name(dt)}")
                return xt or dt
            case r.And(items) | r.Or(items):
                word = "all/and" if isinstance(e, r.And) else "any/or"
                for item in items:
                    self.expect(item, event, (T.BOOL,), f"each part of {word}")
                return T.BOOL
            case r.Not(item):
                self.expect(item, event, (T.BOOL,), "the operand of not")
                return T.BOOL
        raise TypeError(f"not a rule node: {e!r}")

    def agg(self, e: r.Agg) -> r.Type | None:
        props = self.schema.events.get(e.event)
        if e.where is not None:
            self.expect(e.where, e.event, (T.BOOL,), "where=")
        if e.of is not None and e.func in ("sum", "avg", "min", "max") and props is not None:
            of_type = T.DATETIME if e.of.name == "ts" else (
                T.NUMBER if isinstance(e.of, r.EventField) else props.get(e.of.name)
            )
            if of_type is not None and of_type is not T.NUMBER:
                self.problem(e, f"{e.func}() needs a number: of={e.of.name!r} is a {_name(of_type)}",
                             f"numbers of event {e.event!r}: " + ", ".join(
                                 ["value", *sorted(p for p, t in props.items() if t is T.NUMBER)]))
        return _AGG_TYPE[e.func]

    def compare(
        self, node: r.Expr, op: str, lt: r.Type | None, rt: r.Type | None, left: r.Expr, right: r.Expr
    ) -> None:
        if lt is None or rt is None:
            return
        if lt is not rt:
            hint = _compare_hint(lt, rt, left, right)
            self.problem(node, f"cannot compare {_name(lt)} with {_name(rt)}", hint)
        elif op not in ("==", "!=") and lt not in _ORDERED:
            self.problem(node, f"{_name(lt)} values have no order: use == or !=")

    def membership(self, node: r.In, xt: r.Type | None, values: r.Literal_) -> None:
        if xt is None:
            return
        if xt not in (T.STRING, T.NUMBER):
            hint = "use contains(x, s) to test a list" if xt is T.LIST else None
            self.problem(node, f"'in' needs a string or number on its left, not {_name(xt)}", hint)
            return
        items = values.value if isinstance(values.value, tuple) else ()
        want = str if xt is T.STRING else (int, float)
        if any(not isinstance(v, want) for v in items):
            self.problem(node, f"the list must hold {_name(xt)}s to test a {_name(xt)}")


def _compare_hint(lt: r.Type, rt: r.Type, left: r.Expr, right: r.Expr) -> str | None:
    types = {lt, rt}
    if types == {T.DATETIME, T.STRING}:
        lit = left if lt is T.STRING else right
        text = lit.value if isinstance(lit, r.Literal_) and isinstance(lit.value, str) else "2024-01-31"
        return f'write a date as date("{text[:10]}") or ago("30d")'
    if types == {T.DATETIME, T.NUMBER}:
        return 'use days_since(x) for a number of days, or ago("30d") for a relative time'
    if types == {T.BOOL, T.STRING} or types == {T.BOOL, T.NUMBER}:
        return "booleans are true / false"
    return None
