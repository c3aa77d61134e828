"""Lists v3 of the HubSpot stand-in through the official SDK: create, get by id/name, membership
add/remove/add-and-remove (response shape with ``recordsIdsAdded``), paging, DYNAMIC refusal."""

from __future__ import annotations

import pytest
from hubspot.crm.lists import ApiException, ListCreateRequest, MembershipChangeRequest

from tests.sandbox_hubspot_support import Running, assert_hubspot_error, hs, hs_server, sdk_error_body

__all__ = ["hs", "hs_server"]


def create(hs: Running, name: str, processing: str = "MANUAL") -> str:
    if processing == "DYNAMIC":  # via requests: the SDK's filter-branch models are beside the point here
        body = {
            "name": name,
            "objectTypeId": "0-1",
            "processingType": "DYNAMIC",
            "filterBranch": {"filterBranchType": "OR", "filterBranches": [], "filters": []},
        }
        return str(hs.post("/crm/v3/lists", body).json()["list"]["listId"])
    req = ListCreateRequest(name=name, object_type_id="0-1", processing_type=processing)
    return str(hs.client.crm.lists.lists_api.create(req).list.list_id)


@pytest.mark.parametrize("processing", ["MANUAL", "SNAPSHOT", "DYNAMIC"])
def test_create_and_get_by_id_and_name(hs: Running, processing: str) -> None:
    list_id = create(hs, f"Segment {processing}", processing)
    got = hs.client.crm.lists.lists_api.get_by_id(list_id).list
    assert (got.list_id, got.name, got.object_type_id, got.processing_type) == (
        list_id,
        f"Segment {processing}",
        "0-1",
        processing,
    )
    assert got.processing_status == "COMPLETE" and got.list_version == 1 and got.size == 0
    by_name = hs.client.crm.lists.lists_api.get_by_name(
        list_name=f"Segment {processing}", object_type_id="0-1"
    )
    assert by_name.list.list_id == list_id


def test_duplicate_name_and_missing_list(hs: Running) -> None:
    create(hs, "Dup")
    resp = hs.post("/crm/v3/lists", {"name": "Dup", "objectTypeId": "0-1", "processingType": "MANUAL"})
    assert_hubspot_error(resp, 400, "VALIDATION_ERROR")
    with pytest.raises(ApiException) as e:
        hs.client.crm.lists.lists_api.get_by_name(list_name="nope", object_type_id="0-1")
    assert e.value.status == 404 and sdk_error_body(e.value)["category"] == "OBJECT_NOT_FOUND"


def test_memberships_add_remove_add_and_remove(hs: Running) -> None:
    list_id = create(hs, "VIP")
    members = hs.client.crm.lists.memberships_api
    added = members.add(list_id, ["1", "2", "999"])
    assert (added.records_ids_added, added.record_ids_missing, added.record_ids_removed) == (
        ["1", "2"],
        ["999"],
        [],
    )
    raw = hs.call("PUT", f"/crm/v3/lists/{list_id}/memberships/add", ["2", "3"]).json()
    assert raw == {"recordIdsMissing": [], "recordIdsRemoved": [], "recordsIdsAdded": ["3"]}
    removed = members.remove(list_id, ["1"])
    assert removed.record_ids_removed == ["1"]
    both = members.add_and_remove(
        list_id, MembershipChangeRequest(record_ids_to_add=["4"], record_ids_to_remove=["2"])
    )
    assert (both.records_ids_added, both.record_ids_removed) == (["4"], ["2"])
    assert sorted(hs.state.lists[int(list_id)].members) == [3, 4]


def test_membership_paging(hs: Running) -> None:
    list_id = create(hs, "All")
    hs.client.crm.lists.memberships_api.add(list_id, [str(i) for i in range(1, 31)])
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = hs.client.crm.lists.memberships_api.get_page(list_id, limit=7, after=after)
        seen += [r.record_id for r in page.results]
        pages += 1
        if page.paging is None or page.paging.next is None:
            break
        after = page.paging.next.after
    assert seen == [str(i) for i in range(1, 31)] and pages == 5
    assert_hubspot_error(
        hs.get(f"/crm/v3/lists/{list_id}/memberships", params={"limit": 251}), 400, "VALIDATION_ERROR"
    )


def test_dynamic_list_refuses_writes(hs: Running) -> None:
    list_id = create(hs, "Dyn", "DYNAMIC")
    with pytest.raises(ApiException) as e:
        hs.client.crm.lists.memberships_api.add(list_id, ["1"])
    assert e.value.status == 400 and "DYNAMIC" in sdk_error_body(e.value)["message"]
    resp = hs.call("PUT", f"/crm/v3/lists/{list_id}/memberships/add-and-remove", {"recordIdsToAdd": ["1"]})
    assert_hubspot_error(resp, 400, "VALIDATION_ERROR")
    assert hs.state.lists[int(list_id)].members == {}
