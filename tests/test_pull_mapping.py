"""What pulled records become: value forms (sync.pull_map.coerce), attribute maps per source,
event types and properties, merges seen in a pull, and the connectors built from the config
(sync.connect)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from connectors.base import Connector
from connectors.hubspot import HubSpotConnector
from connectors.klaviyo import KlaviyoConnector
from mapping.config import load_project_text
from mapping.errors import ConfigError
from mapping.models import KlaviyoSource
from mapping.rules.ast import Type
from sync.connect import build_connectors, hubspot_event_types, open_connectors
from sync.pull import pull
from sync.pull_map import SourceMap, coerce
from sync.store import schema
from tests.pull_support import (
    CONFIG,
    FakeConnector,
    contact,
    contacts_table,
    event,
    events_of,
    identities,
    project,
)

T0 = 1_700_000_000_000
DAY = 86_400_000


@pytest.mark.parametrize(("value", "type_", "is_date", "expected"), [
    ("Oslo", Type.STRING, False, "Oslo"),
    (12, Type.STRING, False, "12"),
    (12.5, Type.STRING, False, "12.5"),
    (True, Type.STRING, False, "true"),
    ("  ", Type.STRING, False, None),
    (None, Type.NUMBER, False, None),
    ("42", Type.NUMBER, False, 42),
    ("4.5", Type.NUMBER, False, 4.5),
    (7, Type.NUMBER, False, 7),
    ("true", Type.BOOL, False, True),
    ("No", Type.BOOL, False, False),
    (False, Type.BOOL, False, False),
    ("2024-01-31T10:00:00.000Z", Type.DATETIME, False, 1_706_695_200_000),
    ("2024-01-31T10:00:00+02:00", Type.DATETIME, False, 1_706_688_000_000),
    ("1706695200000", Type.DATETIME, False, 1_706_695_200_000),
    (1_706_695_200_000, Type.DATETIME, False, 1_706_695_200_000),
    ("2024-01-31", Type.DATETIME, False, 1_706_659_200_000),
    ("2024-01-31T10:00:00Z", Type.DATETIME, True, 1_706_659_200_000),  # a date: midnight UTC
    ("a;b; c", Type.LIST, False, ["a", "b", "c"]),
    (["a", 2], Type.LIST, False, ["a", "2"]),
])
def test_coerce_accepts_what_the_providers_send(value: Any, type_: Type, is_date: bool,
                                                expected: Any) -> None:
    assert coerce(value, type_, is_date=is_date) == expected


@pytest.mark.parametrize(("value", "type_"), [
    ("lots", Type.NUMBER), (True, Type.NUMBER), ("maybe", Type.BOOL), (1, Type.BOOL),
    ("yesterday", Type.DATETIME), ("2024-01-31T10:00:00", Type.DATETIME), (True, Type.DATETIME),
    ({"a": 1}, Type.STRING), ([{"a": 1}], Type.LIST), (3, Type.LIST),
])
def test_coerce_refuses_misfits_without_showing_the_value(value: Any, type_: Type) -> None:
    with pytest.raises(ValueError) as info:
        coerce(value, type_)
    assert repr(value) not in str(info.value)


def pull_one(engine: Engine, source: FakeConnector, extra: str = "") -> Any:
    connectors: dict[str, Connector] = {source.provider: source}
    summary = pull(engine, project(extra=extra), connectors, now=lambda: T0)
    return summary.sources[source.provider]


def test_owned_attributes_clear_and_same_name_attributes_only_set(eval_engine: Engine) -> None:
    source = FakeConnector("hubspot", [contact("hubspot", "1", "a@example.com", hs_plan="pro", city="Oslo",
                                               ltv="12.5", vip="true", signup_date="2024-01-31T08:00:00Z",
                                               tags="x;y", plan="ignored: hs_plan is mapped")])
    pull_one(eval_engine, source)
    assert contacts_table(eval_engine)[0]["attributes"] == {
        "plan": "pro", "city": "Oslo", "ltv": 12.5, "vip": True, "signup_date": 1_706_659_200_000,
        "tags": ["x", "y"]}
    source.contacts = [contact("hubspot", "1", "a@example.com", hs_plan=None, city=None, ltv="13")]
    source.overlap = 1
    s = pull_one(eval_engine, source)
    assert s.contacts_updated == 1
    assert contacts_table(eval_engine)[0]["attributes"] == {
        "city": "Oslo", "ltv": 13, "vip": True, "signup_date": 1_706_659_200_000, "tags": ["x", "y"]}


def test_klaviyo_field_prefixes_and_misfits_are_counted(eval_engine: Engine) -> None:
    extra = '[sources.klaviyo.attributes]\nplan = "properties.tier"\ncity = "location.city"\n'
    source = FakeConnector("klaviyo", [contact("klaviyo", "k1", "a@example.com", tier="gold", city="Rome",
                                               ltv="lots", vip="maybe")])
    s = pull_one(eval_engine, source, extra)
    assert contacts_table(eval_engine)[0]["attributes"] == {"plan": "gold", "city": "Rome"}
    assert s.invalid_values == {"ltv": 1, "vip": 1}


def test_an_unknown_attribute_in_a_source_map_is_a_config_error() -> None:
    # loading refuses it (mapping.sources, so `segsync validate` reports it with its location)
    with pytest.raises(ConfigError, match=r"test\.toml:\d+:1 sources\.klaviyo\.attributes\.citi: 'citi'"):
        project(extra='[sources.klaviyo.attributes]\nciti = "city"\n')
    # and a Project built some other way is refused before a pull
    loaded = project()
    sources = loaded.config.sources.model_copy(update={"klaviyo": KlaviyoSource(attributes={"citi": "city"})})
    bad = replace(loaded, config=loaded.config.model_copy(update={"sources": sources}))
    with pytest.raises(ConfigError) as info:
        SourceMap.build(bad, "klaviyo")
    assert str(info.value) == ("sources.klaviyo.attributes.citi: 'citi' is not a declared attribute "
                               "(did you mean 'city'?)")


def test_events_types_properties_and_unresolvable_references(eval_engine: Engine) -> None:
    source = FakeConnector("klaviyo", events=[
        event("klaviyo", "1", "Placed Order", T0, pid="k1", email="a@example.com", value=9.5, items="3",
              shipped_at="2024-01-31T10:00:00Z", note="kept as sent"),
        event("klaviyo", "2", "placed_order", T0, pid="k1", items="three"),
        event("klaviyo", "3", "Viewed Product", T0, pid="k1"),
        event("klaviyo", "4", "Viewed Product", T0, pid="k2"),
        event("klaviyo", "5", "Opened Email", T0, email="not-an-email"),
        event("klaviyo", "1", "Placed Order", T0, pid="k1"),
    ], page_size=10)
    s = pull_one(eval_engine, source)
    assert (s.events_seen, s.events_new, s.events_skipped, s.events_unresolved, s.events_duplicate) == (
        6, 2, 2, 1, 1)
    assert s.skipped_types == {"Viewed Product": 2}
    assert s.invalid_values == {"placed_order.items": 1}
    assert s.contacts_from_events == 1
    with eval_engine.connect() as conn:
        rows = {r.source_event_id: r for r in conn.execute(select(schema.events))}
    assert rows["1"].properties == {"items": 3, "shipped_at": 1_706_695_200_000, "note": "kept as sent"}
    assert rows["1"].value == 9.5 and rows["2"].properties is None
    assert set(events_of(eval_engine).values()) == {contacts_table(eval_engine)[0]["id"]}


def test_a_pulled_merge_follows_the_surviving_record(eval_engine: Engine) -> None:
    source = FakeConnector("hubspot", [contact("hubspot", "1", "a@example.com"),
                                       contact("hubspot", "2", "b@example.com")],
                           [event("hubspot", "e1", "OPEN", T0, email="a@example.com")], page_size=10)
    pull_one(eval_engine, source)
    source.contacts = [contact("hubspot", "2", "b@example.com", hs_merged_object_ids="1")]
    source.overlap = 5
    s = pull_one(eval_engine, source)
    assert s.merged == 1
    (survivor,) = contacts_table(eval_engine)
    assert survivor["email"] == "b@example.com"
    assert events_of(eval_engine) == {("hubspot", "e1"): survivor["id"]}
    assert identities(eval_engine)[("hubspot", "1")]["contact_id"] == survivor["id"]


# ------------------------------------------------------------------------------- connect


def test_connectors_are_built_from_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGSYNC_TEST_HS", "pat-x")
    monkeypatch.setenv("SEGSYNC_TEST_KL", "pk_x")
    with open_connectors(project()) as connectors:
        assert isinstance(connectors["hubspot"], HubSpotConnector)
        assert isinstance(connectors["klaviyo"], KlaviyoConnector)
        assert connectors["klaviyo"].metrics == {"opened_email": ("Opened Email",),
                                                 "placed_order": ("Placed Order",)}
        requested = connectors["hubspot"]._contacts.requested
        assert {"hs_plan", "city", "hs_merged_object_ids", "email"} <= set(requested)
    with open_connectors(project(), ["klaviyo"]) as connectors:
        assert list(connectors) == ["klaviyo"]


@pytest.mark.parametrize(("sources", "env", "message"), [
    (None, {"SEGSYNC_TEST_KL": "k"},
     "sources.hubspot.token: environment variable SEGSYNC_TEST_HS is not set"),
    (["shopify"], {}, "unknown source 'shopify' (known: hubspot, klaviyo)"),
])
def test_connector_config_errors(monkeypatch: pytest.MonkeyPatch, sources: list[str] | None,
                                 env: dict[str, str], message: str) -> None:
    for name in ("SEGSYNC_TEST_HS", "SEGSYNC_TEST_KL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        build_connectors(project(), sources)
    assert str(info.value) == message


def test_disabled_sources_and_unmapped_metrics_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGSYNC_TEST_KL", "k")
    text = (CONFIG.format(match="email")
            .replace('token = "env:SEGSYNC_TEST_HS"', 'token = "env:SEGSYNC_TEST_HS"\nenabled = false')
            .replace('api_key = "env:SEGSYNC_TEST_KL"', 'api_key = "env:SEGSYNC_TEST_KL"\n'
                     'metrics = ["Placed Order", "placed_order", "Active on Site"]'))
    bent = load_project_text(text)
    with pytest.raises(ConfigError, match="source 'hubspot' is not configured or not enabled"):
        build_connectors(bent, ["hubspot"])
    with pytest.raises(ConfigError) as info:
        build_connectors(bent)
    assert str(info.value).startswith("sources.klaviyo.metrics[2]: metric 'Active on Site' maps to no "
                                      "declared event type")


def test_hubspot_event_types_use_aliases_then_the_connectors_defaults() -> None:
    extra = '[events.email_clicked]\n[events.email_bounced]\naliases = {hubspot = ["BOUNCE", "DROPPED"]}\n'
    assert hubspot_event_types(project(extra=extra)) == {
        "OPEN": "opened_email", "BOUNCE": "email_bounced", "DROPPED": "email_bounced",
        "CLICK": "email_clicked"}


def test_events_of_an_unknown_profile_over_several_pages_create_one_contact(eval_engine: Engine) -> None:
    source = FakeConnector("klaviyo", events=[
        event("klaviyo", str(n), "Opened Email", T0 + n, pid="k9", email="new@example.com" if n % 2 else None)
        for n in range(7)], page_size=2)
    s = pull_one(eval_engine, source)
    assert (s.events_new, s.contacts_from_events, s.event_pages) == (7, 1, 4)
    (row,) = contacts_table(eval_engine)
    assert row["email"] == "new@example.com"
    assert set(events_of(eval_engine).values()) == {row["id"]}
    assert identities(eval_engine)[("klaviyo", "k9")]["contact_id"] == row["id"]


def test_forgotten_people_are_not_pulled_back(eval_engine: Engine) -> None:
    from sync.service.forget import suppress_keys
    from sync.store.tx import begin_write

    with begin_write(eval_engine) as conn:
        suppress_keys(conn, [("email", "Gone@Example.com"), ("klaviyo", "k2"), ("external_id", "cust-3")],
                      "forget", T0)
    source = FakeConnector("klaviyo", [
        contact("klaviyo", "k1", "gone@example.com"), contact("klaviyo", "k2", "other@example.com"),
        contact("klaviyo", "k3", None, "cust-3"), contact("klaviyo", "k4", "kept@example.com"),
    ], [event("klaviyo", "1", "Opened Email", T0, pid="k1", email="gone@example.com"),
        event("klaviyo", "2", "Opened Email", T0, pid="k2"),
        event("klaviyo", "3", "Opened Email", T0, pid="k4", email="kept@example.com")], page_size=10)
    s = pull_one(eval_engine, source)
    assert (s.contacts_suppressed, s.events_suppressed, s.events_new) == (3, 2, 1)
    assert [r["email"] for r in contacts_table(eval_engine)] == ["kept@example.com"]
    assert set(identities(eval_engine)) == {("klaviyo", "k4")}


def test_the_configuration_in_docs_pull_md_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = (Path(__file__).parents[1] / "docs" / "pull.md").read_text()
    text = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    docs_project = load_project_text(text, "docs/pull.md")
    hubspot = SourceMap.build(docs_project, "hubspot")
    assert hubspot.attributes["lifecycle_stage"].field == "lifecyclestage"
    assert SourceMap.build(docs_project, "klaviyo").attributes["plan"].field == "plan"
    monkeypatch.setenv("HUBSPOT_TOKEN", "pat-x")
    monkeypatch.setenv("KLAVIYO_API_KEY", "pk_x")
    with open_connectors(docs_project) as connectors:
        assert set(connectors) == {"hubspot", "klaviyo"}
    assert hubspot_event_types(docs_project) == {"OPEN": "opened_email"}
