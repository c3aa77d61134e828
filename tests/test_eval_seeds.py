"""Every seed segment of config.example.toml on hand-built data, with the exact members,
on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from mapping.config import load_project
from mapping.project import Project
from sync.evaluate import evaluate
from tests.eval_support import AS_OF, MIN, D, Ev, H, load, members

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


@pytest.fixture(scope="module")
def project() -> Project:
    return load_project(EXAMPLE)


Scenario = tuple[dict[str, dict[str, Any]], list[Ev], dict[str, set[str]]]


def _behaviour() -> Scenario:
    people = ["spike_opens", "spike_edge", "spike_click", "click_cheap", "inactive_re",
              "inactive_no_cart", "open_recent", "views4", "views3"]
    events = [
        Ev("spike_opens", "opened_email", 1 * H), Ev("spike_opens", "opened_email", 2 * H),
        Ev("spike_opens", "opened_email", 23 * H),
        # the third open is exactly 24 h old: it has left the window
        Ev("spike_edge", "opened_email", 1 * H), Ev("spike_edge", "opened_email", 2 * H),
        Ev("spike_edge", "opened_email", 24 * H),
        Ev("spike_click", "clicked_email", 3 * H, props={"product_price": 150}),
        Ev("click_cheap", "clicked_email", 3 * H, props={"product_price": 50}),
        Ev("inactive_re", "opened_email", 10 * D), Ev("inactive_re", "added_to_cart", 5 * D),
        Ev("inactive_no_cart", "opened_email", 10 * D),
        Ev("open_recent", "opened_email", 2 * D), Ev("open_recent", "opened_email", 10 * D),
        Ev("open_recent", "added_to_cart", 5 * D),
        *(Ev("views4", "viewed_product", k * H) for k in (1, 2, 3, 4)),
        *(Ev("views3", "viewed_product", k * H) for k in (1, 2, 3)),
        Ev("views3", "viewed_product", 25 * H),
    ]
    return ({p: {"email_opt_in": True} for p in people}, events, {
        "engagement_spike": {"spike_opens", "spike_click"},
        "inactive_reengage": {"inactive_re"},
        "high_interest": {"views4"},
    })


def _carts() -> Scenario:
    people = ["cart_20m", "cart_10m", "cart_bought", "cart_3d", "cart_order_72h", "cart_order_47h"]
    events = [
        Ev("cart_20m", "added_to_cart", 20 * MIN),
        Ev("cart_10m", "added_to_cart", 10 * MIN),
        Ev("cart_bought", "added_to_cart", 2 * H), Ev("cart_bought", "placed_order", 1 * H, 40),
        Ev("cart_3d", "added_to_cart", 3 * D),
        Ev("cart_order_72h", "added_to_cart", 6 * D), Ev("cart_order_72h", "placed_order", 3 * D, 40),
        Ev("cart_order_47h", "added_to_cart", 6 * D),
        Ev("cart_order_47h", "placed_order", 6 * D - 47 * H, 40),
    ]
    return ({p: {"email_opt_in": False} for p in people}, events, {
        "cart_abandoned": {"cart_20m", "cart_3d"},
        "cart_no_purchase_48h": {"cart_3d", "cart_order_72h"},
    })


def _buyers() -> Scenario:
    people = ["recent", "lapsed", "lapsed_30", "inactive", "loyal", "engaged", "whale", "outlier",
              "never"]
    events = [
        Ev("recent", "placed_order", 10 * D, 50),
        Ev("lapsed", "placed_order", 45 * D, 50),
        Ev("lapsed_30", "placed_order", 30 * D, 50),  # exactly 30 days: lapsed, not recent
        Ev("inactive", "placed_order", 120 * D, 50),
        *(Ev("loyal", "placed_order", k * 5 * D, 20) for k in (1, 2, 3)),
        Ev("engaged", "placed_order", 1 * H, 10), Ev("engaged", "placed_order", 2 * H, 10),
        Ev("engaged", "added_to_cart", 3 * H), Ev("engaged", "added_to_cart", 4 * H),
        Ev("whale", "placed_order", 50 * D, 600), Ev("whale", "placed_order", 60 * D, 500),
        # the 9000 order is an outlier: it counts nowhere (not recent, not big, not a 2nd order)
        Ev("outlier", "placed_order", 5 * D, 9000), Ev("outlier", "placed_order", 100 * D, 100),
    ]
    return ({p: {"email_opt_in": False} for p in people}, events, {
        "recent_buyer": {"recent", "loyal", "engaged"},
        "lapsed_buyer": {"lapsed", "lapsed_30", "whale"},
        "inactive_buyer": {"inactive", "outlier"},
        "loyal_customer": {"loyal"},
        "engaged_recent_buyer": {"engaged"},
        "big_spender": {"whale"},
    })


def _percentiles() -> Scenario:
    people = {f"p{n}": {"email_opt_in": False} for n in range(8)}
    events = [Ev(f"p{n}", "opened_email", 30 * D) for n in range(8) for _ in range(n)]
    return (people, events, {
        "engagement_top": {"p6", "p7"},
        "engagement_middle": {"p2", "p3", "p4", "p5"},
        "engagement_bottom": {"p0", "p1"},
    })


def _rfm() -> Scenario:
    def orders(who: str, n: int, last_days: int, value: float) -> list[Ev]:
        return [Ev(who, "placed_order", (last_days + 2 * k) * D, value) for k in range(n)]

    people = {p: {"email_opt_in": False} for p in "ABCDEX"}
    events = [*orders("A", 5, 200, 100), *orders("B", 4, 5, 100), *orders("C", 1, 10, 50),
              *orders("D", 2, 20, 100), *orders("E", 3, 100, 100)]
    return (people, events, {"rfm_champions": {"B"}, "rfm_at_risk": {"A", "E"}})


def _winback() -> Scenario:
    people: dict[str, dict[str, Any]] = {
        "r1": {}, "r2": {"email_opt_in": True}, "r3": {"email_opt_in": True},
        "r4": {"email_opt_in": False}, "r5": {"email_opt_in": True},
    }
    events = [
        Ev("r2", "opened_email", 2 * D), Ev("r2", "added_to_cart", 1 * D),
        Ev("r3", "added_to_cart", 1 * H),
        Ev("r5", "opened_email", 10 * D), Ev("r5", "added_to_cart", 3 * D),
        Ev("r5", "placed_order", 3 * D - 10 * MIN, 30),
    ]
    return (people, events, {
        "ReEngageAtRisk": {"r1", "r5"},
        "cart_abandoned": {"r2", "r3"},
        "inactive_reengage": {"r5"},  # not in the group: overlaps freely
    })


SCENARIOS = {"behaviour": _behaviour, "carts": _carts, "buyers": _buyers,
             "percentiles": _percentiles, "rfm": _rfm, "winback": _winback}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_seed_segments_have_exactly_the_expected_members(
        eval_engine: Engine, project: Project, scenario: str) -> None:
    people, events, expected = SCENARIOS[scenario]()
    load(eval_engine, project, people, events)
    result = evaluate(eval_engine, project, AS_OF)
    for segment, want in expected.items():
        assert members(result, segment) == want, segment


def test_rfm_scores_and_names(eval_engine: Engine, project: Project) -> None:
    people, events, _ = _rfm()
    load(eval_engine, project, people, events)
    fields = {r.key: r.fields for r in evaluate(eval_engine, project, AS_OF).results}
    assert {k: f["rfm_score"] for k, f in fields.items()} == {
        "A": "155", "B": "544", "C": "411", "D": "322", "E": "233", "X": None}
    assert {k: f["rfm_segment"] for k, f in fields.items()} == {
        "A": "Can't Lose Them", "B": "Champions", "C": "Promising", "D": "About to Sleep",
        "E": "At Risk", "X": None}


def test_exclusive_group_output_is_the_winner(eval_engine: Engine, project: Project) -> None:
    people, events, _ = _winback()
    load(eval_engine, project, people, events)
    flows = {r.key: r.fields["winback_flow"] for r in evaluate(eval_engine, project, AS_OF).results}
    assert flows == {"r1": "ReEngageAtRisk", "r2": "cart_abandoned", "r3": "cart_abandoned",
                     "r4": None, "r5": "ReEngageAtRisk"}


def test_scores_tiers_and_fields(eval_engine: Engine, project: Project) -> None:
    load(eval_engine, project, {"a": {}, "b": {}},
         [Ev("a", "placed_order", 0, 10), Ev("a", "placed_order", 14 * D, 10),
          Ev("a", "opened_email", 91 * D)])
    fields = {r.key: r.fields for r in evaluate(eval_engine, project, AS_OF).results}
    # 30 points now + 30 points halved once (14 days = one half-life); the 91-day open is
    # outside the score's 90-day window
    assert fields["a"]["engagement_score"] == pytest.approx(45.0)
    assert fields["a"]["engagement_tier"] == "Medium"
    assert fields["a"]["orders"] == 2
    assert fields["a"]["last_order_at"] == AS_OF
    assert fields["b"] == {"engagement_score": 0, "engagement_tier": "Low", "rfm_score": None,
                           "rfm_segment": None, "last_order_at": None, "orders": 0,
                           "winback_flow": "ReEngageAtRisk", "lifecycle_stage": "prospect"}
