"""The event pull's fast path: raw page bytes parsed with orjson, a page converted in one loop."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from openapi_client.exceptions import ApiException

from connectors.errors import MalformedResponse
from connectors.klaviyo.convert import event_of, events_of
from connectors.klaviyo.pull import _raw_json


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
    """The part of a urllib3 response that `_raw_json` reads."""

    def __init__(self, status: int, data: bytes) -> None:
        self.status, self.data, self.reason = status, data, "x"
        self.headers = {"Content-Type": "application/vnd.api+json"}
        self.released = False

    def release_conn(self) -> None:
        self.released = True


def test_raw_json_parses_a_page() -> None:
    raw = _Raw(200, b'{"data":[{"id":"E1","attributes":{"n":1.5}}],"links":{}}')
    assert _raw_json(raw, "get_events") == {"data": [{"id": "E1", "attributes": {"n": 1.5}}], "links": {}}
    assert raw.released


@pytest.mark.parametrize("status", [400, 429, 503])
def test_raw_json_raises_the_sdks_error_for_a_failure(status: int) -> None:
    body = b'{"errors":[{"status":400,"code":"invalid","detail":"page size"}]}'
    raw = _Raw(status, body)
    with pytest.raises(ApiException) as info:
        _raw_json(raw, "get_events")
    assert info.value.status == status and info.value.body == body.decode()
    assert raw.released


def test_raw_json_rejects_a_body_that_is_not_json() -> None:
    with pytest.raises(MalformedResponse, match="get_events: malformed response: the body is not JSON"):
        _raw_json(_Raw(200, b"<html>"), "get_events")
