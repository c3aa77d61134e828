"""Contacts of the HubSpot stand-in through the official SDK: list/paging, get, create, update,
archive, batch read/update/upsert/create/archive (200 and 207 with per-input errors), GDPR delete,
merge. Shapes asserted field by field per API_FACTS (HubSpot §1, §6)."""

from __future__ import annotations

from typing import Any

import pytest
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchInputSimplePublicObjectId,
    BatchReadInputSimplePublicObjectId,
    PublicGdprDeleteInput,
    PublicMergeInput,
    SimplePublicObjectBatchInput,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectId,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)

from connectors.sandbox.hubspot import HubSpotSettings
from tests.sandbox_hubspot_support import (
    ISO_MS,
    Running,
    assert_hubspot_error,
    hs,
    hs_server,
    sdk_error_body,
    start,
)

__all__ = ["hs", "hs_server"]
DEFAULT_PROPS = {"createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"}


def test_list_pages_with_after_and_default_properties(hs: Running) -> None:
    page = hs.client.crm.contacts.basic_api.get_page(limit=7)
    assert [c.id for c in page.results] == [str(i) for i in range(1, 8)]
    first = page.results[0]
    assert set(first.properties) == DEFAULT_PROPS
    assert first.properties["email"] == "person0@example.com"
    assert first.properties["hs_object_id"] == "1"
    assert first.properties["createdate"] == "2023-11-14T22:13:20.000Z"
    assert first.archived is False
    assert page.paging.next.after == "8"
    raw = hs.get("/crm/v3/objects/contacts", params={"limit": 7, "after": "8"}).json()
    assert [c["id"] for c in raw["results"]] == [str(i) for i in range(8, 15)]
    assert raw["paging"]["next"]["after"] == "15"
    assert set(raw["results"][0]) == {"id", "properties", "createdAt", "updatedAt", "archived"}
    assert ISO_MS.match(raw["results"][0]["createdAt"])
    every = hs.client.crm.contacts.get_all()
    assert len(every) == 30 and len({c.id for c in every}) == 30
    last = hs.get("/crm/v3/objects/contacts", params={"limit": 100}).json()
    assert "paging" not in last


def test_list_properties_param_and_archived(hs: Running) -> None:
    page = hs.client.crm.contacts.basic_api.get_page(limit=2, properties=["city", "nosuch"])
    assert set(page.results[0].properties) == {"city", "createdate", "hs_object_id", "lastmodifieddate"}
    hs.client.crm.contacts.basic_api.archive("3")
    active = hs.client.crm.contacts.get_all()
    assert "3" not in {c.id for c in active}
    archived = hs.client.crm.contacts.basic_api.get_page(archived=True)
    assert [c.id for c in archived.results] == ["3"]
    assert archived.results[0].archived is True and archived.results[0].archived_at is not None


@pytest.mark.parametrize("limit", ["0", "101", "x"])
def test_list_bad_limit_is_400(hs: Running, limit: str) -> None:
    assert_hubspot_error(hs.get("/crm/v3/objects/contacts", params={"limit": limit}), 400, "VALIDATION_ERROR")


def test_get_by_id_and_email(hs: Running) -> None:
    c = hs.client.crm.contacts.basic_api.get_by_id("6", properties=["city", "lifecyclestage"])
    assert c.properties["city"] == "Austin" and c.properties["lifecyclestage"] == "customer"
    by_email = hs.client.crm.contacts.basic_api.get_by_id("PERSON4@example.com", id_property="email")
    assert by_email.id == "5"
    with pytest.raises(ApiException) as e:
        hs.client.crm.contacts.basic_api.get_by_id("999")
    assert e.value.status == 404
    assert sdk_error_body(e.value)["category"] == "OBJECT_NOT_FOUND"


