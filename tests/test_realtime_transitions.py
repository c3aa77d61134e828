"""Segment-triggered events on flapping input: ``min_dwell`` keeps a member in while its rule
flaps, ``cooldown`` keeps it out after it left, and the transition events (with their
personalization properties) go out once per real transition — to a strict fake connector, and
through the real Klaviyo connector to the sandbox's create-event endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from connectors.base import Connector
from connectors.records import ChangeOp
from connectors.sandbox import Sandbox, start_sandbox
from mapping.config import load_project_text
from mapping.project import Project
from sync.realtime.wiring import Realtime, RealtimeSettings
from sync.store import schema
from tests.eval_support import AS_OF, MIN, load
from tests.realtime_support import open_members
from tests.sync_support import FakeConnector, populate, record_id, set_ltv

CONFIG = """
[attributes]
ltv = "number"
last_cart_item = "string"
recommended_product = "string"

[segments.vip]
rule = 'ltv >= 1000'
min_dwell = "1h"
cooldown = "6h"

[fields]
cart_item = "last_cart_item"
recommended_product = "recommended_product"
score = "ltv"

[destinations.hubspot]
booleans = { is_vip = "vip" }

[destinations.klaviyo]
[[destinations.klaviyo.events]]
segment = "vip"
on = "enter"
name = "Entered segment: VIP"
fields = ["cart_item", "recommended_product", "score"]

[[destinations.klaviyo.events]]
segment = "vip"
on = "exit"
"""
PERSON = {"ltv": 0, "last_cart_item": "red shoes", "recommended_product": "socks"}
# (minute, what): "ltv=N" is a change applied through the webhook hook; "tick" a clock tick
SCRIPT = ["0 ltv=2000", "10 ltv=0", "20 ltv=2000", "30 ltv=0", "59 tick", "61 tick",  # min_dwell
          "70 ltv=2000", "80 ltv=0", "90 ltv=2000", "420 tick", "422 tick"]  # cooldown until 421
WANT_VIP = [True, True, True, True, True, False, False, False, False, False, True]


def _iso(minute: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp((AS_OF + minute * MIN) / 1000, UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def project() -> Project:
    return load_project_text(CONFIG, "transitions.toml")


def play(engine: Engine, proj: Project, ids: dict[str, int], connectors: dict[str, Connector]) -> list[bool]:
    """Run SCRIPT with a controlled clock; returns vip membership after each step. Every step
    re-evaluates exactly one contact."""
    now = {"t": AS_OF}
    rt = Realtime(engine, proj, connectors, RealtimeSettings(tick_ms=0), clock=lambda: now["t"])
    cid = ids["ann@x.com"]
    seen = []
    for step in SCRIPT:
        minute, what = step.split()
        now["t"] = AS_OF + int(minute) * MIN
        if what == "tick":
            report = rt.tick_once()
            assert report.due == (1 if minute in ("61", "422") else 0), step
        else:
            set_ltv(engine, ids, "ann@x.com", float(what.split("=")[1]))
            assert rt.refresh([cid]).evaluated == 1
        rt.flusher.flush()
        seen.append(cid in open_members(engine, "vip"))
    return seen


def test_flapping_input_sends_one_event_per_real_transition(eval_engine: Engine) -> None:
    proj = project()
    ids = populate(eval_engine, proj, {"ann@x.com": PERSON})
    hub, kla = FakeConnector("hubspot"), FakeConnector("klaviyo")
    assert play(eval_engine, proj, ids, {"hubspot": hub, "klaviyo": kla}) == WANT_VIP
    props = {"cart_item": "red shoes", "recommended_product": "socks", "score": 2000,
             "segment": "vip", "transition": "enter"}
    assert [(e.record_id, e.target, e.value) for e in kla.events] == [
        (record_id("klaviyo", "ann@x.com"), "Entered segment: VIP", {**props, "at": _iso(0)}),
        (record_id("klaviyo", "ann@x.com"), "Exited segment: vip",
         {"segment": "vip", "transition": "exit", "at": _iso(61)}),
        (record_id("klaviyo", "ann@x.com"), "Entered segment: VIP", {**props, "at": _iso(422)}),
    ]
    # HubSpot gets the mapped property, written on each real transition only
    assert [c.value for call in hub.calls for c in call if c.target == "is_vip"] == [True, False, True]
    assert all(c.op is ChangeOp.SET_FIELD for call in hub.calls for c in call)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with start_sandbox(contacts=20, seed=3, rate_limits=False) as sb:
        yield sb


def test_transition_events_are_accepted_by_the_sandbox_klaviyo(eval_engine: Engine, sandbox: Sandbox) -> None:
    from connectors.klaviyo import KlaviyoConnector

    proj = project()
    ids = load(eval_engine, proj, {"ann@x.com": PERSON})
    state = sandbox.klaviyo.state
    profile_id = state.by_index[0]
    with eval_engine.begin() as conn:
        conn.execute(insert(schema.identities).values(
            provider="klaviyo", provider_id=profile_id, contact_id=ids["ann@x.com"], email="ann@x.com",
            archived=False, updated_at=0))
    klaviyo = KlaviyoConnector(sandbox.klaviyo_key, sandbox.klaviyo_url)
    connectors: dict[str, Connector] = {"hubspot": FakeConnector("hubspot"), "klaviyo": klaviyo}
    assert play(eval_engine, proj, ids, connectors) == WANT_VIP
    got: dict[str, list[dict[str, Any]]] = {}
    for name in ("Entered segment: VIP", "Exited segment: vip"):
        metric = state.metrics[state.metric_by_name[name]]
        profile = state.profiles[profile_id]
        got[name] = [state.events.properties(p) for p in range(len(state.events))
                     if state.events.metric[p] == metric.index and state.events.profile[p] == profile.index]
    assert [p["at"] for p in got["Entered segment: VIP"]] == [_iso(0), _iso(422)]
    assert all(p["cart_item"] == "red shoes" and p["recommended_product"] == "socks" and p["score"] == 2000
               and p["segment"] == "vip" for p in got["Entered segment: VIP"])
    assert got["Exited segment: vip"] == [{"segment": "vip", "transition": "exit", "at": _iso(61)}]
