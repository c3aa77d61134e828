"""Exact-time exits and entries with a controlled clock: a member leaves "opened in the last 7
days" on the first tick after its last open turned 7 days old, an abandoned cart enters on the
first tick after 48 hours, and only the contacts whose edge passed are re-evaluated (never the
population); on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import Engine

import sync.realtime.refresh as refresh_mod
from mapping.project import Project
from sync.evaluate import EvaluationResult, evaluate
from sync.planning import plan_run
from sync.realtime import ticks
from sync.realtime.edges import AttrEdge, DwellEdge, EventEdge, EventSpan, Everyone, InstantEdge, time_edges
from sync.realtime.ticks import due_contacts, tick
from tests.eval_support import AS_OF, MIN, D, Ev, H, add_events
from tests.realtime_support import ENTER, open_members, outbox_events, outbox_fields, shop
from tests.sync_support import populate, record_id

T0 = AS_OF
PEOPLE: dict[str, dict[str, Any]] = {
    "ann@x.com": {}, "bob@x.com": {},
    "cy@x.com": {"last_cart_item": "red shoes", "recommended_product": "socks"},
    "dee@x.com": {"last_cart_item": "hat"},
    **{f"filler{i}@x.com": {} for i in range(40)},
}
EVENTS = [
    Ev("ann@x.com", "opened_email", 7 * D - 90_000),  # turns 7 days old at T0 + 90 s
    Ev("bob@x.com", "opened_email", D),
    Ev("cy@x.com", "added_to_cart", 48 * H - 30_000, props={"product": "red shoes"}),  # 48 h at T0 + 30 s
    Ev("dee@x.com", "added_to_cart", 48 * H - 30_000, props={"product": "hat"}),
    Ev("dee@x.com", "placed_order", 47 * H),  # ordered within 48 h: never abandoned
    *[Ev(f"filler{i}@x.com", "opened_email", 30 * D + i * MIN) for i in range(40)],
]


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[Sequence[int] | None]:
    """The ``contact_ids`` of every evaluation the real-time path runs."""
    calls: list[Sequence[int] | None] = []

    def spying(engine: Engine, project: Project, as_of_ms: int, contact_ids: Sequence[int] | None = None,
               persist: bool = True) -> EvaluationResult:
        calls.append(contact_ids)
        return evaluate(engine, project, as_of_ms, contact_ids, persist)

    monkeypatch.setattr(refresh_mod, "evaluate", spying)
    return calls


def _setup(engine: Engine, dwell: str = "") -> tuple[Project, dict[str, int]]:
    proj = shop(dwell)
    ids = populate(engine, proj, PEOPLE)
    add_events(engine, ids, EVENTS)
    full = evaluate(engine, proj, T0)  # the last scheduled full run
    plan_run(engine, proj, full, now_ms=T0)
    assert tick(engine, proj, T0).since_ms == T0 - ticks.DEFAULT_TICK_MS  # no cursor yet
    return proj, ids


def test_member_leaves_within_one_tick_and_cart_enters_at_48h(eval_engine: Engine,
                                                             spy: list[Sequence[int] | None]) -> None:
    proj, ids = _setup(eval_engine)
    ann, cy, dee = ids["ann@x.com"], ids["cy@x.com"], ids["dee@x.com"]
    assert ann in open_members(eval_engine, "recent_openers")
    assert open_members(eval_engine, "cart_abandoners") == set()
    spy.clear()

    first = tick(eval_engine, proj, T0 + MIN)  # covers (T0, T0 + 60 s]: the carts turned 48 h old
    assert (first.since_ms, first.due, first.everyone) == (T0, 2, False)
    assert spy == [[cy, dee]]
    assert first.refresh is not None and first.refresh.entered == {"cart_abandoners": 1}
    assert open_members(eval_engine, "cart_abandoners") == {cy}
    assert ann in open_members(eval_engine, "recent_openers")  # 7 days are up only at T0 + 90 s

    second = tick(eval_engine, proj, T0 + 2 * MIN)
    assert spy[1:] == [[ann]]
    assert second.refresh is not None and second.refresh.exited == {"recent_openers": 1}
    assert ann not in open_members(eval_engine, "recent_openers")
    assert ids["bob@x.com"] in open_members(eval_engine, "recent_openers")

    # a tick with no edge evaluates nobody
    third = tick(eval_engine, proj, T0 + 3 * MIN)
    assert third.due == 0 and third.refresh is None and len(spy) == 2

    # the changes are planned for the destinations, triggered by the ticks
    fields = outbox_fields(eval_engine, "hubspot")
    assert fields[(record_id("hubspot", "cy@x.com"), "field:cart_abandoner")] is True
    assert fields[(record_id("hubspot", "ann@x.com"), "field:recent_opener")] is False
    assert outbox_events(eval_engine) == [{
        "record": record_id("klaviyo", "cy@x.com"), "metric": ENTER, "trigger": "tick",
        "properties": {"cart_item": "red shoes", "recommended_product": "socks", "engagement": 15,
                       "segment": "cart_abandoners", "transition": "enter",
                       "at": "2024-06-01T12:01:00.000Z"}}]


@pytest.mark.parametrize("step", [MIN, 7 * MIN, H])
def test_exit_lags_the_edge_by_less_than_one_tick(eval_engine: Engine, step: int) -> None:
    proj, ids = _setup(eval_engine)
    edge = T0 + 90_000  # ann's last open turns 7 days old
    now = T0
    while ids["ann@x.com"] in open_members(eval_engine, "recent_openers"):
        now += step
        tick(eval_engine, proj, now)
    assert edge <= now < edge + step


def test_cursor_is_durable_and_a_gap_is_caught_up(eval_engine: Engine) -> None:
    """Ticks missed (the service was down) are covered by the next one: nothing is skipped."""
    proj, ids = _setup(eval_engine)
    report = tick(eval_engine, proj, T0 + 7 * D)
    assert report.since_ms == T0
    assert report.due == 4  # ann, bob (opens 7 days old), cy, dee (carts 48 h old)
    assert open_members(eval_engine, "recent_openers") == set()
    assert open_members(eval_engine, "cart_abandoners") == {ids["cy@x.com"]}
    again = tick(eval_engine, proj, T0 + 7 * D)  # the same instant again: nothing new
    assert (again.since_ms, again.due) == (T0 + 7 * D, 0)


def test_min_dwell_and_cooldown_expiry_are_edges(eval_engine: Engine) -> None:
    """A member held by min_dwell leaves on the tick after it ran out; a contact held out by a
    cooldown enters on the tick after it ran out, with no event of its own in between."""
    proj, ids = _setup(eval_engine, 'min_dwell = "1h"\ncooldown = "2h"')
    cy = ids["cy@x.com"]
    tick(eval_engine, proj, T0 + MIN)
    assert cy in open_members(eval_engine, "cart_abandoners")
    add_events(eval_engine, ids, [Ev("cy@x.com", "placed_order", -2 * MIN)])  # ordered at T0 + 2 min
    # the order does not cancel the abandoned cart (it came after the 48 h) but a new cart does:
    add_events(eval_engine, ids, [Ev("cy@x.com", "added_to_cart", -3 * MIN, props={"product": "x"})])
    tick(eval_engine, proj, T0 + 4 * MIN)  # the new cart is the latest and is fresh: raw verdict false
    assert cy in open_members(eval_engine, "cart_abandoners")  # held by min_dwell (entered T0 + 1 min)
    due = tick(eval_engine, proj, T0 + MIN + H)  # min_dwell ran out at T0 + 1 min + 1 h
    assert due.due == 1 and cy not in open_members(eval_engine, "cart_abandoners")
    # the new cart (T0 + 3 min) turns 48 h old at T0 + 48 h + 3 min; cooldown long over by then
    tick(eval_engine, proj, T0 + 48 * H + 4 * MIN)
    assert cy in open_members(eval_engine, "cart_abandoners")


def test_edges_of_the_shop_project_are_exact() -> None:
    edges = time_edges(shop('min_dwell = "1h"\ncooldown = "2h"'))
    assert edges.coarse() == []  # the score is only an output field: fields are not scanned
    assert set(edges.edges) == {
        EventEdge("opened_email", 0), EventEdge("opened_email", 7 * D),
        EventEdge("added_to_cart", 0), EventEdge("added_to_cart", 48 * H), EventEdge("added_to_cart", 14 * D),
        DwellEdge("cart_abandoners", "min_dwell", H), DwellEdge("cart_abandoners", "cooldown", 2 * H)}


@pytest.mark.parametrize(("rule", "want"), [
    ('signup < ago("30d")', {AttrEdge("signup", 30 * D), AttrEdge("signup", 30 * D + 1)}),
    ('days_since(signup) >= 2.5', {AttrEdge("signup", 3 * D)}),
    ('days_since(last("o")) == 3', {EventEdge("o", 0), EventEdge("o", 3 * D), EventEdge("o", 4 * D)}),
    ('between(last("o"), ago("14d"), ago("7d"))', {EventEdge("o", 0), EventEdge("o", 7 * D),
                                                   EventEdge("o", 7 * D + 1), EventEdge("o", 14 * D),
                                                   EventEdge("o", 14 * D + 1)}),
    ('count("o", between=("14d", "7d"), where=ts > ago("10d")) > 0',
     {EventEdge("o", 14 * D), EventEdge("o", 7 * D), EventEdge("o", 10 * D), EventEdge("o", 10 * D + 1)}),
    ('now >= datetime("2024-06-02T00:00:00Z")', {InstantEdge(1_717_286_400_000),
                                                  InstantEdge(1_717_286_400_001)}),
    ('coalesce(signup, date("2024-01-01")) < ago("1d")',
     {AttrEdge("signup", D), AttrEdge("signup", D + 1), InstantEdge(1_704_153_600_000),
      InstantEdge(1_704_153_600_001)}),
    ('score("decay") > 5', {EventSpan("o", 30 * D, 0, "score 'decay' decays")}),
    ('days_since(signup) * 2 > 10', None),
    ('plan == "pro"', set()),
])
def test_edges_per_construct(rule: str, want: set[object] | None) -> None:
    from mapping.config import load_project_text

    proj = load_project_text(f"""
[attributes]
signup = "date"
plan = "string"
[events.o]
[scores.decay]
points = [{{ event = "o", points = 1 }}]
half_life = "7d"
window = "30d"
[segments.s]
rule = '{rule}'
""", "edges.toml")
    edges = time_edges(proj)
    if want is None:
        assert edges.coarse() == ["contacts with 'signup' set (days_since() in an expression)"]
    else:
        assert set(edges.edges) == want


def test_everyone_and_instant_edges_select_the_whole_population(eval_engine: Engine) -> None:
    proj, _ids = _setup(eval_engine)
    from sync.realtime.edges import TimeEdges

    with eval_engine.connect() as conn:
        assert due_contacts(conn, TimeEdges(frozenset({Everyone("x")})), T0, T0 + 1) is None
        at = TimeEdges(frozenset({InstantEdge(T0 + 10)}))
        assert due_contacts(conn, at, T0, T0 + 10) is None
        assert due_contacts(conn, at, T0 + 10, T0 + 20) == []
    report = tick(eval_engine, proj, T0 + 5, edges=TimeEdges(frozenset({Everyone("x")})))
    assert report.everyone and report.due == len(PEOPLE)
