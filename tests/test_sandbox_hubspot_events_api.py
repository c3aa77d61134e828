"""The unified events API of the HubSpot stand-in (``GET /events/v3/events``, API_FACTS §4): the
data set's web activity per contact through the official SDK, the query parameters, paging,
merges and GDPR deletion, and the 403 of an account without the (Enterprise-only) API."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hubspot.events import ApiException

from connectors.sandbox.dataset import Dataset, generate
from connectors.sandbox.hubspot import HubSpotSettings, HubSpotState, build_app
from connectors.sandbox.hubspot.schema import iso_ms
from connectors.sandbox.server import SandboxServer
from tests.sandbox_hubspot_support import T0, TOKEN, Running, assert_hubspot_error, people, start

PORTAL = 62_515
VIEW, CART, ORDER = "e_visited_page", f"pe{PORTAL}_added_to_cart", f"pe{PORTAL}_order_placed"
WEB = [  # person i views at T0 + i s; person 1 also adds to the cart and orders
    *({"email": f"person{i}@example.com", "kind": "product_viewed", "ts": T0 + i * 1000,
       "properties": {"url": f"https://shop.example/products/p{i}", "product": f"P{i}", "price": 9.5}}
      for i in range(5)),
    {"email": "person1@example.com", "kind": "added_to_cart", "ts": T0 + 10_000,
     "properties": {"product": "P1", "quantity": 2, "cart_id": "cart-1"}, "value": 19.0},
    {"email": "Person1@Example.com ", "kind": "order_placed", "ts": T0 + 20_000,
     "properties": {"order_id": "ORD-1", "items": ["P1", "P2"], "item_count": 3}, "value": 42.5},
    {"email": "nobody@example.com", "kind": "product_viewed", "ts": T0, "properties": {}},  # no contact
]  # fmt: skip


@pytest.fixture(scope="module")
def served() -> Iterator[Running]:
    server, running = start(n_people=6)
    running.state.load_records(people(6), [], WEB)
    try:
        yield running
    finally:
        server.stop()
        running.app.close()
        running.http.close()


@pytest.fixture
def hs(served: Running) -> Running:
    served.state.reset()
    served.settings.unified_events = True
    return served


def events(hs: Running, **params: Any) -> dict[str, Any]:
    return page_of(hs.http, hs.url, params)


def page_of(http: requests.Session, url: str, params: dict[str, Any]) -> dict[str, Any]:
    resp = http.get(url + "/events/v3/events", params=params, headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


def test_the_sdk_reads_every_event_with_its_shape(hs: Running) -> None:
    api = hs.client.events.events_api
    page = api.get_page(object_type="contact", limit=100)
    got = [(e.event_type, e.object_id, e.object_type, e.properties) for e in page.results]
    assert got == [
        *((VIEW, str(i + 1), "contact", {"hs_url": f"https://shop.example/products/p{i}",
                                         "hs_page_title": f"P{i}"}) for i in range(5)),
        (CART, "2", "contact", {"product": "P1", "quantity": "2", "cart_id": "cart-1", "value": "19"}),
        (ORDER, "2", "contact", {"order_id": "ORD-1", "items": "P1;P2", "item_count": "3", "value": "42.5"}),
    ]  # fmt: skip
    assert [int(e.occurred_at.timestamp() * 1000) for e in page.results] == [
        *(T0 + i * 1000 for i in range(5)), T0 + 10_000, T0 + 20_000]
    assert page.paging is None and len({e.id for e in page.results}) == 7


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({"eventType": CART}, [(CART, "2")], id="eventType"),
        pytest.param({"objectType": "contact", "objectId": "2"}, [(VIEW, "2"), (CART, "2"), (ORDER, "2")],
                     id="objectId"),
        pytest.param({"occurredAfter": iso_ms(T0 + 1000), "occurredBefore": str(T0 + 10_000)},
                     [(VIEW, "3"), (VIEW, "4"), (VIEW, "5")], id="occurred window, both ends exclusive"),
        pytest.param({"objectType": "company"}, [], id="another object type"),
        pytest.param({"eventType": "pe1_other"}, [], id="unknown event type"),
    ],
)
def test_filters(hs: Running, params: dict[str, str], expected: list[tuple[str, str]]) -> None:
    assert [(e["eventType"], e["objectId"]) for e in events(hs, **params)["results"]] == expected


def test_paging_with_after(hs: Running) -> None:
    sizes: list[int] = []
    seen: list[str] = []
    after = None
    for _ in range(10):
        page = events(hs, limit=3, **({"after": after} if after else {}))
        sizes.append(len(page["results"]))
        seen += [e["id"] for e in page["results"]]
        after = page.get("paging", {}).get("next", {}).get("after")
        if after is None:
            break
    assert sizes == [3, 3, 1]
    assert seen == [e["id"] for e in events(hs, limit=100)["results"]]  # in order, none twice


def test_merged_contacts_events_follow_the_survivor_and_gdpr_deletion_removes_them(hs: Running) -> None:
    hs.post("/crm/v3/objects/contacts/merge", {"primaryObjectId": "3", "objectIdToMerge": "2"})
    mine = events(hs, objectType="contact", objectId="3")["results"]
    assert Counter(e["eventType"] for e in mine) == {VIEW: 2, CART: 1, ORDER: 1}
    assert {e["objectId"] for e in mine} == {"3"}
    assert events(hs, objectType="contact", objectId="2")["results"] == mine  # the old id follows
    hs.post("/crm/v3/objects/contacts/gdpr-delete", {"objectId": "3"})
    assert [e["objectId"] for e in events(hs)["results"]] == ["1", "4", "5"]


@pytest.mark.parametrize(
    ("params", "status", "category"),
    [
        pytest.param({"objectId": "2"}, 400, "VALIDATION_ERROR", id="objectId without objectType"),
        pytest.param({"occurredAfter": "yesterday"}, 400, "VALIDATION_ERROR", id="bad instant"),
        pytest.param({"after": "!!"}, 400, "VALIDATION_ERROR", id="bad cursor"),
        pytest.param({"limit": "0"}, 400, "VALIDATION_ERROR", id="bad limit"),
    ],
)
def test_bad_queries(hs: Running, params: dict[str, str], status: int, category: str) -> None:
    assert_hubspot_error(hs.get("/events/v3/events", params=params), status, category)


def test_an_account_without_the_api_gets_403(hs: Running) -> None:
    resp = hs.call("PATCH", "/_sandbox/hubspot/settings", {"unified_events": False})
    assert resp.status_code == 200 and resp.json()["unified_events"] is False
    assert_hubspot_error(hs.get("/events/v3/events"), 403, "MISSING_SCOPES")
    with pytest.raises(ApiException) as info:
        hs.client.events.events_api.get_page(object_type="contact")
    assert info.value.status == 403
    assert hs.call("PATCH", "/_sandbox/hubspot/settings", {"unified_events": "no"}).status_code == 400


def test_the_data_sets_web_activity_is_served() -> None:
    data: Dataset = generate(60, seed=5, days=30)
    state = HubSpotState()
    state.load_dataset(data)
    app = build_app(state, HubSpotSettings())
    served: Counter[str] = Counter()
    with SandboxServer(app) as server, requests.Session() as http:
        after = None
        while True:
            page = page_of(http, server.url, {"limit": 1000, **({"after": after} if after else {})})
            served.update(e["eventType"] for e in page["results"])
            after = page.get("paging", {}).get("next", {}).get("after")
            if after is None:
                break
    app.close()
    acts = data.activities
    kinds = {"product_viewed": VIEW, "added_to_cart": CART, "order_placed": ORDER}
    held = [p.in_hubspot and bool(p.email.strip()) for p in data.people]
    rows = [int(i) for i in acts.select(list(kinds)) if held[int(acts.person[i])]]
    expected = Counter(kinds[acts[i].kind] for i in rows)
    assert served == expected and all(expected.values())
