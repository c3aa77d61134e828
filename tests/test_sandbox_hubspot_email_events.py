"""Legacy marketing-email events (``GET /email/public/v1/events``) over ``requests``, plus loading
the commons' synthetic data set into the HubSpot state."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.sandbox.dataset import generate
from connectors.sandbox.hubspot import HubSpotState
from tests.sandbox_hubspot_support import T0, Running, assert_hubspot_error, hs, hs_server

__all__ = ["hs", "hs_server"]
PATH = "/email/public/v1/events"


def test_shape_of_open_click_and_unsubscribe(hs: Running) -> None:
    body = hs.get(PATH, params={"recipient": "person1@example.com"}).json()
    assert body["hasMore"] is False and "offset" not in body
    types = [e["type"] for e in body["events"]]
    assert types == ["STATUSCHANGE", "CLICK", "OPEN", "DELIVERED", "SENT"]  # newest first
    unsub, click, opened = body["events"][:3]
    assert unsub["portalSubscriptionStatus"] == "UNSUBSCRIBED"
    assert click["url"] == "https://shop.example/products/p1"
    for e in body["events"]:
        assert e["recipient"] == "person1@example.com"
        assert isinstance(e["id"], str) and isinstance(e["created"], int)
        assert {"portalId", "appId", "emailCampaignId", "sentBy"} <= set(e)
    assert opened["created"] == T0 + 1_000_000 + 5000 and opened["emailCampaignId"] == 11


@pytest.mark.parametrize(
    ("params", "count"),
    [
        ({"eventType": "OPEN"}, 5),
        ({"eventType": "CLICK", "recipient": "person3@example.com"}, 1),
        ({"startTimestamp": T0 + 4_000_000}, 4 + 2),
        ({"startTimestamp": T0, "endTimestamp": T0 + 1000}, 2),
        ({"campaignId": 12}, 2),
        ({"recipient": "nobody@example.com"}, 0),
    ],
)
def test_filters(hs: Running, params: dict[str, Any], count: int) -> None:
    assert len(hs.get(PATH, params={**params, "limit": 1000}).json()["events"]) == count


def test_offset_paging_covers_everything_once(hs: Running) -> None:
    seen: list[str] = []
    offset = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if offset is not None:
            params["offset"] = offset
        body = hs.get(PATH, params=params).json()
        seen += [e["id"] for e in body["events"]]
        if not body["hasMore"]:
            break
        offset = body["offset"]
    assert len(seen) == 22 == len(set(seen))


@pytest.mark.parametrize("params", [{"limit": 1001}, {"eventType": "NOPE"}, {"startTimestamp": "yesterday"}])
def test_bad_params_are_400(hs: Running, params: dict[str, Any]) -> None:
    assert_hubspot_error(hs.get(PATH, params=params), 400, "VALIDATION_ERROR")


def test_load_dataset() -> None:
    ds = generate(300, seed=3)
    state = HubSpotState()
    state.load_dataset(ds)
    in_hubspot = [p for p in ds.people if p.in_hubspot]
    distinct = {p.email.strip().lower() for p in in_hubspot if p.email.strip()}
    without_email = sum(1 for p in in_hubspot if not p.email.strip())
    assert len(state.contacts) == len(distinct) + without_email  # duplicates collapse by email
    person = next(p for p in in_hubspot if p.quality == "ok")
    c = state.contacts[state.by_email[person.email]]
    assert (c.props["firstname"], c.props["lifecyclestage"]) == (person.first_name, person.lifecycle_stage)
    opens = [
        i
        for i in ds.activities.select(kinds=["email_opened"]).tolist()
        if ds.people[int(ds.activities.person[i])].in_hubspot
    ]
    assert len(state.email_events.by_type[2]) == len(opens)
    clicks = state.email_events.by_type[3]
    assert all(state.email_events.urls[state.email_events.url[p]].startswith("https://") for p in clicks)
