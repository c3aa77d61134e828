"""Support for the real-time service tests: a project, signed requests, a recording hook."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from connectors.hubspot.signature import signature_v3
from connectors.klaviyo.signature import sign as klaviyo_sign
from mapping.config import load_project_text
from mapping.project import Project
from sync.service.app import ServiceSettings, create_app
from sync.service.inbox import Inbox
from sync.service.spool import spool_stats
from sync.store import schema
from sync.store.db import open_store

HS_SECRET = "hs-client-secret"
KL_SECRET = "kl-webhook-secret"
EVENTS_KEY = "events-key-123"
NOW = 1_717_243_200_000  # 2024-06-01T12:00:00Z: the service's clock in these tests
HOOK_URL = "http://testserver/webhooks/hubspot"

CONFIG = """
[attributes]
plan = "string"
lifecycle = "string"

[sources.hubspot]
attributes = { lifecycle = "lifecyclestage" }

[sources.klaviyo]

[events.opened_email]
aliases = { klaviyo = ["Opened Email"] }

[events.order_placed]
properties = { product = "string", price = "number" }

[segments.pro]
rule = 'plan == "pro"'

[service]
hubspot_client_secret = "env:SEGSYNC_TEST_HS_SECRET"
klaviyo_webhook_secret = "env:SEGSYNC_TEST_KL_SECRET"
events_api_key = "env:SEGSYNC_TEST_EVENTS_KEY"
"""

ENV = {"SEGSYNC_TEST_HS_SECRET": HS_SECRET, "SEGSYNC_TEST_KL_SECRET": KL_SECRET,
       "SEGSYNC_TEST_EVENTS_KEY": EVENTS_KEY}


def project(base_dir: Path, extra: str = "") -> Project:
    return load_project_text(CONFIG + extra, "service.toml", base_dir=base_dir)


def settings(**changes: Any) -> ServiceSettings:
    base = ServiceSettings(hubspot_secret=HS_SECRET, klaviyo_secret=KL_SECRET, events_key=EVENTS_KEY)
    return ServiceSettings(**{**base.__dict__, **changes})


def hs_event(kind: str, object_id: int, occurred: int = NOW - 1000, **extra: Any) -> dict[str, Any]:
    return {"eventId": 1, "subscriptionId": 1, "portalId": 62515, "appId": 1, "occurredAt": occurred,
            "subscriptionType": kind, "attemptNumber": 0, "objectId": object_id,
            "changeSource": "CRM", **extra}


def prop_change(object_id: int, name: str, value: str, occurred: int = NOW - 1000) -> dict[str, Any]:
    return hs_event("contact.propertyChange", object_id, occurred, propertyName=name, propertyValue=value)


def hs_headers(body: bytes, ts: int = NOW, secret: str = HS_SECRET, uri: str = HOOK_URL) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-HubSpot-Request-Timestamp": str(ts),
            "X-HubSpot-Signature-v3": signature_v3(secret, "POST", uri, body, ts)}


def kl_body(items: Sequence[tuple[str, str, str]], webhook_id: str = "wh_1") -> bytes:
    """(event id, profile id, email) items of topic opened_email."""
    data = [{"external_id": eid, "topic": "event:klaviyo.opened_email", "payload": {
        "data": {"type": "event", "id": eid, "attributes": {
            "datetime": "2024-06-01T11:00:00+00:00", "event_properties": {"Subject": "Hi"}},
            "relationships": {"profile": {"data": {"type": "profile", "id": pid}}}},
        "included": [{"type": "profile", "id": pid, "attributes": {"email": email}}]}}
        for eid, pid, email in items]
    meta = {"klaviyo_account_id": "ACC", "klaviyo_webhook_id": webhook_id,
            "timestamp": "2024-06-01T12:00:00+00:00"}
    return json.dumps({"data": data, "meta": meta}).encode()


def kl_headers(body: bytes, timestamp: str = "2024-06-01T12:00:00+00:00", secret: str = KL_SECRET,
               webhook_id: str = "wh_1") -> dict[str, str]:
    return {"Content-Type": "application/json", "Klaviyo-Webhook-Id": webhook_id,
            "Klaviyo-Timestamp": timestamp, "Klaviyo-Signature": klaviyo_sign(secret, body, timestamp)}


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(schema.metadata.tables[table])).scalar_one())


def stored(engine: Engine) -> int:
    """Inbox items stored so far: in the inbox table, plus those still in the spool."""
    path = Inbox(engine).spool_path
    return count(engine, "inbox") + (spool_stats(path)[0] if path is not None else 0)


@dataclass
class Service:
    engine: Engine
    project: Project
    app: FastAPI
    client: TestClient
    hooked: list[list[int]] = field(default_factory=list)

    def post_hubspot(self, events: list[dict[str, Any]], **kw: Any) -> Any:
        body = json.dumps(events).encode()
        return self.client.post("/webhooks/hubspot", content=body, headers=hs_headers(body, **kw))

    def work(self) -> int:
        """Apply everything pending (the worker thread is off in these tests)."""
        total = 0
        while n := self.app.state.worker.run_once():
            total += n
        return total

    def attributes(self, object_id: int) -> dict[str, Any] | None:
        i, c = schema.identities, schema.contacts
        with self.engine.connect() as conn:
            row = conn.execute(select(c.c.attributes).join(i, i.c.contact_id == c.c.id).where(
                i.c.provider == "hubspot", i.c.provider_id == str(object_id))).first()
        return None if row is None else dict(row[0])


def start(tmp_path: Path, extra: str = "", engine: Engine | None = None, **setting: Any) -> Iterator[Service]:
    proj = project(tmp_path, extra)
    engine = engine or open_store(f"sqlite:///{tmp_path / 'service.db'}")
    hooked: list[list[int]] = []
    app = create_app(engine, proj, settings(**setting), hook=lambda ids: hooked.append(list(ids)),
                     run_worker=False, clock=lambda: NOW)
    with TestClient(app) as client:
        yield Service(engine, proj, app, client, hooked)
    engine.dispose()
