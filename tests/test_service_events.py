"""POST /events: API key, per-item validation (400 lists every problem), dedupe, storage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sync.store import schema
from tests.service_support import EVENTS_KEY, NOW, Service, start, stored

AUTH = {"X-API-Key": EVENTS_KEY}
ORDER = {"type": "order_placed", "email": "Ann@Example.com", "ts": "2024-06-01T10:00:00Z", "value": 59.9,
         "id": "ord-1", "properties": {"product": "boots", "price": 59.9, "channel": "web"}}


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    yield from start(tmp_path)


def test_events_are_stored_and_applied_once(svc: Service) -> None:
    second = {**ORDER, "id": None, "ts": NOW - 5, "external_id": "c-2", "email": None}
    r = svc.client.post("/events", json={"events": [ORDER, second]}, headers=AUTH)
    assert r.status_code == 200 and r.json() == {"received": 2, "new": 2}
    bearer = {"Authorization": f"Bearer {EVENTS_KEY}"}
    again = svc.client.post("/events", json=[ORDER, second], headers=bearer)
    assert again.json() == {"received": 2, "new": 0}
    svc.work()
    with svc.engine.connect() as conn:
        rows = conn.execute(select(schema.events.c.ts, schema.events.c.value, schema.events.c.properties,
                                   schema.events.c.source_event_id).order_by(schema.events.c.ts)).all()
        emails = set(conn.execute(select(schema.contacts.c.email)).scalars())
    assert [(r.ts, r.value, r.source_event_id[:7]) for r in rows] == [
        (1717236000000, 59.9, "id:ord-"), (NOW - 5, 59.9, "sha256:")]
    assert rows[0].properties == {"channel": "web", "price": 59.9, "product": "boots"}
    assert emails == {"ann@example.com", None}
    assert len(svc.hooked) == 1 and len(svc.hooked[0]) == 2


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer nope"}])
def test_wrong_or_missing_key_is_401(svc: Service, headers: dict[str, str]) -> None:
    r = svc.client.post("/events", json={"events": [ORDER]}, headers=headers)
    assert r.status_code == 401 and stored(svc.engine) == 0


@pytest.mark.parametrize(("event", "where", "message"), [
    ({**ORDER, "type": "order_placd"}, "events[0].type", "did you mean 'order_placed'"),
    ({**ORDER, "email": "not-an-email"}, "events[0].email", "invalid email"),
    ({k: v for k, v in ORDER.items() if k != "email"}, "events[0]", "needs an email or an external_id"),
    ({**ORDER, "ts": "2024-06-01 10:00"}, "events[0].ts", "offset"),
    ({**ORDER, "ts": NOW + 10 * 60_000}, "events[0].ts", "future"),
    ({**ORDER, "value": "12"}, "events[0].value", "must be a number"),
    ({**ORDER, "properties": {"price": "cheap"}}, "events[0].properties.price", "is not a number"),
    ({**ORDER, "properties": []}, "events[0].properties", "must be an object"),
    ({**ORDER, "valu": 1}, "events[0].valu", "did you mean 'value'"),
    ({**ORDER, "id": ""}, "events[0].id", "non-empty string"),
], ids=["type", "email", "no-key", "ts-no-offset", "ts-future", "value", "declared-prop", "props",
        "unknown-key", "empty-id"])
def test_invalid_items_are_400_and_nothing_is_stored(svc: Service, event: dict[str, Any], where: str,
                                                     message: str) -> None:
    r = svc.client.post("/events", json={"events": [event, ORDER]}, headers=AUTH)
    assert r.status_code == 400, r.text
    errors = r.json()["errors"]
    assert [e["where"] for e in errors] == [where] and message in errors[0]["message"]
    assert errors[0]["index"] == 0
    assert stored(svc.engine) == 0


@pytest.mark.parametrize(("body", "message"), [
    (b"nope", "not JSON"), (b'{"event": []}', "expected"), (b'{"events": []}', "no events"),
    (b'{"events": [' + b",".join([b"{}"] * 1001) + b"]}", "at most 1000"),
])
def test_malformed_batches_are_400(svc: Service, body: bytes, message: str) -> None:
    r = svc.client.post("/events", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 400 and message in r.json()["error"]


def test_every_bad_item_is_listed(svc: Service) -> None:
    r = svc.client.post("/events", json={"events": [{**ORDER, "value": True}, ORDER, {"type": 3}]},
                        headers=AUTH)
    assert [(e["index"], e["field"]) for e in r.json()["errors"]] == [(0, "value"), (2, "type"), (2, None)]
