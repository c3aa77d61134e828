"""Property tests: random rule trees over random contacts and events, the compiled SQL against
a plain-Python reference evaluator (below), on SQLite and PostgreSQL. Event times cluster on
window edges (an event exactly 24 h old, one millisecond either side, events after as_of), and
instants are written from datetimes in assorted time zones."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from mapping.models import Config
from mapping.project import Project, SegmentDef
from mapping.rules import ast as r
from sync.evaluate import evaluate
from tests.eval_support import AS_OF, D, Ev, H, clear, load

T = r.Type
EXCLUDE_ABOVE = 90
PROJECT_BASE: dict[str, Any] = dict(
    config=Config(), path=None, base_dir=None,
    attributes={"s": T.STRING, "n": T.NUMBER, "d": T.DATETIME, "b": T.BOOL, "tags": T.LIST},
    date_attributes=frozenset(),
    events={"a": {"p": T.NUMBER, "k": T.STRING}, "b": {"p": T.NUMBER}},
    event_excludes={"a": r.Compare(">", r.EventField("value"), r.Literal_(EXCLUDE_ABOVE, T.NUMBER))},
)
EDGES = [0, 1, -1, H, H - 1, H + 1, 24 * H, 24 * H - 1, 24 * H + 1, 7 * D, 7 * D - 1, 7 * D + 1,
         14 * D, 14 * D + 1, 30 * D]
DURATIONS = [H, 24 * H, 7 * D, 14 * D]
ZONES = [timezone(timedelta(minutes=m)) for m in (0, 60, -300, 330, 545, -720, 840)]


def _ms(dt: datetime) -> int:
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


# ---------------------------------------------------------------------------- data

@dataclass
class Event:
    type: str
    when: datetime  # aware, in some time zone
    value: float | None
    props: dict[str, Any]


strings = st.sampled_from(["", "ab", "abc", "b", "ca"])
numbers = st.integers(-3, 100).map(float)
instants = st.builds(lambda off, tz: datetime.fromtimestamp(0, UTC).astimezone(tz)
                     + timedelta(milliseconds=AS_OF - off),
                     st.one_of(st.sampled_from(EDGES), st.integers(-D, 40 * D)), st.sampled_from(ZONES))
events_st = st.builds(
    Event, st.sampled_from(["a", "b"]), instants, st.one_of(st.none(), numbers),
    st.fixed_dictionaries({}, optional={"p": numbers, "k": strings}))
attrs_st = st.fixed_dictionaries({}, optional={
    "s": strings, "n": numbers, "b": st.booleans(), "tags": st.lists(strings, max_size=3),
    "d": st.builds(lambda off: AS_OF - off, st.sampled_from([*EDGES, 45 * D]))})
people_st = st.lists(st.tuples(attrs_st, st.lists(events_st, max_size=8)), min_size=2, max_size=8)

# ---------------------------------------------------------------------------- rules


def lit(v: Any, t: r.Type) -> r.Literal_:
    return r.Literal_(v, t)


windows = st.one_of(
    st.just(r.ALL_TIME),
    st.builds(lambda d: r.Window("within", d), st.sampled_from(DURATIONS)),
    st.builds(lambda a, b: r.Window("between", max(a, b) + 1, min(a, b)),
              st.sampled_from(DURATIONS), st.sampled_from([0, *DURATIONS])))
event_where = st.one_of(
    st.none(),
    st.builds(lambda op, v: r.Compare(op, r.Prop("p"), lit(v, T.NUMBER)),
              st.sampled_from(["<", ">=", "=="]), numbers),
    st.builds(lambda op, v: r.Compare(op, r.EventField("value"), lit(v, T.NUMBER)),
              st.sampled_from(["<", ">"]), numbers),
)
num_aggs = st.builds(lambda f, of, w, where: r.Agg(f, "b", of, where, w),
                     st.sampled_from(["count", "sum", "avg", "min", "max", "distinct"]),
                     st.sampled_from([None, r.Prop("p"), r.EventField("value")]), windows, event_where)
a_aggs = st.builds(lambda f, w: r.Agg(f, "a", None, None, w),
                   st.sampled_from(["count", "sum", "max"]), windows)
dt_aggs = st.builds(lambda f, t, w, where: r.Agg(f, t, None, where, w),
                    st.sampled_from(["first", "last"]), st.sampled_from(["a", "b"]), windows, event_where)
dt_lit = st.builds(lambda off, tz: lit(_ms(datetime.fromtimestamp((AS_OF - off) / 1000, tz)), T.DATETIME),
                   st.sampled_from(EDGES), st.sampled_from(ZONES))
dt_exprs = st.one_of(st.just(r.Attr("d")), dt_aggs, st.just(r.Now()),
                     st.builds(r.Ago, st.sampled_from(DURATIONS)), dt_lit)
num_leaf = st.one_of(st.builds(lit, numbers, st.just(T.NUMBER)), st.just(r.Attr("n")), num_aggs, a_aggs,
                     st.builds(r.DaysSince, dt_exprs))
nums = st.recursive(num_leaf, lambda inner: st.one_of(
    st.builds(r.Arith, st.sampled_from(["+", "-", "*", "/"]), inner, inner),
    st.builds(r.Coalesce, inner, st.builds(lit, numbers, st.just(T.NUMBER)))), max_leaves=3)
ranked = st.builds(lambda kind, x, n: r.Rank(kind, x, 100 if kind == "percentile" else n),
                   st.sampled_from(["percentile", "ntile"]), st.one_of(st.just(r.Attr("n")), num_aggs),
                   st.integers(2, 5))
sequences = st.builds(lambda first, gap, w, latest: r.Sequence(first, "b" if first == "a" else "a", gap, w,
                                                               latest=latest),
                      st.sampled_from(["a", "b"]), st.sampled_from([H, 24 * H]), windows, st.booleans())
ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
bool_leaf = st.one_of(
    st.builds(r.Compare, ops, nums, nums),
    st.builds(r.Compare, ops, ranked, st.builds(lit, st.integers(0, 100).map(float), st.just(T.NUMBER))),
    st.builds(r.Compare, ops, dt_exprs, dt_exprs),
    st.builds(lambda op, v: r.Compare(op, r.Attr("s"), lit(v, T.STRING)), ops, strings),
    st.builds(lambda v: r.Compare("==", r.Attr("b"), lit(v, T.BOOL)), st.booleans()),
    st.builds(lambda vs, neg: r.In(r.Attr("s"), lit(tuple(vs), T.LIST), neg), st.lists(strings, max_size=2),
              st.booleans()),
    st.builds(lambda op, v: r.StrOp(op, r.Attr("s"), lit(v, T.STRING)),
              st.sampled_from(["contains", "starts_with", "ends_with"]), strings),
    st.builds(lambda v: r.StrOp("contains", r.Attr("tags"), lit(v, T.STRING)), strings),
    st.builds(lambda a, neg: r.IsSet(r.Attr(a), neg), st.sampled_from(["s", "n", "d", "b", "tags"]),
              st.booleans()),
    st.builds(r.Between, nums, nums, nums),
    st.builds(lambda t, w, where: r.Agg("exists", t, None, where, w), st.sampled_from(["a", "b"]),
              windows, event_where),
    sequences,
)
bools = st.recursive(bool_leaf, lambda inner: st.one_of(
    st.builds(lambda xs: r.And(tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
    st.builds(lambda xs: r.Or(tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
    st.builds(r.Not, inner)), max_leaves=5)

# ---------------------------------------------------------------------------- reference


class Ref:
    """The plain-Python meaning of a rule (SQL three-valued logic; None is unknown)."""

    def __init__(self, people: list[tuple[dict[str, Any], list[Event]]]) -> None:
        self.people = people

    def events(self, evs: list[Event], typ: str, window: r.Window, where: r.Expr | None) -> list[Event]:
        out = []
        for e in evs:
            ts = _ms(e.when)
            if e.type != typ or ts > AS_OF:
                continue
            if typ == "a" and e.value is not None and e.value > EXCLUDE_ABOVE:
                continue
            if window.kind != "all" and not (AS_OF - (window.start_ms or 0) < ts <= AS_OF - window.end_ms):
                continue
            if where is not None and self.value(where, {}, [], e) is not True:
                continue
            out.append(e)
        return out

    def agg(self, a: r.Agg, evs: list[Event]) -> Any:
        got = self.events(evs, a.event, a.window, a.where)
        if a.func in ("count", "exists"):
            return len(got) if a.func == "count" else bool(got)
        if a.func in ("first", "last"):
            ts = [_ms(e.when) for e in got]
            return (min if a.func == "first" else max)(ts) if ts else None
        raw = [e.props.get(a.of.name) if isinstance(a.of, r.Prop) else e.value for e in got]
        xs: list[float] = [x for x in raw if x is not None]
        if a.func == "distinct":
            return len(set(xs))
        if not xs:
            return None
        if a.func == "avg":
            return sum(xs) / len(xs)
        return {"sum": sum(xs), "min": min(xs), "max": max(xs)}[a.func]

    def sequence(self, s: r.Sequence, evs: list[Event]) -> bool:
        firsts = self.events(evs, s.first, s.window, None)
        if s.latest and firsts:
            firsts = [max(firsts, key=lambda e: _ms(e.when))]
        thens = [_ms(e.when) for e in self.events(evs, s.then_not, r.ALL_TIME, None)]
        return any(_ms(a.when) + s.gap_ms <= AS_OF
                   and not any(_ms(a.when) <= b <= _ms(a.when) + s.gap_ms for b in thens) for a in firsts)

    def rank(self, k: r.Rank, attrs: dict[str, Any], evs: list[Event]) -> Any:
        v = self.value(k.expr, attrs, evs)
        population = [x for x in (self.value(k.expr, a, e) for a, e in self.people) if x is not None]
        if v is None or not population:
            return None
        lower = sum(1 for x in population if x < v)
        bucket = math.floor(k.n * lower / len(population)) + 1
        return bucket - 1 if k.kind == "percentile" else bucket

    def value(self, x: r.Expr, attrs: dict[str, Any], evs: list[Event],
              ev: Event | None = None) -> Any:
        def v(e: r.Expr) -> Any:
            return self.value(e, attrs, evs, ev)

        if isinstance(x, r.Literal_):
            return x.value
        if isinstance(x, r.Attr):
            return attrs.get(x.name)
        if isinstance(x, r.Prop):
            return ev.props.get(x.name) if ev else None
        if isinstance(x, r.EventField):
            return (ev.value if x.name == "value" else _ms(ev.when)) if ev else None
        if isinstance(x, r.Now):
            return AS_OF
        if isinstance(x, r.Ago):
            return AS_OF - x.duration_ms
        if isinstance(x, r.Agg):
            return self.agg(x, evs)
        if isinstance(x, r.Sequence):
            return self.sequence(x, evs)
        if isinstance(x, r.Rank):
            return self.rank(x, attrs, evs)
        if isinstance(x, r.Compare):
            a, b = v(x.left), v(x.right)
            if a is None or b is None:
                return None
            return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[x.op]
        if isinstance(x, r.In):
            values = x.values.value
            assert isinstance(values, tuple)
            if not values:
                return x.negate
            a = v(x.expr)
            return None if a is None else (a in values) != x.negate
        if isinstance(x, r.StrOp):
            a, b = v(x.expr), v(x.arg)
            if a is None or b is None:
                return None
            if isinstance(a, list) or x.op == "contains":
                return b in a
            return a.startswith(b) if x.op == "starts_with" else a.endswith(b)
        if isinstance(x, r.IsSet):
            a = v(x.expr)
            is_set = a is not None and a != "" and a != []
            return is_set != x.negate
        if isinstance(x, r.Between):
            return self.value(r.And((r.Compare(">=", x.expr, x.low), r.Compare("<=", x.expr, x.high))),
                              attrs, evs, ev)
        if isinstance(x, r.Arith):
            a, b = v(x.left), v(x.right)
            if a is None or b is None or (x.op == "/" and b == 0):
                return None
            return {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else None}[x.op]
        if isinstance(x, r.DaysSince):
            a = v(x.expr)
            return None if a is None else math.floor((AS_OF - a) / D)
        if isinstance(x, r.Coalesce):
            a = v(x.expr)
            return v(x.default) if a is None else a
        if isinstance(x, r.Not):
            a = v(x.item)
            return None if a is None else not a
        assert isinstance(x, r.And | r.Or)
        results = [v(i) for i in x.items]
        stop = isinstance(x, r.Or)
        if any(res is not None and bool(res) is stop for res in results):
            return stop
        return None if any(res is None for res in results) else not stop


def _project(rule: r.Expr, field: r.Expr) -> Project:
    return Project(**PROJECT_BASE, segments={"s": SegmentDef("s", rule)}, fields={"f": field, "r": rule})


def _load(engine: Engine, people: list[tuple[dict[str, Any], list[Event]]]) -> dict[str, int]:
    clear(engine)
    contacts = {f"c{i}": attrs for i, (attrs, _) in enumerate(people)}
    evs = [Ev(f"c{i}", e.type, AS_OF - _ms(e.when), e.value, e.props)
           for i, (_, events) in enumerate(people) for e in events]
    return load(engine, ["a", "b"], contacts, evs)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


@pytest.mark.slow
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(people=people_st, rule=bools, field=nums)
def test_compiled_sql_agrees_with_the_reference(eval_engine_module: Engine, people: Any, rule: r.Expr,
                                                field: r.Expr) -> None:
    ids = _load(eval_engine_module, people)
    project = _project(rule, field)
    full = evaluate(eval_engine_module, project, AS_OF, persist=False)
    ref = Ref(people)
    want = {f"c{i}" for i, (attrs, evs) in enumerate(people) if ref.value(rule, attrs, evs) is True}
    assert {c.key for c in full.results if "s" in c.segments} == want
    for c in full.results:
        attrs, evs = people[int(str(c.key)[1:])]
        assert _close(c.fields["f"], ref.value(field, attrs, evs)), (c.key, c.fields)
        assert c.fields["r"] is ref.value(rule, attrs, evs), (c.key, c.fields)  # unknown stays None
    subset = evaluate(eval_engine_module, project, AS_OF, contact_ids=list(ids.values()), persist=False)
    assert subset.results == full.results


@pytest.mark.parametrize("offset", [-1, 0, 1, 24 * H - 1, 24 * H, 24 * H + 1, 7 * D - 1, 7 * D, 7 * D + 1])
@pytest.mark.parametrize("zone", [ZONES[0], ZONES[3], ZONES[5]])
def test_window_edges(eval_engine: Engine, offset: int, zone: timezone) -> None:
    """Windows are half-open: (as_of - T, as_of]; between (A, B) is (as_of - A, as_of - B]."""
    when = datetime.fromtimestamp(0, UTC).astimezone(zone) + timedelta(milliseconds=AS_OF - offset)
    _load(eval_engine, [({}, [Event("b", when, 1.0, {})])])
    day, week = r.Window("within", 24 * H), r.Window("within", 7 * D)
    fields: dict[str, r.Expr] = {
        "day": r.Agg("count", "b", window=day), "week": r.Agg("count", "b", window=week),
        "between": r.Agg("count", "b", window=r.Window("between", 7 * D, 24 * H)), "last": r.Agg("last", "b")}
    segments = {"s": SegmentDef("s", r.Agg("exists", "b", window=day))}
    project = Project(**PROJECT_BASE, segments=segments, fields=fields)
    got = evaluate(eval_engine, project, AS_OF, persist=False).results[0]
    assert got.fields == {"day": int(0 <= offset < 24 * H), "week": int(0 <= offset < 7 * D),
                          "between": int(24 * H <= offset < 7 * D),
                          "last": AS_OF - offset if offset >= 0 else None}
    assert ("s" in got.segments) is (0 <= offset < 24 * H)