def test_create_update_and_lastmodifieddate(hs: Running) -> None:
    basic = hs.client.crm.contacts.basic_api
    created = basic.create(
        SimplePublicObjectInputForCreate(properties={"email": "New@Example.com", "city": "Oslo"})
    )
    assert created.id == "31" and created.properties["email"] == "new@example.com"
    before = basic.get_by_id("1").properties["lastmodifieddate"]
    updated = basic.update("1", SimplePublicObjectInput(properties={"firstname": "Ada", "city": ""}))
    assert updated.properties["firstname"] == "Ada"
    assert "city" not in updated.properties  # "" clears a value
    assert updated.properties["lastmodifieddate"] > before
    assert ISO_MS.match(updated.properties["lastmodifieddate"])
    with pytest.raises(ApiException) as e:
        basic.create(SimplePublicObjectInputForCreate(properties={"email": "person2@example.com"}))
    assert e.value.status == 409
    body = sdk_error_body(e.value)
    assert body["category"] == "CONFLICT" and "Existing ID: 3" in body["message"]
    with pytest.raises(ApiException) as e:
        basic.update("1", SimplePublicObjectInput(properties={"lastmodifieddate": "1"}))
    assert e.value.status == 400
    assert sdk_error_body(e.value)["errors"][0]["code"] == "READ_ONLY_VALUE"


def batch_update(hs: Running, inputs: list[tuple[str, dict[str, Any]]]) -> Any:
    body = BatchInputSimplePublicObjectBatchInput(
        inputs=[SimplePublicObjectBatchInput(id=i, properties=p) for i, p in inputs]
    )
    return hs.client.crm.contacts.batch_api.update(body)


