"""Hypothesis strategies for random, well-typed rule ASTs over a small fixed schema.

``typed(t)`` draws an expression of type ``t`` in the contact scope; ``typed(t, event=...)``
one inside that event type's filter. Every drawn tree type-checks against :data:`SCHEMA`.
"""

from __future__ import annotations

import functools

from hypothesis import strategies as st

from mapping.rules import ast as r
from mapping.rules.source import Schema

T = r.Type
SCHEMA = Schema(
    attributes={"s1": T.STRING, "n1": T.NUMBER, "d1": T.DATETIME, "b1": T.BOOL, "l1": T.LIST},
    events={"ev_a": {"p_s": T.STRING, "p_n": T.NUMBER}, "ev_b": {"p_s": T.STRING}},
    traits={"t_num": r.Agg("count", "ev_a")},
    scores={"sc": ("Low", "High")},
    segments=frozenset({"seg1"}),
    rfm=True,
)
_ORDERED = (T.NUMBER, T.STRING, T.DATETIME)
_MS_2000, _MS_2100 = 946_684_800_000, 4_102_444_800_000

numbers = st.one_of(st.integers(-10**6, 10**6), st.floats(-1e15, 1e15, allow_nan=False))
durations = st.integers(1, 400 * 86_400_000).map(lambda ms: ms - ms % 1000 if ms > 10_000 else ms)


def _props(event: str, t: r.Type) -> list[str]:
    return sorted(p for p, pt in SCHEMA.events[event].items() if pt is t)


@st.composite
def windows(draw: st.DrawFn) -> r.Window:
    kind = draw(st.sampled_from(["all", "within", "between"]))
    if kind == "all":
        return r.ALL_TIME
    if kind == "within":
        return r.Window("within", draw(durations), 0)
    newer = draw(st.integers(0, 30 * 86_400_000))
    return r.Window("between", newer + draw(durations), newer)


def _filter(event: str, depth: int) -> st.SearchStrategy[r.Expr | None]:
    return st.none() | typed(T.BOOL, event, depth - 1)


@st.composite
def aggregates(draw: st.DrawFn, t: r.Type, depth: int) -> r.Agg:
    funcs = {T.NUMBER: ["count", "sum", "avg", "min", "max", "distinct"], T.BOOL: ["exists"],
             T.DATETIME: ["first", "last"]}[t]
    func = draw(st.sampled_from(funcs))
    event = draw(st.sampled_from(sorted(SCHEMA.events)))
    of: r.Prop | r.EventField | None = None
    if func == "distinct":
        of = r.Prop(draw(st.sampled_from(sorted(SCHEMA.events[event]))))
    elif func in ("sum", "avg", "min", "max"):
        options: list[r.Prop | r.EventField | None] = [None, r.EventField("value")]
        options += [r.Prop(p) for p in _props(event, T.NUMBER)]
        of = draw(st.sampled_from(options))
    return r.Agg(func, event, of, draw(_filter(event, depth)), draw(windows()))  # type: ignore[arg-type]


@st.composite
def sequences(draw: st.DrawFn, depth: int) -> r.Sequence:
    first, then_not = (draw(st.sampled_from(sorted(SCHEMA.events))) for _ in range(2))
    return r.Sequence(first, then_not, draw(durations), draw(windows()), draw(_filter(first, depth)),
                      draw(_filter(then_not, depth)), draw(st.booleans()))


