"""Bad requests get HubSpot's error shape and status (400/401/404/405/413/415), never a 500."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from hubspot.crm.contacts import ApiException

from tests.sandbox_hubspot_support import Running, assert_hubspot_error, hs, hs_server, sdk_error_body

__all__ = ["hs", "hs_server"]

WRITE_ROUTES = [
    ("POST", "/crm/v3/objects/contacts"),
    ("PATCH", "/crm/v3/objects/contacts/1"),
    ("POST", "/crm/v3/objects/contacts/search"),
    ("POST", "/crm/v3/objects/contacts/batch/read"),
    ("POST", "/crm/v3/objects/contacts/batch/update"),
    ("POST", "/crm/v3/objects/contacts/batch/upsert"),
    ("POST", "/crm/v3/objects/contacts/batch/create"),
    ("POST", "/crm/v3/objects/contacts/batch/archive"),
    ("POST", "/crm/v3/objects/contacts/gdpr-delete"),
    ("POST", "/crm/v3/objects/contacts/merge"),
    ("POST", "/crm/v3/properties/contacts"),
    ("PATCH", "/crm/v3/properties/contacts/email"),
    ("POST", "/crm/v3/properties/contacts/groups"),
    ("POST", "/crm/v3/lists"),
    ("PUT", "/crm/v3/lists/1/memberships/add"),
    ("PUT", "/crm/v3/lists/1/memberships/add-and-remove"),
]
BAD_BODIES: list[Any] = [
    None,
    [],
    [1, 2],
    "text",
    42,
    {},
    {"inputs": "x"},
    {"inputs": [1, None, "a"]},
    {"inputs": [{"id": None}]},
    {"inputs": [{"id": "1", "properties": []}]},
    {"properties": "x"},
    {"properties": {"city": {"nested": 1}}},
    {"filterGroups": [{"filters": [{"propertyName": 1}]}]},
    {"sorts": [5]},
    {"limit": "ten"},
    {"name": ["x"], "label": None, "type": 3},
    {"objectId": {"x": 1}},
    {"recordIdsToAdd": [{"a": 1}]},
    {"options": [{"label": "a"}], "displayOrder": "x"},
    {"primaryObjectId": 1, "objectIdToMerge": 1},
]


@pytest.mark.parametrize(("method", "path"), WRITE_ROUTES)
def test_garbage_bodies_never_500(hs: Running, method: str, path: str) -> None:
    hs.post("/crm/v3/lists", {"name": "L1", "objectTypeId": "0-1", "processingType": "MANUAL"})
    for body in BAD_BODIES:
        resp = hs.call(method, path, body)
        assert resp.status_code < 500, (body, resp.text)
        if resp.status_code >= 400:
            assert_hubspot_error(resp, resp.status_code, resp.json()["category"])
    resp = hs.http.request(
        method, hs.url + path, data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_hubspot_error(resp, 400, "VALIDATION_ERROR")
    resp = hs.http.request(method, hs.url + path, data=b"<x/>", headers={"Content-Type": "application/xml"})
    assert_hubspot_error(resp, 415, "UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic cGF0LXNhbmRib3g=", "Bearer "])
def test_auth_401(hs: Running, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    resp = requests.get(hs.url + "/crm/v3/objects/contacts", headers=headers, timeout=5)
    assert_hubspot_error(resp, 401, "INVALID_AUTHENTICATION")


def test_sdk_sees_401_with_hubspot_body(hs: Running) -> None:
    from hubspot import HubSpot

    with pytest.raises(ApiException) as e:
        HubSpot(access_token="wrong", host=hs.url).crm.contacts.basic_api.get_page()
    assert e.value.status == 401
    assert sdk_error_body(e.value)["category"] == "INVALID_AUTHENTICATION"


def test_unknown_route_404_and_wrong_method_405(hs: Running) -> None:
    assert_hubspot_error(hs.get("/crm/v3/objects/deals"), 404, "OBJECT_NOT_FOUND")
    assert_hubspot_error(hs.call("GET", "/crm/v3/objects/contacts/batch/update"), 405, "OBJECT_NOT_FOUND")


def test_too_large_body_413(hs: Running) -> None:
    resp = hs.http.post(
        hs.url + "/crm/v3/objects/contacts/batch/update",
        data=b" " * (10 * 1024 * 1024 + 1),
        headers={"Content-Type": "application/json"},
    )
    assert_hubspot_error(resp, 413, "PAYLOAD_TOO_LARGE")