def test_batch_update_all_ok_is_200(hs: Running) -> None:
    resp = hs.post(
        "/crm/v3/objects/contacts/batch/update",
        {"inputs": [{"id": str(i), "properties": {"city": "Rome"}} for i in range(1, 101 - 71)]},
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "COMPLETE"
    assert set(body) == {"status", "results", "startedAt", "completedAt"}
    assert len(body["results"]) == 29
    assert body["results"][0]["properties"]["city"] == "Rome"
    assert hs.state.contacts[1].props["city"] == "Rome"


@pytest.mark.parametrize(
    ("props", "code"),
    [
        ({"nosuch": "x"}, "PROPERTY_DOESNT_EXIST"),
        ({"hs_object_id": "7"}, "READ_ONLY_VALUE"),
        ({"lifecyclestage": "wizard"}, "INVALID_OPTION"),
        ({"email": "not-an-email"}, "INVALID_EMAIL"),
    ],
)
def test_batch_update_per_input_errors_are_207(hs: Running, props: dict[str, str], code: str) -> None:
    result = batch_update(hs, [("1", {"city": "Rome"}), ("999", {"city": "Rome"}), ("2", props)])
    assert [r.id for r in result.results] == ["1"]
    assert result.num_errors == 2
    missing, invalid = result.errors
    assert missing.category == "OBJECT_NOT_FOUND" and missing.context == {"ids": ["999"]}
    assert invalid.category == "VALIDATION_ERROR" and invalid.context["id"] == ["2"]
    assert invalid.errors[0].code == code
    assert invalid.status == "error" and invalid.links == {}
    assert hs.state.contacts[2].props["city"] == "Lisbon"  # the invalid input changed nothing


def test_typed_values_validated(hs: Running) -> None:
    for name, ptype, ftype, opts in [
        ("score", "number", "number", None),
        ("vip", "bool", "booleancheckbox", None),
        ("birthday", "date", "date", None),
        ("last_order_at", "datetime", "date", None),
        ("tags", "enumeration", "checkbox", ["a", "b", "c"]),
    ]:
        body: dict[str, Any] = {
            "name": name,
            "label": name,
            "type": ptype,
            "fieldType": ftype,
            "groupName": "contactinformation",
        }
        if opts:
            body["options"] = [{"label": o, "value": o} for o in opts]
        assert hs.post("/crm/v3/properties/contacts", body).status_code == 201
    good = {
        "score": "12.5",
        "vip": "TRUE",
        "birthday": "2024-02-29",
        "last_order_at": "1700000000123",
        "tags": "a;c",
    }
    result = batch_update(hs, [("1", good)])
    assert type(result).__name__ == "BatchResponseSimplePublicObject"  # a 200: no errors member at all
    stored = hs.state.contacts[1].props
    assert (stored["score"], stored["vip"], stored["birthday"]) == ("12.5", "true", "2024-02-29")
    assert stored["last_order_at"] == "2023-11-14T22:13:20.123Z" and stored["tags"] == "a;c"
    bad = [
        ("2", {"score": "twelve"}),
        ("3", {"vip": "yes"}),
        ("4", {"birthday": "1700000000123"}),
        ("5", {"last_order_at": "yesterday"}),
        ("6", {"tags": "a;zzz"}),
    ]
    result = batch_update(hs, bad)
    codes = {e.context["id"][0]: e.errors[0].code for e in result.errors}
    assert codes == {
        "2": "INVALID_DECIMAL",
        "3": "INVALID_BOOLEAN",
        "4": "INVALID_DATE",
        "5": "INVALID_DATETIME",
        "6": "INVALID_OPTION",
    }
    assert result.results == []


def test_batch_limits_and_duplicates_are_400(hs: Running) -> None:
    too_many = {"inputs": [{"id": "1", "properties": {}} for _ in range(101)]}
    assert_hubspot_error(hs.post("/crm/v3/objects/contacts/batch/update", too_many), 400, "VALIDATION_ERROR")
    dup = {"inputs": [{"id": "1", "properties": {}}, {"id": "1", "properties": {}}]}
    body = assert_hubspot_error(
        hs.post("/crm/v3/objects/contacts/batch/update", dup), 400, "VALIDATION_ERROR"
    )
    assert "Duplicate IDs" in body["message"]


def test_whole_batch_validation_mode() -> None:
    settings = HubSpotSettings(batch_validation="whole_batch")
    server, running = start(settings)
    try:
        resp = running.post(
            "/crm/v3/objects/contacts/batch/update",
            {
                "inputs": [
                    {"id": "1", "properties": {"city": "Rome"}},
                    {"id": "2", "properties": {"nosuch": "x"}},
                ]
            },
        )
        body = assert_hubspot_error(resp, 400, "VALIDATION_ERROR")
        assert body["errors"][0]["code"] == "PROPERTY_DOESNT_EXIST"
        assert running.state.contacts[1].props["city"] == "Berlin"  # nothing applied
    finally:
        server.stop()
        running.app.close()
        running.http.close()


def test_batch_read_by_id_and_email(hs: Running) -> None:
    api = hs.client.crm.contacts.batch_api
    result = api.read(
        BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id="2"), SimplePublicObjectId(id="77")],
            properties=["city"],
            properties_with_history=[],
        )
    )
    assert [r.id for r in result.results] == ["2"]
    assert result.results[0].properties["city"] == "Lisbon"
    assert result.errors[0].category == "OBJECT_NOT_FOUND" and result.errors[0].context == {"ids": ["77"]}
    by_email = api.read(
        BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id="person9@example.com")],
            id_property="email",
            properties=["email"],
            properties_with_history=[],
        )
    )
    assert [r.id for r in by_email.results] == ["10"]
    assert type(by_email).__name__ == "BatchResponseSimplePublicObject"


def test_batch_upsert_by_email(hs: Running) -> None:
    body = BatchInputSimplePublicObjectBatchInputUpsert(
        inputs=[
            SimplePublicObjectBatchInputUpsert(
                id="person0@example.com", id_property="email", properties={"city": "Rome"}
            ),
            SimplePublicObjectBatchInputUpsert(
                id="fresh@example.com", id_property="email", properties={"city": "Oslo"}
            ),
        ]
    )
    result = hs.client.crm.contacts.batch_api.upsert(body)
    by_id = {r.id: r for r in result.results}
    assert by_id["1"].new is False and by_id["1"].properties["city"] == "Rome"
    assert by_id["31"].new is True and by_id["31"].properties["email"] == "fresh@example.com"
    assert hs.state.by_email["fresh@example.com"] == 31


