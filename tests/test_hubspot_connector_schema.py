"""ensure_schema against the HubSpot stand-in: group, typed properties, options, lists, problems."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from connectors.base import FieldSpec, SchemaSpec
from tests.hubspot_connector_support import Stand, connector, serving, start

SPEC = SchemaSpec(
    fields=(
        FieldSpec("seg_tags", "multi", "Segments", ("vip", "churn_risk")),
        FieldSpec("seg_tier", "enumeration", options=("gold", "silver")),
        FieldSpec("seg_score", "number"),
        FieldSpec("seg_active", "bool"),
        FieldSpec("seg_since", "date"),
        FieldSpec("seg_seen_at", "datetime"),
        FieldSpec("seg_note", "string"),
        FieldSpec("seg_products", "list"),
    ),
    lists=("VIP customers", "Churn risk"),
)
SHAPES = {
    "seg_tags": ("enumeration", "checkbox"),
    "seg_tier": ("enumeration", "select"),
    "seg_score": ("number", "number"),
    "seg_active": ("bool", "booleancheckbox"),
    "seg_since": ("date", "date"),
    "seg_seen_at": ("datetime", "date"),
    "seg_note": ("string", "text"),
    "seg_products": ("string", "textarea"),
}


@pytest.fixture
def hs() -> Iterator[Stand]:
    yield from serving(start(5))


def properties(hs: Stand) -> dict[str, dict[str, object]]:
    return {p["name"]: p for p in hs.control("GET", "/_sandbox/hubspot/properties")["results"]}


def test_everything_missing_is_created_with_the_right_shape(hs: Stand) -> None:
    report = connector(hs).ensure_schema(SPEC)
    assert report.problems == ()
    assert set(report.created_fields) == set(SHAPES) and report.created_lists == SPEC.lists
    props = properties(hs)
    for name, (ptype, field_type) in SHAPES.items():
        assert (props[name]["type"], props[name]["fieldType"], props[name]["groupName"]) == (
            ptype, field_type, "segsync")  # fmt: skip
    assert [o["value"] for o in props["seg_tags"]["options"]] == ["vip", "churn_risk"]  # type: ignore[attr-defined]
    lists = {lst["name"]: lst for lst in hs.control("GET", "/_sandbox/hubspot/lists")["results"]}
    assert {n: lists[n]["processingType"] for n in SPEC.lists} == dict.fromkeys(SPEC.lists, "MANUAL")
    assert report.list_ids == {n: lists[n]["listId"] for n in SPEC.lists}


def test_a_second_run_changes_nothing(hs: Stand) -> None:
    connector(hs).ensure_schema(SPEC)
    hs.seen.clear()
    report = connector(hs).ensure_schema(SPEC)
    assert (report.created_fields, report.added_options, report.created_lists, report.problems) == (
        (),
        {},
        (),
        (),
    )
    assert len(report.list_ids) == 2
    assert {name for name, _ in hs.seen} == {"properties.groups.list", "properties.list", "lists.get_by_name"}


def test_new_enumeration_values_are_added_as_options(hs: Stand) -> None:
    connector(hs).ensure_schema(SPEC)
    grown = SchemaSpec(fields=(FieldSpec("seg_tags", "multi", options=("vip", "churn_risk", "new_buyer")),))
    report = connector(hs).ensure_schema(grown)
    assert report.added_options == {"seg_tags": ("new_buyer",)}
    options = properties(hs)["seg_tags"]["options"]
    assert [o["value"] for o in options] == ["vip", "churn_risk", "new_buyer"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("field", "existing"),
    [
        (FieldSpec("city", "number"), "string/text"),
        (FieldSpec("lifecyclestage", "multi", options=("lead",)), "enumeration/radio"),
        (FieldSpec("email", "bool"), "string/text"),
    ],
)
def test_an_existing_property_of_the_wrong_type_is_a_problem_never_coerced(
    hs: Stand, field: FieldSpec, existing: str
) -> None:
    before = properties(hs)[field.name]
    report = connector(hs).ensure_schema(SchemaSpec(fields=(field,)))
    assert len(report.problems) == 1
    assert f"{field.name!r} exists with type {existing}" in report.problems[0]
    assert field.type in report.problems[0] and "never converts" in report.problems[0]
    assert properties(hs)[field.name] == before
    assert report.created_fields == ()


def test_a_dynamic_list_of_the_same_name_is_a_problem(hs: Stand) -> None:
    hs.http.post(hs.url + "/crm/v3/lists", json={"name": "VIP customers", "objectTypeId": "0-1",
                 "processingType": "DYNAMIC", "filterBranch": {"filterBranchType": "OR"}},
                 headers={"Authorization": "Bearer pat-sandbox"}).raise_for_status()  # fmt: skip
    report = connector(hs).ensure_schema(SchemaSpec(lists=("VIP customers",)))
    assert report.created_lists == () and "DYNAMIC" in report.problems[0]
    assert report.list_ids == {}


def test_dry_run_reports_without_writing(hs: Stand) -> None:
    report = connector(hs).ensure_schema(SPEC, dry_run=True)
    assert set(report.created_fields) == set(SHAPES) and report.created_lists == SPEC.lists
    assert not set(SHAPES) & set(properties(hs))
    assert hs.control("GET", "/_sandbox/hubspot/lists")["results"] == []
    writes = [e for e in hs.log() if e["method"] in ("POST", "PATCH", "PUT", "DELETE")]
    assert writes == []


def test_looking_up_a_list_that_does_not_exist_yet_is_not_a_warning(
    hs: Stand, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="segsync.connectors"):
        report = connector(hs).ensure_schema(SchemaSpec(lists=("New list",)))
    assert report.created_lists == ("New list",)
    lookups = [r for r in caplog.records if "get list by name: giving up" in r.getMessage()]
    assert lookups and {r.levelno for r in lookups} == {logging.DEBUG}  # the 404 was expected
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
