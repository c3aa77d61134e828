"""Stateful verdicts on flapping input: min_dwell, cooldown, lifecycle and exclusive groups,
persisted memberships, and the subset path agreeing with the full path."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update

from mapping.config import load_project, load_project_text
from sync.evaluate import evaluate
from sync.store.schema import contacts, group_state, memberships
from tests.eval_support import AS_OF, MIN, D, Ev, H, add_events, load, members
from tests.test_eval_seeds import _percentiles, _rfm, _winback

FLAPPING = """
[events.ping]
[attributes]
plan = "string"
[segments.dwell]
rule = 'exists("ping", within="1h")'
min_dwell = "3h"
[segments.cool]
rule = 'exists("ping", within="1h")'
cooldown = "5h"
[segments.uses_dwell]
rule = 'segment("dwell") and not segment("cool")'
[segments.prospect]
rule = 'plan == "free"'
[segments.trial]
rule = 'plan == "trial"'
[segments.customer]
rule = 'plan == "paid"'
[groups.stage]
kind = "lifecycle"
segments = ["prospect", "trial", "customer"]
"""

# (hours after T0, ping now?, plan, expected members)
TIMELINE = [
    (0.0, True, "free", {"dwell", "cool", "prospect"}),
    (2.0, False, "free", {"dwell", "uses_dwell", "prospect"}),  # kept by min_dwell; cool left
    (2.5, True, "trial", {"dwell", "uses_dwell", "trial"}),  # cooldown blocks re-entry
    (4.0, False, "free", {"trial"}),  # dwell over; the stage never moves back
    (8.0, True, "paid", {"dwell", "cool", "customer"}),  # cooldown over
    (9.5, False, "trial", {"dwell", "uses_dwell", "customer"}),
]
T0 = AS_OF - 10 * H


@pytest.mark.parametrize("subset", [False, True], ids=["full", "subset"])
def test_dwell_cooldown_and_lifecycle_on_flapping_input(eval_engine: Engine, subset: bool) -> None:
    """The same timeline through the whole-population path and through the real-time path
    (which reads the state the previous step persisted)."""
    project = load_project_text(FLAPPING, "flapping.toml")
    ids = load(eval_engine, project, {"x": {}})
    for hours, ping, plan, want in TIMELINE:
        now = T0 + int(hours * H)
        with eval_engine.begin() as conn:
            conn.execute(update(contacts).values(attributes={"plan": plan}))
        if ping:
            add_events(eval_engine, ids, [Ev("x", "ping", 0)], as_of=now)
        result = evaluate(eval_engine, project, now, contact_ids=[ids["x"]] if subset else None)
        got = next(r for r in result.results if r.key == "x")
        assert set(got.segments) == want, hours
        assert got.fields["stage"] == next(s for s in ("customer", "trial", "prospect") if s in want)
    with eval_engine.connect() as conn:
        rows = conn.execute(select(memberships.c.segment, memberships.c.entered_at, memberships.c.exited_at)
                            .where(memberships.c.contact_id == ids["x"], memberships.c.segment == "cool")
                            .order_by(memberships.c.entered_at)).all()
        stage = conn.execute(select(group_state.c.value).where(group_state.c.contact_id == ids["x"])).scalar()
    assert [tuple(r) for r in rows] == [("cool", T0, T0 + 2 * H), ("cool", T0 + 8 * H, T0 + int(9.5 * H))]
    assert stage == "customer"


def test_entered_exited_counts_and_idempotence(eval_engine: Engine) -> None:
    project = load_project_text(FLAPPING, "flapping.toml")
    load(eval_engine, project, {"a": {"plan": "free"}, "b": {"plan": "trial"}},
         [Ev("a", "ping", 10 * MIN)])
    first = evaluate(eval_engine, project, AS_OF)
    assert first.entered == {"dwell": 1, "cool": 1, "uses_dwell": 0, "prospect": 1, "trial": 1, "customer": 0}
    assert evaluate(eval_engine, project, AS_OF).entered == dict.fromkeys(project.segments, 0)
    later = evaluate(eval_engine, project, AS_OF + 4 * H)
    assert later.exited == {"dwell": 1, "cool": 1, "uses_dwell": 0, "prospect": 0, "trial": 0, "customer": 0}
    assert later.sizes == {"dwell": 0, "cool": 0, "uses_dwell": 0, "prospect": 1, "trial": 1, "customer": 0}


def test_dry_run_writes_nothing(eval_engine: Engine) -> None:
    project = load_project_text(FLAPPING, "flapping.toml")
    load(eval_engine, project, {"a": {"plan": "free"}}, [Ev("a", "ping", 10 * MIN)])
    assert evaluate(eval_engine, project, AS_OF, persist=False).entered["dwell"] == 1
    with eval_engine.connect() as conn:
        assert conn.execute(select(memberships)).all() == []
    assert evaluate(eval_engine, project, AS_OF).entered["dwell"] == 1


EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


@pytest.mark.parametrize("scenario", [_rfm, _percentiles, _winback])
def test_subset_path_matches_full_path(eval_engine: Engine, scenario: object) -> None:
    project = load_project(EXAMPLE)
    people, events, _ = scenario()  # type: ignore[operator]
    ids = load(eval_engine, project, people, events)
    full = evaluate(eval_engine, project, AS_OF)  # persists the rank cut-offs
    for cid in ids.values():
        single = evaluate(eval_engine, project, AS_OF, contact_ids=[cid], persist=False)
        assert single.results == [r for r in full.results if r.contact_id == cid]
    both = evaluate(eval_engine, project, AS_OF, contact_ids=list(ids.values()), persist=False)
    assert both.results == full.results


def test_subset_ranks_use_the_last_full_cutoffs(eval_engine: Engine) -> None:
    project = load_project(EXAMPLE)
    people, events, expected = _percentiles()
    ids = load(eval_engine, project, people, events)
    evaluate(eval_engine, project, AS_OF)
    assert "p0" in expected["engagement_bottom"]
    # p0 becomes the most engaged; ranked against the stored population it is now on top
    add_events(eval_engine, ids, [Ev("p0", "opened_email", 30 * D)] * 9)
    single = evaluate(eval_engine, project, AS_OF, contact_ids=[ids["p0"]], persist=False)
    assert members(single, "engagement_top") == {"p0"}
    # the stored cut-offs are those of the last full evaluation, not recomputed
    assert members(evaluate(eval_engine, project, AS_OF, contact_ids=[ids["p7"]], persist=False),
                   "engagement_top") == {"p7"}