def test_batch_create_and_archive(hs: Running) -> None:
    api = hs.client.crm.contacts.batch_api
    created = api.create(
        BatchInputSimplePublicObjectBatchInputForCreate(
            inputs=[
                SimplePublicObjectBatchInputForCreate(properties={"email": "a@x.io"}, associations=[]),
                SimplePublicObjectBatchInputForCreate(
                    properties={"email": "person1@example.com"}, associations=[]
                ),
            ]
        )
    )
    assert [r.properties["email"] for r in created.results] == ["a@x.io"]
    assert created.errors[0].category == "CONFLICT"
    api.archive(
        BatchInputSimplePublicObjectId(inputs=[SimplePublicObjectId(id="1"), SimplePublicObjectId(id="99")])
    )
    assert hs.state.contacts[1].archived is True
    assert "person0@example.com" not in hs.state.by_email


def test_gdpr_delete_removes_record_events_and_memberships(hs: Running) -> None:
    lst = hs.post("/crm/v3/lists", {"name": "L", "objectTypeId": "0-1", "processingType": "MANUAL"}).json()
    hs.call("PUT", f"/crm/v3/lists/{lst['list']['listId']}/memberships/add", ["1", "2"])
    hs.client.crm.contacts.basic_api.purge(
        PublicGdprDeleteInput(object_id="person0@example.com", id_property="email")
    )
    assert 1 not in hs.state.contacts
    assert hs.state.lists[1].members.keys() == {2}
    events = hs.get("/email/public/v1/events", params={"recipient": "person0@example.com"}).json()
    assert events["events"] == []
    with pytest.raises(ApiException) as e:
        hs.client.crm.contacts.basic_api.purge(PublicGdprDeleteInput(object_id="1"))
    assert e.value.status == 404


def test_merge(hs: Running) -> None:
    hs.state.contacts[2].props.pop("city")
    merged = hs.client.crm.contacts.basic_api.merge(
        PublicMergeInput(primary_object_id="2", object_id_to_merge="1")
    )
    assert merged.id == "2" and merged.properties["city"] == "Berlin"  # moved from the merged record
    assert hs.client.crm.contacts.basic_api.get_by_id("1").id == "2"  # the old id resolves to the primary


def test_merges_are_listed_on_the_survivor(hs: Running) -> None:
    merge = hs.client.crm.contacts.basic_api.merge
    merge(PublicMergeInput(primary_object_id="2", object_id_to_merge="1"))
    merge(PublicMergeInput(primary_object_id="4", object_id_to_merge="5"))
    merge(PublicMergeInput(primary_object_id="3", object_id_to_merge="2"))
    merge(PublicMergeInput(primary_object_id="3", object_id_to_merge="4"))
    got = hs.client.crm.contacts.basic_api.get_by_id("3", properties=["hs_merged_object_ids"])
    assert got.properties["hs_merged_object_ids"] == "2;1;4;5"  # merged ids of the merged too
    listed = hs.get("/crm/v3/objects/contacts", params={"properties": "hs_merged_object_ids", "limit": 5})
    assert {c["id"]: c["properties"]["hs_merged_object_ids"] for c in listed.json()["results"]} == {
        "3": "2;1;4;5", "6": None, "7": None, "8": None, "9": None}
    refused = hs.call("PATCH", "/crm/v3/objects/contacts/3", {"properties": {"hs_merged_object_ids": "1"}})
    assert refused.status_code == 400 and refused.json()["errors"][0]["code"] == "READ_ONLY_VALUE"
