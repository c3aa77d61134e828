"""Pulling contacts and events through the HubSpot connector, against the stand-in over loopback
with the official SDK: full listing, incremental search (past the 10,000-result cap, and the
tie case), archived contacts, email events incrementally, unified events skipped or read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from connectors.base import Page
from connectors.hubspot.cursors import ContactCursor, EventCursor
from connectors.records import Contact, Event
from connectors.sandbox.hubspot import search as sandbox_search
from connectors.sandbox.hubspot.schema import iso_ms
from mapping.errors import InputError
from tests.hubspot_connector_support import T0, Stand, connector, serving, start


@pytest.fixture(scope="module")
def stand() -> Iterator[Stand]:
    events = [
        {"email": f"person{i}@example.com", "kind": kind, "ts": T0 + i * 1000 + k, "campaign_id": 11,
         "url": "https://shop.example/p" if kind == "clicked" else None}
        for i in range(20) for k, kind in enumerate(("sent", "delivered", "opened", "clicked"))
    ] + [{"email": "person3@example.com", "kind": "unsubscribed", "ts": T0 + 50_000},
         {"email": "person4@example.com", "kind": "bounced", "ts": T0 + 60_000}]  # fmt: skip
    yield from serving(start(250, events))


@pytest.fixture
def hs(stand: Stand) -> Stand:
    stand.state.reset()
    stand.faults.configure([], 0)
    stand.app.log.clear()
    stand.app.counters.clear()
    stand.seen.clear()
    return stand


def drain(pages: Iterator[Page[Any]]) -> tuple[list[Any], str | None]:
    records: list[Any] = []
    cursor = None
    for page in pages:
        records.extend(page.records)
        cursor = page.cursor
    return records, cursor


def routes(hs: Stand) -> dict[str, int]:
    return dict(hs.app.counters)


def test_full_pull_lists_every_contact_with_only_the_configured_properties(hs: Stand) -> None:
    contacts, cursor = drain(connector(hs, clock=None).pull_contacts(None))
    assert len(contacts) == 250 and len({c.provider_id for c in contacts}) == 250
    first = next(c for c in contacts if c.email == "person0@example.com")
    assert isinstance(first, Contact) and not first.archived
    assert dict(first.properties) == {"lifecyclestage": "subscriber", "city": "Berlin"}
    assert first.updated_at == T0
    # 3 pages of 100 active contacts + 1 page of archived ones, nothing else
    assert routes(hs) == {"contacts.list": 4}
    assert all(e["path"].count("limit=100") for e in hs.log("contacts.list"))
    assert ContactCursor.parse(cursor).mark is not None and not ContactCursor.parse(cursor).in_full_listing


def test_a_full_listing_resumes_from_an_intermediate_cursor(hs: Stand) -> None:
    pages = list(connector(hs).pull_contacts(None))
    middle = pages[2]  # archived page, then the first two pages of active contacts
    assert ContactCursor.parse(middle.cursor).in_full_listing
    rest, cursor = drain(connector(hs).pull_contacts(middle.cursor))
    assert [c.provider_id for c in rest] == [c.provider_id for p in pages[3:] for c in p.records]
    assert ContactCursor.parse(cursor).mark == ContactCursor.parse(middle.cursor).full_started


def test_incremental_pull_returns_only_contacts_modified_since_the_mark(hs: Stand) -> None:
    hc = connector(hs, look_back_ms=0)
    cursor = ContactCursor(mark=T0 + 200 * 60_000).dump()  # contacts 200..249 are at or after it
    contacts, after = drain(hc.pull_contacts(cursor))
    assert sorted(int(c.email[6:].split("@")[0]) for c in contacts) == list(range(200, 250))
    assert ContactCursor.parse(after).mark == T0 + 249 * 60_000
    searches = [json.loads(b) for b in hs.bodies("contacts.search")]
    assert searches and all(s["sorts"] == [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]
                            and s["limit"] == 200 for s in searches)  # fmt: skip
    assert searches[0]["filterGroups"][0]["filters"] == [
        {"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(T0 + 200 * 60_000)}
    ]
    assert set(searches[0]["properties"]) == {"lifecyclestage", "city", "email", "lastmodifieddate"}


def test_the_look_back_window_rereads_recent_contacts(hs: Stand) -> None:
    hc = connector(hs, look_back_ms=10 * 60_000)
    contacts, _ = drain(hc.pull_contacts(ContactCursor(mark=T0 + 249 * 60_000).dump()))
    assert len(contacts) == 11  # contacts 239..249


def test_archived_contacts_are_detected_and_marked(hs: Stand) -> None:
    hc = connector(hs, look_back_ms=0)
    _, cursor = drain(hc.pull_contacts(None))
    with hs.state.lock:
        gone = hs.state.find("7")
        assert gone is not None
        hs.state.archive(gone)
    contacts, _ = drain(hc.pull_contacts(cursor))
    archived = [c for c in contacts if c.archived]
    assert [c.provider_id for c in archived] == ["7"] and archived[0].email == "person6@example.com"
    full, _ = drain(hc.pull_contacts(None, full=True))
    assert [c.provider_id for c in full if c.archived] == ["7"]
    assert len([c for c in full if not c.archived]) == 249


def test_a_cursor_that_is_not_ours_is_an_input_error(hs: Stand) -> None:
    with pytest.raises(InputError, match="--full"):
        list(connector(hs).pull_contacts('{"kind": "klaviyo.profiles", "v": 1}'))
    with pytest.raises(InputError):
        list(connector(hs).pull_events("not json"))


def test_search_rewindows_before_the_cap_and_drains_shared_instants(
    hs: Stand, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the cap lowered to 120: contacts 0..249 modified at distinct instants, then 150 at
    one instant (more than a cap's worth) — every contact exactly once, no 400."""
    monkeypatch.setattr(sandbox_search, "MAX_RESULTS", 120)
    with hs.state.lock:
        for cid in range(1, 151):
            contact = hs.state.contacts[cid]
            contact.updated_ms = T0 + 10**9
            contact.props["lastmodifieddate"] = iso_ms(T0 + 10**9)
    hc = connector(hs, look_back_ms=0, search_cap=120)
    contacts, cursor = drain(hc.pull_contacts(ContactCursor(mark=T0).dump()))
    ids = [c.provider_id for c in contacts]
    assert sorted(ids, key=int) == [str(i) for i in range(1, 251)] and len(ids) == 250
    assert ContactCursor.parse(cursor).mark == T0 + 10**9
    assert all(e["status"] == 200 for e in hs.log("contacts.search"))
    filters = [json.loads(b)["filterGroups"][0]["filters"] for b in hs.bodies("contacts.search")]
    assert any(f[0]["operator"] == "EQ" and f[1]["propertyName"] == "hs_object_id" for f in filters)


