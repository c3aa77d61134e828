"""Inspection and control of the HubSpot stand-in under ``/_sandbox/hubspot/``."""

from __future__ import annotations

from tests.sandbox_hubspot_support import Running, assert_hubspot_error, hs, hs_server

__all__ = ["hs", "hs_server"]
BASE = "/_sandbox/hubspot"


def test_inspect_contact_list_properties_and_reset(hs: Running) -> None:
    lst = hs.post(
        "/crm/v3/lists", {"name": "Seg A", "objectTypeId": "0-1", "processingType": "MANUAL"}
    ).json()
    list_id = lst["list"]["listId"]
    hs.call("PUT", f"/crm/v3/lists/{list_id}/memberships/add", ["2", "5"])
    hs.call("PATCH", "/crm/v3/objects/contacts/2", {"properties": {"city": "Rome"}})
    by_email = hs.http.get(hs.url + BASE + "/contacts/person1@example.com", headers={}).json()
    assert (
        by_email["id"] == "2" and by_email["properties"]["city"] == "Rome" and by_email["lists"] == [list_id]
    )
    assert hs.get(BASE + "/contacts/2").json()["properties"]["email"] == "person1@example.com"
    one = hs.get(BASE + "/lists/seg a").json()
    assert one["members"] == ["2", "5"] and one["size"] == 2
    assert [x["name"] for x in hs.get(BASE + "/lists").json()["results"]] == ["Seg A"]
    assert "lifecyclestage" in {p["name"] for p in hs.get(BASE + "/properties").json()["results"]}
    assert hs.get(BASE + "/stats").json() == {
        "contacts": 30,
        "archived_contacts": 0,
        "lists": 1,
        "properties": 15,  # the HubSpot-defined ones include hs_merged_object_ids
        "email_events": 22,
        "web_events": 0,
    }
    assert hs.post(BASE + "/reset").json() == {"reset": True, "contacts": 30}
    assert hs.get(BASE + "/contacts/2").json()["properties"]["city"] == "Lisbon"
    assert hs.get(BASE + "/lists").json()["results"] == []
    assert_hubspot_error(hs.get(BASE + "/contacts/nobody@example.com"), 404, "OBJECT_NOT_FOUND")


def test_settings_round_trip_without_secrets(hs: Running) -> None:
    got = hs.get(BASE + "/settings").json()
    assert got["rate_limit"]["max_requests"] == 190 and got["tokens"] == 1
    assert got["webhooks"]["client_secret"] == "***"
    patched = hs.call("PATCH", BASE + "/settings", {"rate_limit": {"max_requests": 100}}).json()
    assert patched["rate_limit"]["max_requests"] == 100 and hs.settings.rate_limit.max_requests == 100
    hs.settings.rate_limit.max_requests = 190
    for bad in ({"rate_limit": {"nosuch": 1}}, {"rate_limit": {"enabled": "yes"}}, {"batch_validation": "x"}):
        assert_hubspot_error(hs.call("PATCH", BASE + "/settings", bad), 400, "VALIDATION_ERROR")


def test_activity_is_deterministic_per_seed(hs: Running) -> None:
    first = hs.post(BASE + "/activity", {"count": 12, "seed": 5}).json()
    hs.state.reset()
    again = hs.post(BASE + "/activity", {"count": 12, "seed": 5}).json()
    assert first == again and first["generated"] == 12
    assert {c["kind"] for c in first["changes"]} == {"property_change", "new_contact", "email_event"}
    live = hs.app.generate_live({"events": 3, "changes": 2, "seed": 1})
    assert [c["kind"] for c in live["changes"]].count("email_event") == 3
    assert_hubspot_error(hs.post(BASE + "/activity", {"count": -1}), 400, "VALIDATION_ERROR")
    assert_hubspot_error(hs.post(BASE + "/activity", {"kinds": ["party"]}), 400, "VALIDATION_ERROR")
