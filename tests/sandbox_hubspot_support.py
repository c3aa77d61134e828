"""Shared fixtures for the HubSpot stand-in tests: a small fixed population served in-process on an
ephemeral loopback port, with the official SDK and a ``requests`` session pointed at it."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from hubspot import HubSpot

from connectors.sandbox.hubspot import HubSpotApp, HubSpotSettings, HubSpotState, build_app
from connectors.sandbox.server import SandboxServer

TOKEN = "pat-sandbox"
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z
STAGES = ("subscriber", "lead", "customer")
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def people(n: int = 30) -> list[dict[str, Any]]:
    return [
        {
            "email": f"person{i}@example.com",
            "firstname": f"First{i}",
            "lastname": "Smith" if i % 2 else "Jones",
            "phone": f"+1555000{i:04d}",
            "city": ("Berlin", "Lisbon", "Austin")[i % 3],
            "country": "DE",
            "lifecyclestage": STAGES[i % 3],
            "createdate": T0 + i * 60_000,
        }
        for i in range(n)
    ]


def email_events() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(5):
        email = f"person{i}@example.com"
        base = T0 + i * 1_000_000
        out.append({"email": email, "kind": "sent", "ts": base, "campaign_id": 11})
        out.append({"email": email, "kind": "delivered", "ts": base + 1000, "campaign_id": 11})
        out.append({"email": email, "kind": "opened", "ts": base + 5000, "campaign_id": 11})
        out.append(
            {
                "email": email,
                "kind": "clicked",
                "ts": base + 9000,
                "campaign_id": 11,
                "url": f"https://shop.example/products/p{i}",
            }
        )
    out.append(
        {"email": "person1@example.com", "kind": "unsubscribed", "ts": T0 + 9_000_000, "campaign_id": 12}
    )
    out.append({"email": "person2@example.com", "kind": "bounced", "ts": T0 + 9_100_000, "campaign_id": 12})
    return out


@dataclass
class Running:
    url: str
    state: HubSpotState
    settings: HubSpotSettings
    app: HubSpotApp
    client: Any  # hubspot.HubSpot
    http: requests.Session

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.http.get(self.url + path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        return self.http.post(self.url + path, json=body, **kw)

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> requests.Response:
        return self.http.request(method, self.url + path, json=body, **kw)


def start(
    settings: HubSpotSettings | None = None, n_people: int = 30, rate_limits: bool = False
) -> tuple[SandboxServer, Running]:
    settings = settings or HubSpotSettings()
    settings.rate_limit.enabled = rate_limits
    state = HubSpotState()
    state.load_records(people(n_people), email_events())
    app = build_app(state, settings)
    server = SandboxServer(app).start()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    client = HubSpot(access_token=TOKEN, host=server.url)
    return server, Running(server.url, state, settings, app, client, session)


@pytest.fixture(scope="module")
def hs_server() -> Iterator[Running]:
    server, running = start()
    try:
        yield running
    finally:
        server.stop()
        running.app.close()
        running.http.close()


@pytest.fixture
def hs(hs_server: Running) -> Running:
    """The module's stand-in reset to the fixed population, rate limiting off (rate-limit and
    settings tests build their own)."""
    hs_server.state.reset()
    return hs_server


def assert_hubspot_error(resp: requests.Response, status: int, category: str) -> dict[str, Any]:
    """The response is HubSpot's error shape with this status and category."""
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = json.loads(resp.text)
    assert body["status"] == "error"
    assert isinstance(body["message"], str) and body["message"]
    assert body["category"] == category
    uuid.UUID(body["correlationId"])
    return body  # type: ignore[no-any-return]


def sdk_error_body(exc: Any) -> dict[str, Any]:
    body = exc.body if isinstance(exc.body, str) else exc.body.decode()
    return json.loads(body)  # type: ignore[no-any-return]
