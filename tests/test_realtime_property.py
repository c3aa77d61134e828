"""Property: ticks keep memberships exact. For random rules (windows, sequences, dates, ago(),
days_since(), segment references, min_dwell, cooldown) over random contacts and events, after a
full evaluation and then ticks at arbitrary later instants, a full evaluation at each tick's
instant finds nothing to change: the ticks re-evaluated every contact whose verdict the clock
moved. On SQLite and PostgreSQL. (Ranks are left out: their cut-offs are refreshed by the full
run, not by ticks.)"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete

from mapping.project import Project, SegmentDef
from mapping.rules import ast as r
from sync.evaluate import evaluate
from sync.realtime.ticks import tick
from sync.store import schema
from tests.eval_support import AS_OF, MIN, D, H
from tests.realtime_support import open_members
from tests.test_eval_property import (
    PROJECT_BASE,
    dt_exprs,
    event_where,
    nums,
    ops,
    people_st,
    sequences,
    strings,
    windows,
)
from tests.test_eval_property import _load as load_people

T = r.Type
bool_leaf = st.one_of(
    st.builds(r.Compare, ops, nums, nums),
    st.builds(r.Compare, ops, dt_exprs, dt_exprs),
    st.builds(lambda op, v: r.Compare(op, r.Attr("s"), r.Literal_(v, T.STRING)), ops, strings),
    st.builds(r.Between, nums, nums, nums),
    st.builds(lambda t, w, where: r.Agg("exists", t, None, where, w), st.sampled_from(["a", "b"]),
              windows, event_where),
    st.builds(lambda op, k, x: r.Compare(op, r.DaysSince(x), r.Literal_(float(k), T.NUMBER)),
              ops, st.integers(-2, 15), dt_exprs),
    sequences,
)
bools = st.recursive(bool_leaf, lambda inner: st.one_of(
    st.builds(lambda xs: r.And(tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
    st.builds(lambda xs: r.Or(tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
    st.builds(r.Not, inner)), max_leaves=4)
holds = st.sampled_from([None, MIN, H, 2 * D])
steps = st.lists(st.one_of(st.sampled_from([1, MIN, H, 23 * H, D, 7 * D]), st.integers(1, 3 * D)),
                 min_size=1, max_size=8)


def _project(s_rule: r.Expr, t_rule: r.Expr, dwell: int | None, cooldown: int | None,
             via_ref: bool) -> Project:
    t: r.Expr = r.And((r.SegmentRef("s"), t_rule)) if via_ref else t_rule
    return Project(**PROJECT_BASE, segments={
        "s": SegmentDef("s", s_rule, min_dwell_ms=dwell, cooldown_ms=cooldown),
        "t": SegmentDef("t", t, exclude=r.Agg("exists", "b", window=r.Window("within", H)),
                        cooldown_ms=cooldown)})


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(people=people_st, s_rule=bools, t_rule=bools, dwell=holds, cooldown=holds, via_ref=st.booleans(),
       start=st.integers(-20 * D, 5 * D), steps=steps)
def test_ticks_agree_with_a_full_evaluation(eval_engine_module: Engine, people: Any, s_rule: r.Expr,
                                            t_rule: r.Expr, dwell: int | None, cooldown: int | None,
                                            via_ref: bool, start: int, steps: list[int]) -> None:
    engine = eval_engine_module
    load_people(engine, people)
    with engine.begin() as conn:
        conn.execute(delete(schema.cursors))
    project = _project(s_rule, t_rule, dwell, cooldown, via_ref)
    now = AS_OF + start
    evaluate(engine, project, now)  # the last full run
    tick(engine, project, now)
    for step in steps:
        now += step
        report = tick(engine, project, now)
        full = evaluate(engine, project, now, persist=False)
        assert not any(full.entered.values()) and not any(full.exited.values()), (report, full.entered,
                                                                                  full.exited)
        for seg in ("s", "t"):
            assert open_members(engine, seg) == {c.contact_id for c in full.results if seg in c.segments}


@pytest.mark.parametrize("construct", [
    r.Compare("<", r.Agg("last", "a"), r.Ago(7 * D)),
    r.Compare(">=", r.DaysSince(r.Attr("d")), r.Literal_(3.0, T.NUMBER)),
    r.Sequence("a", "b", 24 * H, r.Window("within", 7 * D), latest=True),
])
def test_exact_constructs_never_select_everyone(eval_engine: Engine, construct: r.Expr) -> None:
    """The exact edges find a handful of contacts, not the population (a weak ticker that
    re-evaluated everyone would pass the property above too)."""
    from datetime import UTC, datetime

    from tests.test_eval_property import Event

    def at(offset: int) -> datetime:
        return datetime.fromtimestamp((AS_OF - offset) / 1000, UTC)

    people = [({"d": AS_OF - 3 * D + 30_000}, [Event("a", at(7 * D - 30_000), None, {})])]
    people += [({"d": AS_OF - 100 * D}, [Event("a", at(60 * D), None, {})]) for _ in range(30)]
    load_people(eval_engine, people)
    project = _project(construct, r.Literal_(False, T.BOOL), None, None, False)
    evaluate(eval_engine, project, AS_OF)
    tick(eval_engine, project, AS_OF)
    report = tick(eval_engine, project, AS_OF + MIN)
    assert not report.everyone and report.due == 1
