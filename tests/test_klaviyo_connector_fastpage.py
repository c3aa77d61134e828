"""The event pull's fast paths: raw page bytes decoded by msgspec into the fields read
(`eventpage`), and the general path (orjson, then a page converted in one loop); both give the
same records."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_client.exceptions import ApiException

from connectors.errors import MalformedResponse
from connectors.klaviyo.convert import emails_of, event_of, events_of
from connectors.klaviyo.eventpage import decode_events
from connectors.klaviyo.pull import _events_page, _raw_body
from connectors.records import Event


def _item(i: int, **attrs: Any) -> dict[str, Any]:
    return {
        "type": "event",
        "id": f"E{i}",
        "attributes": {
            "timestamp": 1_704_103_200,
            "datetime": f"2024-01-01T10:00:0{i}.250000+00:00",
            "event_properties": {"product": "Mug", "$value": 12.5, "n": i},
            **attrs,
        },
        "relationships": {"profile": {"data": {"type": "profile", "id": f"P{i % 2}"}}},
    }


def test_events_of_matches_event_of() -> None:
    items = [_item(0), _item(1, event_properties=None), _item(2, event_properties={"$value": "7"}), _item(3)]
    emails = {"P0": "a@example.com"}
    got = events_of(items, "order", emails, "get_events Placed Order")
    assert got == [event_of(it, "order", emails, "get_events Placed Order") for it in items]
    assert [(e.ts, e.value, e.contact.email) for e in got[:3]] == [
        (1_704_103_200_250, 12.5, "a@example.com"),
        (1_704_103_201_250, None, None),
        (1_704_103_202_250, 7.0, "a@example.com"),
    ]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("relationships",), None, "relationships.profile.data.id"),
        (("relationships", "profile", "data", "id"), 5, "relationships.profile.data.id"),
        (("attributes", "event_properties"), ["x"], "'event_properties' is not an object"),
        (("attributes", "datetime"), "yesterday", "is not an ISO-8601 date-time"),
    ],
)
def test_events_of_names_a_malformed_item(path: tuple[str, ...], value: Any, message: str) -> None:
    bad = copy.deepcopy(_item(1))
    target = bad
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(MalformedResponse) as info:
        events_of([_item(0), bad], "order", {}, "get_events X")
    assert message in str(info.value) and "E1" in str(info.value)


class _Raw:
    """The part of a urllib3 response that `_raw_body` reads."""

    def __init__(self, status: int, data: bytes) -> None:
        self.status, self.data, self.reason = status, data, "x"
        self.headers = {"Content-Type": "application/vnd.api+json"}
        self.released = False

    def release_conn(self) -> None:
        self.released = True


def test_raw_body_reads_a_page() -> None:
    raw = _Raw(200, b'{"data":[],"links":{}}')
    assert _raw_body(raw) == b'{"data":[],"links":{}}'
    assert raw.released


@pytest.mark.parametrize("status", [400, 429, 503])
def test_raw_body_raises_the_sdks_error_for_a_failure(status: int) -> None:
    body = b'{"errors":[{"status":400,"code":"invalid","detail":"page size"}]}'
    raw = _Raw(status, body)
    with pytest.raises(ApiException) as info:
        _raw_body(raw)
    assert info.value.status == status and info.value.body == body.decode()
    assert raw.released


@pytest.mark.parametrize("body", [b"<html>", b'{"data":[', b""])
def test_a_body_that_is_not_json_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedResponse, match="get_events: malformed response: the body is not JSON"):
        _events_page(body, "order", "get_events")


def _general(doc: dict[str, Any], event_type: str = "order") -> list[Event]:
    return events_of(doc["data"], event_type, emails_of(doc.get("included")), "get_events X")


def _page(items: list[dict[str, Any]], included: Any = None, next_url: Any = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"data": items, "links": {"self": "http://x/api/events", "next": next_url}}
    if included is not None:
        doc["included"] = included
    return doc


def _profile(pid: str, email: Any) -> dict[str, Any]:
    return {"type": "profile", "id": pid, "attributes": {"email": email}, "links": {"self": "http://x"}}


COMMON_PAGES = {
    "plain": _page([_item(i) for i in range(4)], [_profile("P0", "a@example.com"), _profile("P1", "b@x.io")]),
    "no included": _page([_item(0), _item(1)]),
    "odd properties": _page(
        [
            _item(0, event_properties=None),
            _item(1, event_properties={}),
            _item(2, event_properties={"$value": "7.5"}),
            _item(3, event_properties={"$value": True, "nested": {"a": [1, None, "x"]}}),
            _item(4, event_properties={"$value": "n/a"}),
        ]
    ),
    "no event_properties": _page([{**_item(0), "attributes": {"datetime": "2024-01-01T10:00:00Z"}}]),
    "times": _page(
        [
            _item(0, datetime="2024-01-01T10:00:00Z"),
            _item(1, datetime="2024-01-01T12:00:00.5+02:00"),
            _item(2, datetime="2024-01-01T10:00:00"),
        ]
    ),
    "emails": _page(
        [_item(0), _item(1)],
        [_profile("P0", "  padded@example.com "), _profile("P1", ""), {"type": "metric", "id": "M1"}],
    ),
    "next": _page([_item(0)], None, "http://x/api/events?page%5Bcursor%5D=abc"),
}


@pytest.mark.parametrize("name", sorted(COMMON_PAGES))
def test_the_msgspec_path_takes_common_pages_and_agrees_with_the_general_path(name: str) -> None:
    doc = COMMON_PAGES[name]
    page = decode_events(orjson.dumps(doc), "order", "get_events X")
    assert page is not None, "a common page must take the fast path"
    assert page.events == _general(doc)
    assert [e.properties for e in page.events] == [e.properties for e in _general(doc)]
    assert getattr(page.links, "next", None) == doc["links"]["next"]


def test_emails_come_from_the_included_profiles() -> None:
    page = decode_events(orjson.dumps(COMMON_PAGES["emails"]), "order", "get_events X")
    assert page is not None
    assert [e.contact.email for e in page.events] == ["padded@example.com", None]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_page([_item(0), {**_item(1), "relationships": None}]), "relationships.profile.data.id"),
        (_page([{**_item(1), "relationships": {"profile": {"data": {"id": ""}}}}]), "profile.data.id"),
        (_page([_item(1, event_properties=["x"])]), "'event_properties' is not an object"),
        (_page([_item(1, datetime="yesterday")]), "is not an ISO-8601 date-time"),
        (_page([_item(1, datetime=1_704_103_200)]), "expected an ISO-8601 date-time"),
        (_page([{**_item(1), "attributes": None}]), "has no 'attributes' object"),
        ({"links": {}}, "'data' is missing or not an array"),
        ({"data": [{"id": 5, "attributes": {}}]}, "has no string 'id'"),
    ],
)
def test_a_page_of_another_shape_takes_the_general_path_which_names_the_problem(
    doc: dict[str, Any], message: str
) -> None:
    with pytest.raises(MalformedResponse) as info:
        _events_page(orjson.dumps(doc), "order", "get_events X")
    assert message in str(info.value)


def test_an_included_email_of_another_type_is_ignored_by_both_paths() -> None:
    doc = _page([_item(0)], [{"type": "profile", "id": "P0", "attributes": {"email": 42}}])
    page = _events_page(orjson.dumps(doc), "order", "get_events X")
    assert page.events == _general(doc) and page.events[0].contact.email is None


SCALAR = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8)
JSON = st.recursive(
    SCALAR | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip
PROPS = st.none() | st.dictionaries(st.sampled_from(["$value", "a", "b", "é"]), JSON, max_size=4)
STAMP = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda d: d.isoformat() + "+00:00"
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(PROPS, STAMP, st.sampled_from(["P0", "P1", "P2"])), max_size=6))
def test_both_paths_agree_on_random_pages(rows: list[tuple[Any, str, str]]) -> None:
    items = [
        {
            "type": "event",
            "id": f"E{i}",
            "attributes": {"datetime": stamp, "event_properties": props},
            "relationships": {"profile": {"data": {"type": "profile", "id": pid}}},
        }
        for i, (props, stamp, pid) in enumerate(rows)
    ]
    doc = _page(items, [_profile("P0", "a@example.com"), _profile("P2", " c@example.com")])
    page = decode_events(orjson.dumps(doc), "click", "get_events X")
    assert page is not None
    general = _general(doc, "click")
    assert page.events == general
    assert [(e.ts, e.value, e.contact.email, e.properties) for e in page.events] == [
        (e.ts, e.value, e.contact.email, e.properties) for e in general
    ]