def _leaves(t: r.Type, event: str | None) -> st.SearchStrategy[r.Expr]:
    options: list[st.SearchStrategy[r.Expr]] = []
    if event is None:
        options += [st.just(r.Attr(a)) for a, at in SCHEMA.attributes.items() if at is t]
    else:
        options += [st.just(r.Prop(p)) for p in _props(event, t)]
    if t is T.NUMBER:
        options.append(numbers.map(lambda v: r.Literal_(v, T.NUMBER)))
        if event is None:
            options += [st.just(r.TraitRef("t_num")), st.just(r.ScoreRef("sc")),
                        st.sampled_from([r.Rfm("r"), r.Rfm("f"), r.Rfm("m")])]
        else:
            options.append(st.just(r.EventField("value")))
    elif t is T.STRING:
        options.append(st.text(max_size=8).map(lambda v: r.Literal_(v, T.STRING)))
        if event is None:
            options += [st.just(r.TierRef("sc")), st.sampled_from([r.Rfm("score"), r.Rfm("segment")])]
    elif t is T.DATETIME:
        options += [st.integers(_MS_2000, _MS_2100).map(lambda v: r.Literal_(v, T.DATETIME)),
                    st.just(r.Now()), st.integers(0, 10**10).map(r.Ago)]
        if event is not None:
            options.append(st.just(r.EventField("ts")))
    elif t is T.BOOL:
        options.append(st.booleans().map(lambda v: r.Literal_(v, T.BOOL)))
        if event is None:
            options.append(st.just(r.SegmentRef("seg1")))
    elif t is T.LIST:
        options.append(st.lists(st.text(max_size=4), max_size=3).map(lambda v: r.Literal_(tuple(v), T.LIST)))
    return st.one_of(options)


@functools.cache
def typed(t: r.Type, event: str | None = None, depth: int = 3) -> st.SearchStrategy[r.Expr]:
    """A well-typed expression of type ``t`` (``event``: inside that event type's filter)."""
    leaves = _leaves(t, event)
    if depth <= 0:
        return leaves
    sub = depth - 1

    def of(x: r.Type) -> st.SearchStrategy[r.Expr]:
        return typed(x, event, sub)

    options: list[st.SearchStrategy[r.Expr]] = [leaves]
    if t is T.NUMBER:
        options += [
            st.builds(r.Arith, st.sampled_from(["+", "-", "*", "/"]), of(T.NUMBER), of(T.NUMBER)),
            st.builds(r.DaysSince, of(T.DATETIME)),
            st.builds(r.Coalesce, of(T.NUMBER), of(T.NUMBER)),
        ]
        if event is None:
            options += [aggregates(T.NUMBER, depth),
                        st.builds(r.Rank, st.just("percentile"), of(T.NUMBER), st.just(100)),
                        st.builds(r.Rank, st.just("ntile"), of(T.NUMBER), st.integers(2, 10))]
    elif t is T.DATETIME and event is None:
        options.append(aggregates(T.DATETIME, depth))
    elif t is T.BOOL:
        options += [
            st.sampled_from(_ORDERED).flatmap(
                lambda x: st.builds(r.Compare, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
                                    of(x), of(x))),
            st.sampled_from([T.BOOL, T.LIST]).flatmap(
                lambda x: st.builds(r.Compare, st.sampled_from(["==", "!="]), of(x), of(x))),
            st.sampled_from(_ORDERED).flatmap(lambda x: st.builds(r.Between, of(x), of(x), of(x))),
            st.builds(r.In, of(T.STRING), st.lists(st.text(max_size=4), max_size=3).map(
                lambda v: r.Literal_(tuple(v), T.LIST)), st.booleans()),
            st.builds(r.In, of(T.NUMBER), st.lists(st.integers(-5, 5), max_size=3).map(
                lambda v: r.Literal_(tuple(v), T.LIST)), st.booleans()),
            st.builds(r.StrOp, st.sampled_from(["contains", "starts_with", "ends_with"]),
                      of(T.STRING), of(T.STRING)),
            st.builds(r.StrOp, st.just("contains"), of(T.LIST), of(T.STRING)),
            st.builds(r.IsSet, st.sampled_from(list(T)[:5]).flatmap(of), st.booleans()),
            st.builds(r.And, st.lists(of(T.BOOL), min_size=1, max_size=3).map(tuple)),
            st.builds(r.Or, st.lists(of(T.BOOL), min_size=1, max_size=3).map(tuple)),
            st.builds(r.Not, of(T.BOOL)),
        ]
        if event is None:
            options += [aggregates(T.BOOL, depth), sequences(depth)]
    return st.one_of(options)
