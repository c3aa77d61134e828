"""Contact search of the HubSpot stand-in through the official SDK: every operator, sorts, limit,
total, paging, free-text query, and the 10,000-result ceiling answered with a 400."""

from __future__ import annotations

from typing import Any

import pytest
from hubspot.crm.contacts import ApiException, PublicObjectSearchRequest

from tests.sandbox_hubspot_support import (
    T0,
    Running,
    assert_hubspot_error,
    email_events,
    hs,
    hs_server,
    people,
)

__all__ = ["hs", "hs_server"]


def search(hs: Running, filters: list[dict[str, Any]], **kw: Any) -> Any:
    req = PublicObjectSearchRequest(filter_groups=[{"filters": filters}] if filters else [], **kw)
    return hs.client.crm.contacts.search_api.do_search(public_object_search_request=req)


def ids(result: Any) -> list[int]:
    return sorted(int(r.id) for r in result.results)


# people i = 0..29 have id i + 1, city Berlin/Lisbon/Austin by i % 3, createdate T0 + i minutes
@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"propertyName": "city", "operator": "EQ", "value": "berlin"}, list(range(1, 31, 3))),
        (
            {"propertyName": "city", "operator": "NEQ", "value": "Berlin"},
            [i for i in range(1, 31) if i % 3 != 1],
        ),
        ({"propertyName": "hs_object_id", "operator": "GT", "value": "27"}, [28, 29, 30]),
        ({"propertyName": "hs_object_id", "operator": "GTE", "value": "28"}, [28, 29, 30]),
        ({"propertyName": "hs_object_id", "operator": "LT", "value": "3"}, [1, 2]),
        ({"propertyName": "hs_object_id", "operator": "LTE", "value": "2"}, [1, 2]),
        (
            {
                "propertyName": "createdate",
                "operator": "BETWEEN",
                "value": str(T0 + 60_000),
                "highValue": "2023-11-14T22:15:20Z",
            },
            [2, 3],
        ),
        (
            {"propertyName": "lifecyclestage", "operator": "IN", "values": ["customer", "lead"]},
            [i for i in range(1, 31) if i % 3 != 1],
        ),
        (
            {"propertyName": "lifecyclestage", "operator": "NOT_IN", "values": ["customer", "lead"]},
            list(range(1, 31, 3)),
        ),
        ({"propertyName": "company", "operator": "HAS_PROPERTY"}, []),
        ({"propertyName": "company", "operator": "NOT_HAS_PROPERTY"}, list(range(1, 31))),
        ({"propertyName": "email", "operator": "CONTAINS_TOKEN", "value": "person12@example.com"}, [13]),
        (
            {"propertyName": "email", "operator": "CONTAINS_TOKEN", "value": "*son2*"},
            [3, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30],
        ),
        ({"propertyName": "email", "operator": "NOT_CONTAINS_TOKEN", "value": "*@example.com"}, []),
    ],
)
def test_operators(hs: Running, flt: dict[str, Any], expected: list[int]) -> None:
    result = search(hs, [flt], limit=100)
    assert ids(result) == expected
    assert result.total == len(expected)


def test_groups_or_filters_and(hs: Running) -> None:
    req = PublicObjectSearchRequest(
        filter_groups=[
            {
                "filters": [
                    {"propertyName": "city", "operator": "EQ", "value": "Austin"},
                    {"propertyName": "hs_object_id", "operator": "LT", "value": "10"},
                ]
            },
            {"filters": [{"propertyName": "hs_object_id", "operator": "EQ", "value": "30"}]},
        ],
        limit=50,
    )
    assert ids(hs.client.crm.contacts.search_api.do_search(public_object_search_request=req)) == [3, 6, 9, 30]


def test_incremental_pull_pattern_sorts_and_pages(hs: Running) -> None:
    flt = [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(T0 + 10 * 60_000)}]
    sorts = [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]
    first = search(hs, flt, sorts=sorts, limit=8, properties=["email"])
    assert first.total == 20
    assert [r.id for r in first.results] == [str(i) for i in range(11, 19)]
    assert set(first.results[0].properties) == {"email", "createdate", "hs_object_id", "lastmodifieddate"}
    assert first.paging.next.after == "8"
    second = search(hs, flt, sorts=sorts, limit=8, after="8")
    assert [r.id for r in second.results] == [str(i) for i in range(19, 27)]
    desc = search(hs, [], sorts=[{"propertyName": "city", "direction": "DESCENDING"}], limit=3)
    assert [r.id for r in desc.results] == ["2", "5", "8"]  # Lisbon first, ties by id


def test_limit_over_200_and_unknown_property_are_400(hs: Running) -> None:
    with pytest.raises(ApiException) as e:
        search(hs, [], limit=201)
    assert e.value.status == 400
    resp = hs.post(
        "/crm/v3/objects/contacts/search",
        {"filterGroups": [{"filters": [{"propertyName": "nosuch", "operator": "EQ", "value": "1"}]}]},
    )
    assert_hubspot_error(resp, 400, "VALIDATION_ERROR")
    resp = hs.post(
        "/crm/v3/objects/contacts/search",
        {"filterGroups": [{"filters": [{"propertyName": "city", "operator": "LIKE", "value": "1"}]}]},
    )
    assert_hubspot_error(resp, 400, "VALIDATION_ERROR")
    too_many: dict[str, Any] = {"filterGroups": [{"filters": []}] * 6}
    assert_hubspot_error(hs.post("/crm/v3/objects/contacts/search", too_many), 400, "VALIDATION_ERROR")


def test_query_text(hs: Running) -> None:
    result = search(hs, [], query="first29")
    assert ids(result) == [30]


def test_paging_past_10000_is_400(hs: Running) -> None:
    hs.state.load_records(people(10_050), [])
    try:
        last = search(hs, [], limit=200, after="9800")
        assert last.total == 10_050 and len(last.results) == 200
        assert last.paging.next.after == "10000"
        resp = hs.post("/crm/v3/objects/contacts/search", {"limit": 10, "after": "10000"})
        body = assert_hubspot_error(resp, 400, "VALIDATION_ERROR")
        assert "10000" in body["message"]
    finally:
        hs.state.load_records(people(30), email_events())
