"""POST /webhooks/hubspot and /webhooks/klaviyo through the app: verify, store, dedupe, apply."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sync.service import metrics
from sync.store import repo, schema
from sync.store.tx import begin_write
from tests.service_support import (
    NOW,
    Service,
    hs_event,
    hs_headers,
    kl_body,
    kl_headers,
    prop_change,
    start,
    stored,
)


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    yield from start(tmp_path)


def _link(svc: Service, object_id: int, email: str, provider: str = "hubspot") -> int:
    with begin_write(svc.engine) as conn:
        cid = repo.contact_ids(conn, [(email, None)], NOW)[0]
        assert cid is not None
        repo.upsert_identity(conn, provider, str(object_id), cid, NOW, email=email)
    return cid


def test_a_signed_batch_is_stored_then_applied(svc: Service) -> None:
    cid = _link(svc, 501, "ann@example.com")
    r = svc.post_hubspot([prop_change(501, "plan", "pro"), prop_change(501, "lifecyclestage", "lead")])
    assert r.status_code == 200 and r.json() == {"received": 2, "new": 2}
    assert stored(svc.engine) == 2 and svc.attributes(501) == {}
    assert svc.work() == 2
    assert svc.attributes(501) == {"plan": "pro", "lifecycle": "lead"}
    assert svc.hooked == [[cid]]
    with svc.engine.connect() as conn:
        rows = conn.execute(select(schema.inbox.c.status, schema.inbox.c.outcome)).all()
    assert rows == [("done", "applied"), ("done", "applied")]


def _body(events: list[dict[str, Any]]) -> bytes:
    return json.dumps(events).encode()


BODY = _body([prop_change(501, "plan", "pro")])


@pytest.mark.parametrize(("body", "headers", "status"), [
    (BODY, hs_headers(BODY.replace(b"pro", b"max")), 401),  # tampered
    (BODY, hs_headers(BODY, secret="nope"), 401),
    (BODY, hs_headers(BODY, ts=NOW - 5 * 60_000 - 1), 401),  # stale: a replay after the window
    (BODY, hs_headers(BODY, ts=NOW + 60_000), 401),  # future
    (BODY, hs_headers(BODY, uri="http://testserver/webhooks/other"), 401),
    (BODY, {"Content-Type": "application/json"}, 401),
    (b"{not json", hs_headers(b"{not json"), 400),
    (b"{}", hs_headers(b"{}"), 400),
    (_body([{"subscriptionType": "contact.creation", "objectId": 1}]),
     hs_headers(_body([{"subscriptionType": "contact.creation", "objectId": 1}])), 400),
    (_body([prop_change(1, "a", "b")] * 101), hs_headers(_body([prop_change(1, "a", "b")] * 101)), 400),
], ids=["tampered", "wrong-secret", "stale", "future", "other-uri", "unsigned", "not-json", "not-array",
        "no-occurredAt", "over-100"])
def test_rejected_requests_store_nothing(svc: Service, body: bytes, headers: dict[str, str],
                                         status: int) -> None:
    r = svc.client.post("/webhooks/hubspot", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["error"]
    assert stored(svc.engine) == 0


def test_too_large_is_413_and_stores_nothing(tmp_path: Path) -> None:
    for svc in start(tmp_path, max_body_bytes=2048):
        body = _body([prop_change(n, "plan", "x" * 50) for n in range(40)])
        r = svc.client.post("/webhooks/hubspot", content=body, headers=hs_headers(body))
        assert r.status_code == 413 and stored(svc.engine) == 0


def test_duplicate_deliveries_have_one_effect(svc: Service) -> None:
    _link(svc, 501, "ann@example.com")
    first = prop_change(501, "plan", "pro")
    retry = {**first, "attemptNumber": 1, "eventId": 99}  # HubSpot's eventId is not unique
    assert svc.post_hubspot([first]).json() == {"received": 1, "new": 1}
    assert svc.post_hubspot([first]).json() == {"received": 1, "new": 0}  # replay in the window
    assert svc.post_hubspot([retry, first]).json() == {"received": 2, "new": 0}
    assert stored(svc.engine) == 1
    assert svc.work() == 1 and svc.work() == 0
    assert svc.attributes(501) == {"plan": "pro"}


def test_email_change_of_an_unknown_record_matches_by_email(svc: Service) -> None:
    cid = _link(svc, 77, "bob@example.com", provider="klaviyo")
    svc.post_hubspot([prop_change(900, "email", "Bob@Example.com"), prop_change(901, "plan", "pro")])
    svc.work()
    with svc.engine.connect() as conn:
        found = repo.contact_for_identity(conn, "hubspot", "900")
        outcomes = conn.execute(select(schema.inbox.c.outcome).order_by(schema.inbox.c.id)).scalars().all()
    assert found == cid  # the same person in both providers stays one contact
    assert outcomes == ["applied", "unknown_record"]  # 901 waits for a pull


def test_deletion_restore_and_merge(svc: Service) -> None:
    kept = _link(svc, 1, "a@example.com")
    _link(svc, 2, "b@example.com")
    both = _link(svc, 3, "c@example.com")
    _link(svc, 33, "c@example.com", provider="klaviyo")
    svc.post_hubspot([hs_event("contact.deletion", 2), hs_event("contact.deletion", 3)])
    svc.work()
    with svc.engine.connect() as conn:
        contacts = set(conn.execute(select(schema.contacts.c.id)).scalars())
        archived = conn.execute(select(schema.identities.c.archived).where(
            schema.identities.c.provider_id == "3")).scalar_one()
    assert contacts == {kept, both} and archived  # 2 had nothing else: gone; 3 is still in Klaviyo
    svc.post_hubspot([hs_event("contact.restore", 3, NOW - 500),
                      hs_event("contact.merge", 1, NOW - 400, primaryObjectId=1, mergedObjectIds=[3])])
    svc.work()
    with svc.engine.connect() as conn:
        assert repo.contact_for_identity(conn, "hubspot", "3") == kept


def test_klaviyo_events_are_stored_once(svc: Service) -> None:
    body = kl_body([("evt_1", "P1", "kim@example.com"), ("evt_2", "P1", "kim@example.com")])
    r = svc.client.post("/webhooks/klaviyo", content=body, headers=kl_headers(body))
    assert r.status_code == 200 and r.json() == {"received": 2, "new": 2}
    again = svc.client.post("/webhooks/klaviyo", content=body, headers=kl_headers(body))
    assert again.json() == {"received": 2, "new": 0}
    svc.work()
    with svc.engine.connect() as conn:
        rows = conn.execute(select(schema.events.c.source, schema.events.c.source_event_id)).all()
        cid = repo.contact_for_identity(conn, "klaviyo", "P1")
    assert sorted(rows) == [("klaviyo", "evt_1"), ("klaviyo", "evt_2")]
    assert svc.hooked == [[cid]]


@pytest.mark.parametrize(("change", "reason"), [
    ({"webhook_id": "wh_other"}, "Webhook-Id does not match"),
    ({"secret": "nope"}, "does not match"),
    ({"timestamp": "2024-06-01T11:50:00+00:00"}, "old"),
    ({"timestamp": "2024-06-01T12:10:00+00:00"}, "future"),
], ids=["webhook-id", "wrong-secret", "stale", "future"])
def test_klaviyo_rejections_store_nothing(svc: Service, change: dict[str, str], reason: str) -> None:
    body = kl_body([("evt_1", "P1", "kim@example.com")])
    r = svc.client.post("/webhooks/klaviyo", content=body, headers=kl_headers(body, **change))
    assert r.status_code == 401 and reason in r.json()["error"]
    assert stored(svc.engine) == 0


def test_unconfigured_endpoint_is_503(tmp_path: Path) -> None:
    for svc in start(tmp_path, klaviyo_secret=None):
        body = kl_body([("evt_1", "P1", "kim@example.com")])
        r = svc.client.post("/webhooks/klaviyo", content=body, headers=kl_headers(body))
        assert r.status_code == 503 and "klaviyo_webhook_secret" in r.json()["error"]


def test_health_and_metrics(svc: Service) -> None:
    accepted = metrics.DELIVERIES.value(source="hubspot", status="accepted")
    rejected = metrics.DELIVERIES.value(source="hubspot", status="rejected_signature")
    svc.post_hubspot([prop_change(501, "plan", "pro")])
    svc.client.post("/webhooks/hubspot", content=b"[]", headers={"X-HubSpot-Signature-v3": "x"})
    assert svc.client.get("/healthz").json() == {"status": "ok", "queue_depth": 1, "lag_seconds": 0}
    text = svc.client.get("/metrics").text
    assert "segsync_inbox_queue_depth 1\n" in text and "segsync_inbox_lag_seconds 0\n" in text
    assert f'segsync_deliveries_total{{source="hubspot",status="accepted"}} {int(accepted) + 1}' in text
    label = '{source="hubspot",status="rejected_signature"}'
    assert f"segsync_deliveries_total{label} {int(rejected) + 1}" in text
    for name in ("segsync_pushes_total", "segsync_push_retries_total", "segsync_rate_limited_total",
                 "segsync_segment_size", "segsync_ack_seconds"):
        assert f"# TYPE {name} " in text
    svc.work()
    assert "segsync_inbox_queue_depth 0\n" in svc.client.get("/metrics").text