@pytest.mark.slow
def test_incremental_pull_pages_past_the_real_10000_result_cap() -> None:
    for stand in serving(start(12_000)):
        contacts, cursor = drain(connector(stand, look_back_ms=0).pull_contacts(ContactCursor(mark=1).dump()))
        assert len(contacts) == 12_000 and len({c.provider_id for c in contacts}) == 12_000
        assert ContactCursor.parse(cursor).mark == T0 + 11_999 * 60_000
        searches = stand.log("contacts.search")
        assert all(e["status"] == 200 for e in searches)
        assert 60 <= len(searches) <= 62  # 12,000 / 200, plus the re-window's overlap page


def test_email_events_are_mapped_and_pulled_incrementally(hs: Stand) -> None:
    now = [T0 + 100_000]
    types = {"OPEN": "email_opened", "CLICK": "email_clicked", "UNSUBSCRIBED": "email_unsubscribed",
             "BOUNCE": "email_bounced"}  # fmt: skip
    hc = connector(hs, clock=None, event_types=types, event_overlap_ms=5_000)
    hc._events.clock = lambda: now[0]
    events, cursor = drain(hc.pull_events(None))
    assert isinstance(events[0], Event)
    by_type: dict[str, int] = {}
    for e in events:
        by_type[e.type] = by_type.get(e.type, 0) + 1
    assert by_type == {"email_opened": 20, "email_clicked": 20, "email_unsubscribed": 1, "email_bounced": 1}
    click = next(e for e in events if e.type == "email_clicked" and e.contact.email == "person2@example.com")
    assert click.ts == T0 + 2000 + 3 and click.properties["url"] == "https://shop.example/p"
    assert len({e.provider_event_id for e in events}) == len(events)
    assert EventCursor.parse(cursor).email.at == now[0]
    # new activity: only it comes back, the overlap's events are not delivered twice
    with hs.state.lock:
        hs.state.email_events.add(T0 + 150_000, "OPEN", "person9@example.com", 11)
    now[0] = T0 + 200_000
    again, cursor2 = drain(hc.pull_events(cursor))
    assert [(e.type, e.contact.email, e.ts) for e in again] == [
        ("email_opened", "person9@example.com", T0 + 150_000)
    ]
    params = [e["path"] for e in hs.log("email.events")][-4:]
    assert all(f"startTimestamp={T0 + 100_000 - 5_000}" in p for p in params)
    assert drain(hc.pull_events(cursor2))[0] == []


