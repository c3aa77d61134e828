"""The real-time (subset) path's machinery: statements rendered once and run on the DBAPI
cursor, and compiled plans kept across calls only while the store's fingerprint holds."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, Float, bindparam, literal, select

from mapping.config import load_project, load_project_text
from sync.evaluate import evaluate
from sync.evaluate.compile import ExprCompiler
from sync.evaluate.rawsql import RawStatement
from sync.store.db import open_store
from sync.store.schema import contacts
from tests.eval_support import AS_OF, D, Ev, add_events, load, members
from tests.test_eval_seeds import _percentiles
from tests.test_eval_state import EXAMPLE

TYPED = """
[attributes]
tags = "list"
score = "number"
vip = "bool"
[events.a]
[events.b]
[segments.has_b]
rule = 'exists("b")'
[fields]
bs = 'count("b")'
"""


@pytest.mark.parametrize("n", [0, 1, 3, 7])
def test_raw_statement_rows_equal_sqlalchemy_rows(eval_engine: Engine, n: int) -> None:
    project = load_project_text(TYPED, "typed.toml")
    people = {f"c{i}": {"tags": ["x", str(i)], "score": i / 2, "vip": i % 2 == 0} for i in range(9)}
    people["bare"] = {}
    ids = load(eval_engine, project, people)
    wanted = sorted(ids.values())[1:1 + n]
    with eval_engine.connect() as conn:
        exprs = ExprCompiler(project, conn.dialect.name, contacts)
        stmt = (select(contacts.c.id, contacts.c.attributes, exprs.attribute("score"),
                       exprs.attribute("vip"), contacts.c.attributes["tags"],
                       literal(2.5, Float) * bindparam("as_of"), contacts.c.email + literal("!"))
                .where(contacts.c.id.in_(bindparam("ids", expanding=True))).order_by(contacts.c.id))
        raw = RawStatement(stmt, conn.dialect)
        for as_of in (1, 2):  # the second call reuses the rendered form
            want = [tuple(r) for r in conn.execute(stmt, {"as_of": as_of, "ids": wanted})]
            assert [tuple(r) for r in raw.rows(conn, as_of, wanted)] == want
            assert len(want) == n
    if n:
        assert want[0][1]["tags"] == ["x", "1"]


def _other_engine(engine: Engine) -> Engine:
    """A second engine on the same store: what another process would use."""
    return open_store(engine.url.render_as_string(hide_password=False))


def test_kept_plan_follows_a_full_run_made_elsewhere(eval_engine: Engine) -> None:
    project = load_project(EXAMPLE)
    people, events, _ = _percentiles()
    ids = load(eval_engine, project, people, events)
    evaluate(eval_engine, project, AS_OF)
    before = evaluate(eval_engine, project, AS_OF, contact_ids=list(ids.values()), persist=False)
    assert members(before, "engagement_top") == {"p6", "p7"}
    add_events(eval_engine, ids, [Ev("p0", "opened_email", 30 * D)] * 9)
    other = _other_engine(eval_engine)
    try:
        full = evaluate(other, project, AS_OF)  # new cut-offs, stored by "another process"
    finally:
        other.dispose()
    assert members(full, "engagement_top") == {"p0", "p7"}
    after = evaluate(eval_engine, project, AS_OF, contact_ids=list(ids.values()), persist=False)
    assert after.results == full.results


def test_kept_plan_follows_new_event_types(eval_engine: Engine) -> None:
    project = load_project_text(TYPED, "typed.toml")
    ids = load(eval_engine, ["a"], {"c": {}})  # type "b" unknown to the store yet
    first = evaluate(eval_engine, project, AS_OF, contact_ids=[ids["c"]], persist=False)
    assert first.results[0].fields["bs"] == 0
    load(eval_engine, ["b"], {})
    add_events(eval_engine, ids, [Ev("c", "b", D), Ev("c", "b", 2 * D)])
    again: Any = evaluate(eval_engine, project, AS_OF, contact_ids=[ids["c"]], persist=False)
    assert again.results[0].fields["bs"] == 2
    assert again.results[0].segments == ("has_b",)
