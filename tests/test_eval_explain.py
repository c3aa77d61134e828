"""explain: every leaf's value and each segment's verdict, from the engine's own plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import Engine

from mapping.config import load_project
from mapping.errors import InputError
from sync.evaluate import evaluate, explain
from tests.eval_support import AS_OF, Ev, H, load
from tests.test_eval_seeds import _winback

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def test_leaf_values_and_verdicts(eval_engine: Engine) -> None:
    project = load_project(EXAMPLE)
    people, events, _ = _winback()
    people["edge"] = {"email_opt_in": True}
    events = [*events, Ev("edge", "opened_email", 1 * H), Ev("edge", "opened_email", 24 * H)]
    ids = load(eval_engine, project, people, events)

    got = explain(eval_engine, project, ids["edge"], AS_OF).to_json()
    spike = next(s for s in got["segments"] if s["segment"] == "engagement_spike")
    assert spike["member"] is False
    opens = spike["rule"]["children"][0]
    assert (opens["expr"], opens["value"]) == ("opens_24h >= 3", False)
    assert opens["children"][0] == {"expr": "opens_24h", "value": 1, "children": [
        {"expr": 'count("opened_email", within="1d")', "value": 1}]}
    json.dumps(got)  # JSON-ready

    r3 = explain(eval_engine, project, ids["r3"], AS_OF)
    verdicts = {s.name: s for s in r3.segments}
    assert verdicts["cart_abandoned"].member is True
    reengage = verdicts["ReEngageAtRisk"]
    assert reengage.member is False
    assert [f.value for f, _ in reengage.flags] == [True, True, True]
    assert reengage.weight == 150
    assert reengage.notes == ("exclusive group winback: cart_abandoned holds instead",)
    assert r3.fields["winback_flow"] == "cart_abandoned"
    # the same verdicts as an evaluation
    full = {r.key: set(r.segments) for r in evaluate(eval_engine, project, AS_OF, persist=False).results}
    assert {s.name for s in r3.segments if s.member} == full["r3"]

    console = Console(record=True, width=200)
    console.print(r3)
    text = console.export_text()
    assert "ReEngageAtRisk" in text and "cart_abandoned holds instead" in text

    excluded = {s.name: s for s in explain(eval_engine, project, ids["r4"], AS_OF).segments}
    assert excluded["ReEngageAtRisk"].notes == ("excluded",)


def test_unknown_contact(eval_engine: Engine) -> None:
    project = load_project(EXAMPLE)
    with pytest.raises(InputError, match="no contact"):
        explain(eval_engine, project, 424242, AS_OF)