def test_email_event_slices_advance_the_cursor_slice_by_slice(hs: Stand) -> None:
    hc = connector(hs, event_types={"OPEN": "email_opened"}, event_overlap_ms=0, event_slice_ms=5_000)
    hc._events.clock = lambda: T0 + 20_000
    cursor = EventCursor().with_email(EventCursor().email.advanced(T0, {}, 0)).dump()
    pages = list(hc.pull_events(cursor))
    marks = [EventCursor.parse(p.cursor).email.at for p in pages if not p.records]
    assert marks == [T0 + 5_000, T0 + 10_000, T0 + 15_000, T0 + 20_000]
    assert sum(len(p.records) for p in pages) == 20


def test_unified_events_are_skipped_cleanly_when_the_account_lacks_them(
    hs: Stand, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hs.settings, "unified_events", False)  # not Enterprise: the stand-in answers 403
    hc = connector(hs, event_types={"OPEN": "email_opened", "pe62515_viewed": "page_viewed"},
                   unified_events=True)  # fmt: skip
    events, cursor = drain(hc.pull_events(None))
    assert {e.type for e in events} == {"email_opened"}
    assert EventCursor.parse(cursor).unified.at is None
    assert drain(hc.pull_events(cursor))[0] == []  # and not asked again
    assert len([e for e in hs.log() if e["path"].startswith("/events/v3/events")]) == 1


def test_unified_events_are_read_when_served(hs: Stand) -> None:
    for i in range(1, 4):  # the stand-in's web events: product views are HubSpot page views
        hs.state.web_events.add(T0, "product_viewed", i, {"url": "/pricing", "product": "Pricing"})
    hc = connector(hs, event_types={"e_visited_page": "page_viewed"}, unified_events=True)
    events, cursor = drain(hc.pull_events(None))
    assert [(e.contact.provider_id, e.type, e.ts, e.properties["hs_url"]) for e in events] == [
        (str(i), "page_viewed", T0, "/pricing") for i in range(1, 4)
    ]
    served = [parse_qs(urlsplit(e["path"]).query) for e in hs.log("events.unified")]
    assert served[0]["eventType"] == ["e_visited_page"] and served[0]["objectType"] == ["contact"]
    assert EventCursor.parse(cursor).unified.at is not None
    assert not [e for e in hs.log("email.events")]  # no email types mapped
