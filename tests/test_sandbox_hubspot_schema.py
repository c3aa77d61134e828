"""Properties and property groups of the HubSpot stand-in through the official SDK."""

from __future__ import annotations

from typing import Any

import pytest
from hubspot.crm.properties import (
    ApiException,
    OptionInput,
    PropertyCreate,
    PropertyGroupCreate,
    PropertyUpdate,
)

from tests.sandbox_hubspot_support import Running, assert_hubspot_error, hs, hs_server, sdk_error_body

__all__ = ["hs", "hs_server"]


def tags_property() -> PropertyCreate:
    return PropertyCreate(
        name="segsync_tags",
        label="Segments",
        type="enumeration",
        field_type="checkbox",
        group_name="contactinformation",
        options=[OptionInput(label="VIP", value="vip", hidden=False, display_order=0)],
    )


def test_create_get_list_property(hs: Running) -> None:
    core = hs.client.crm.properties.core_api
    created = core.create("contacts", tags_property())
    assert (created.name, created.type, created.field_type) == ("segsync_tags", "enumeration", "checkbox")
    assert [o.value for o in created.options] == ["vip"]
    assert created.modification_metadata.read_only_value is False
    assert core.get_by_name("contacts", "segsync_tags").label == "Segments"
    names = {p.name for p in core.get_all("contacts").results}
    assert {"email", "lifecyclestage", "lastmodifieddate", "segsync_tags"} <= names
    with pytest.raises(ApiException) as e:
        core.create("contacts", tags_property())
    assert e.value.status == 409 and sdk_error_body(e.value)["category"] == "CONFLICT"


def test_patch_adds_options_then_multi_checkbox_values_validate(hs: Running) -> None:
    core = hs.client.crm.properties.core_api
    core.create("contacts", tags_property())
    resp = hs.post(
        "/crm/v3/objects/contacts/batch/update",
        {"inputs": [{"id": "1", "properties": {"segsync_tags": "vip;churn_risk"}}]},
    )
    assert resp.status_code == 207
    core.update(
        "contacts",
        "segsync_tags",
        PropertyUpdate(
            options=[
                OptionInput(label="VIP", value="vip", hidden=False, display_order=0),
                OptionInput(label="Churn risk", value="churn_risk", hidden=False, display_order=1),
            ]
        ),
    )
    resp = hs.post(
        "/crm/v3/objects/contacts/batch/update",
        {"inputs": [{"id": "1", "properties": {"segsync_tags": "vip;churn_risk"}}]},
    )
    assert resp.status_code == 200
    assert hs.state.contacts[1].props["segsync_tags"] == "vip;churn_risk"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"type": "multi", "fieldType": "checkbox"}, "Invalid type"),
        ({"type": "string", "fieldType": "slider"}, "Invalid fieldType"),
        ({"type": "number", "fieldType": "text"}, "not valid for type"),
        ({"type": "enumeration", "fieldType": "checkbox"}, "Options are required"),
        ({"type": "string", "fieldType": "text", "groupName": "nosuch"}, "does not exist"),
        ({"type": "string", "fieldType": "text", "name": "Bad Name"}, "Invalid property name"),
    ],
)
def test_invalid_definitions_are_400(hs: Running, body: dict[str, Any], fragment: str) -> None:
    full = {"name": "p1", "label": "P1", "groupName": "contactinformation", **body}
    err = assert_hubspot_error(hs.post("/crm/v3/properties/contacts", full), 400, "VALIDATION_ERROR")
    assert fragment in err["message"]


def test_groups(hs: Running) -> None:
    groups = hs.client.crm.properties.groups_api
    created = groups.create("contacts", PropertyGroupCreate(name="segsync", label="segsync", display_order=3))
    assert (created.name, created.label, created.display_order, created.archived) == (
        "segsync",
        "segsync",
        3,
        False,
    )
    assert "segsync" in {g.name for g in groups.get_all("contacts").results}
    assert groups.get_by_name("contacts", "segsync").label == "segsync"
    with pytest.raises(ApiException) as e:
        groups.create("contacts", PropertyGroupCreate(name="segsync", label="again"))
    assert e.value.status == 409
    assert_hubspot_error(hs.get("/crm/v3/properties/contacts/nosuch"), 404, "OBJECT_NOT_FOUND")
    assert_hubspot_error(hs.get("/crm/v3/properties/deals"), 400, "VALIDATION_ERROR")
