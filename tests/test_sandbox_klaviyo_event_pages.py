"""Events served from pre-rendered bytes: the same objects the dict builder makes, profile
fragments re-rendered after a change, sparse profile fieldsets valid against the spec."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import pytest
import requests

from connectors.sandbox.klaviyo.event_pages import EventBytes
from connectors.sandbox.klaviyo.events import event_resource
from connectors.sandbox.server import Request
from tests.test_sandbox_klaviyo_support import Sandbox, sandbox, validate

__all__ = ["sandbox"]

HEADERS = {"Authorization": "Klaviyo-API-Key pk_sandbox", "revision": "2026-10-15"}


def _request(host: str, fields: str | None = None) -> Request:
    query = {"fields[event]": [fields]} if fields else {}
    return Request("GET", "/api/events", "/api/events", query, {"host": host}, b"")


@pytest.mark.parametrize(
    ("props", "value", "ms"),
    [
        ({}, None, 1_704_103_200_000),
        ({"product": "Mug", "n": 3, "tags": ["a", "b"], "nested": {"x": None}}, 12.5, 1_704_103_200_123),
        ({"name": 'Zoë "quoted" \\ \u2603', "ok": True}, 0.0, 1_704_103_200_999),
    ],
)
@pytest.mark.parametrize("host", ["127.0.0.1:8080", 'odd"host'])
def test_rendered_event_is_the_dict_builders_json(
    sandbox: Sandbox, props: dict[str, Any], value: float | None, ms: int, host: str
) -> None:
    state = sandbox.state
    with state.lock:
        profile = state.create_profile({"email": "r@example.com"})
        state.add_event(state.metric("Placed Order"), profile, ms, props, value)
        pos = len(state.events) - 1
        cache = EventBytes(state)
        want = json.dumps(event_resource(_request(host), state, pos), separators=(",", ":")).encode()
        got = cache.event("http://" + host, pos)
        assert got == want
        assert cache.event("http://" + host, pos) is got  # rendered once, then reused
        for fields in ("datetime,event_properties", "uuid", "timestamp,datetime"):  # sparse fieldsets
            resource = event_resource(_request(host, fields), state, pos)
            want = json.dumps(resource, separators=(",", ":")).encode()
            got = cache.event("http://" + host, pos, fields)
            assert got == want
            assert list(json.loads(got)["attributes"]) == [
                k for k in ("timestamp", "event_properties", "datetime", "uuid") if k in fields.split(",")]


def _page(sb: Sandbox, **params: str) -> dict[str, Any]:
    r = requests.get(sb.url + "/api/events", params=params, headers=HEADERS, timeout=10)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    validate("get_events", 200, body)
    return body


def test_included_profile_follows_changes_and_sparse_fields(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = sandbox.state
    with state.lock:
        profile = state.create_profile({"email": "p@example.com", "first_name": "Ann"})
        state.add_event(state.metric("Viewed Product"), profile, 1_704_103_200_000, {"sku": "A"})
    first = _page(sandbox, include="profile")
    assert first["included"][0]["attributes"]["first_name"] == "Ann"
    stamp = profile.updated
    monkeypatch.setattr(state, "now_ms", lambda: stamp)  # `updated` does not move
    with state.lock:
        state.update_profile(profile, {"first_name": "Bea"})
    assert profile.updated == stamp
    again = _page(sandbox, include="profile")
    assert again["included"][0]["attributes"]["first_name"] == "Bea"
    assert again["data"] == first["data"]
    sparse = _page(sandbox, include="profile,metric", **{"fields[profile]": "email"})
    by_type = {i["type"]: i for i in sparse["included"]}
    assert by_type["profile"]["attributes"] == {"email": "p@example.com"}
    assert by_type["metric"]["attributes"]["name"] == "Viewed Product"


def test_pages_of_cached_events_keep_order_and_cursor(sandbox: Sandbox) -> None:
    state = sandbox.state
    with state.lock:
        profile = state.create_profile({"email": "c@example.com"})
        for i in range(7):
            state.add_event(
                state.metric("Opened Email"), profile, 1_704_103_200_000 + 1000 * (6 - i), {"i": i}
            )
    seen: list[int] = []
    params = {"page[size]": "3", "sort": "datetime"}
    for _ in range(2):  # the second walk is served wholly from the cache
        cursor: str | None = None
        walk: list[int] = []
        while True:
            page = _page(sandbox, **params, **({"page[cursor]": cursor} if cursor else {}))
            walk += [e["attributes"]["event_properties"]["i"] for e in page["data"]]
            nxt = page["links"].get("next")
            if not nxt:
                break
            cursor = unquote(nxt.split("page%5Bcursor%5D=")[1])
        seen.append(len(walk))
        assert walk == [6, 5, 4, 3, 2, 1, 0]
    assert seen == [7, 7]
