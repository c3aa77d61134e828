"""Klaviyo-signed event webhooks out of the stand-in: the API_FACTS vector, and live activity
delivered to a loopback receiver whose signatures verify."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from connectors.sandbox.klaviyo import KlaviyoSettings, KlaviyoState, build_app
from connectors.sandbox.klaviyo.webhooks import sign
from connectors.sandbox.server import SandboxServer
from tests.test_sandbox_klaviyo_support import validate

VECTOR_BODY = (
    b'{"data":[{"topic":"event:klaviyo.opened_email","external_id":"evt_1","payload":{}}],'
    b'"meta":{"klaviyo_account_id":"ABC123","klaviyo_webhook_id":"01HX",'
    b'"timestamp":"2024-06-28T12:00:00+00:00"}}'
)


def test_signature_matches_the_api_facts_vector() -> None:
    got = sign("0123456789abcdef0123", VECTOR_BODY, "2024-06-28T12:00:00+00:00")
    assert got == "f0923d2b45eecc044092e17dd590facf1de54e2d09a8294ca13d755b0ab84c23"


class Receiver(ThreadingHTTPServer):
    def __init__(self, fail_first: int) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        self.event = threading.Event()
        super().__init__(("127.0.0.1", 0), _Hook)


class _Hook(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
        status = 500 if len(self.server.got) <= self.server.fail_first else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    srv = Receiver(getattr(request, "param", 0))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("receiver", [0, 1], indirect=True, ids=["first-try", "retried-after-500"])
def test_live_activity_is_delivered_signed(receiver: Receiver) -> None:
    host, port = receiver.server_address[:2]
    settings = KlaviyoSettings(
        webhook_url=f"http://{host!s}:{port}/hook",
        webhook_secret="s3cret",
        rate_limits=False,
        webhook_backoff_s=0.01,
    )
    state = KlaviyoState(settings)
    with state.lock:
        p = state.create_profile({"email": "w@example.com"})
    app = build_app(state, settings)
    with SandboxServer(app) as srv:
        r = requests.post(
            f"{srv.url}/_sandbox/klaviyo/activity",
            json={"events": 4, "metrics": ["Opened Email", "Placed Order"], "seed": 3},
            timeout=5,
        )
        assert r.status_code == 201
        sent = [e for e in r.json()["events"] if e["metric"] == "Opened Email"]
        assert app.webhooks is not None and app.webhooks.drain(5)
    delivered = receiver.got[receiver.fail_first :]
    items = [item for _, body in delivered for item in json.loads(body)["data"]]
    assert [i["external_id"] for i in items] == [e["id"] for e in sent]  # Placed Order has no topic
    assert {i["topic"] for i in items} == {"event:klaviyo.opened_email"}
    for headers, body in receiver.got:
        ts = headers["klaviyo-timestamp"]
        expected = hmac.new(b"s3cret", body + ts.encode(), hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["klaviyo-signature"], expected)
        meta = json.loads(body)["meta"]
        assert meta["klaviyo_webhook_id"] == headers["klaviyo-webhook-id"] == settings.webhook_id
        assert meta["timestamp"] == ts
    for item in items:
        validate("get_event", 200, item["payload"])
        assert item["payload"]["data"]["relationships"]["profile"]["data"]["id"] == p.id
