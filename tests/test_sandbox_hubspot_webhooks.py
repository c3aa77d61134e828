"""Webhooks out of the HubSpot stand-in: signature helpers against the API_FACTS test vectors, and
signed, batched, retried deliveries to a loopback receiver (verified with the SDK's helper)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hubspot.utils.signature import Signature

from connectors.sandbox.hubspot import HubSpotSettings, WebhookSettings
from connectors.sandbox.hubspot.webhooks import signature_v1, signature_v2, signature_v3
from tests.sandbox_hubspot_support import Running, start

SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
V1_BODY = (
    '[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":'
    '"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW","appId":54321}]'
)
URI = "https://www.example.com/webhook_uri"


def test_signature_vectors_from_api_facts() -> None:
    assert signature_v1(SECRET, V1_BODY) == "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
    assert (
        signature_v2(SECRET, "GET", URI) == "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
    )
    assert signature_v2(SECRET, "POST", URI, '{"example_field":"example_value"}') == (
        "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900"
    )
    assert (
        signature_v3(SECRET, "POST", URI, V1_BODY, 1564113600000)
        == "DxmVAjFNa2xfF3YgQjdZP6TNcok9k1oaH7UXombPtvw="
    )


class Receiver:
    """A loopback webhook endpoint answering with a scripted status sequence (then 200)."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({k: v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/hubspot"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict[str, Any]]:
        return [e for _, body in self.requests for e in json.loads(body)]


@pytest.fixture
def wired(request: pytest.FixtureRequest) -> Iterator[tuple[Running, Receiver]]:
    receiver = Receiver(getattr(request, "param", []))
    hooks = WebhookSettings(
        url=receiver.url,
        client_secret="s3cret",
        max_batch=100,
        linger_s=0.05,
        retry_base_s=0.01,
        max_attempts=3,
    )
    server, running = start(HubSpotSettings(webhooks=hooks))
    try:
        yield running, receiver
    finally:
        server.stop()
        running.app.close()
        running.http.close()
        receiver.server.shutdown()
        receiver.server.server_close()


def test_changes_are_batched_signed_and_shaped(wired: tuple[Running, Receiver]) -> None:
    hs, receiver = wired
    inputs = [{"id": str(i), "properties": {"city": "Rome", "firstname": f"N{i}"}} for i in range(1, 31)]
    assert hs.post("/crm/v3/objects/contacts/batch/update", {"inputs": inputs}).status_code == 200
    hs.post("/crm/v3/objects/contacts", {"properties": {"email": "new@example.com"}})
    hs.call("DELETE", "/crm/v3/objects/contacts/2")
    hs.post("/crm/v3/objects/contacts/merge", {"primaryObjectId": "3", "objectIdToMerge": "4"})
    hs.post("/crm/v3/objects/contacts/gdpr-delete", {"objectId": "5"})
    assert hs.app.webhooks.wait_idle(5)
    events = receiver.events()
    kinds = [e["subscriptionType"] for e in events]
    # 30 inputs x 2 changed properties, and the merge sets hs_merged_object_ids on the survivor
    # (3 and 4 hold the same properties, so nothing else moves)
    assert kinds.count("contact.propertyChange") == 60 + 1
    merged_ids = [e for e in events if e.get("propertyName") == "hs_merged_object_ids"]
    assert [(e["objectId"], e["propertyValue"]) for e in merged_ids] == [(3, "4")]
    assert {"contact.creation", "contact.deletion", "contact.merge", "contact.privacyDeletion"} <= set(kinds)
    assert all(len(json.loads(body)) <= 100 for _, body in receiver.requests)
    change = next(
        e
        for e in events
        if e["subscriptionType"] == "contact.propertyChange"
        and e["objectId"] == 1
        and e["propertyName"] == "city"
    )
    assert change["propertyValue"] == "Rome" and change["attemptNumber"] == 0
    assert {"eventId", "subscriptionId", "portalId", "appId", "occurredAt", "changeSource"} <= set(change)
    merge = next(e for e in events if e["subscriptionType"] == "contact.merge")
    assert merge["primaryObjectId"] == 3 and merge["mergedObjectIds"] == [4]
    for headers, body in receiver.requests:
        ts = headers["X-HubSpot-Request-Timestamp"]
        assert Signature.is_valid(
            signature=headers["X-HubSpot-Signature-v3"],
            client_secret="s3cret",
            request_body=body.decode(),
            http_uri=receiver.url,
            http_method="POST",
            signature_version="v3",
            timestamp=ts,
        )
        assert headers["X-HubSpot-Signature"] == signature_v1("s3cret", body)


@pytest.mark.parametrize("wired", [[500, 503]], indirect=True)
def test_failed_delivery_is_retried_and_resigned(wired: tuple[Running, Receiver]) -> None:
    hs, receiver = wired
    hs.call("PATCH", "/crm/v3/objects/contacts/1", {"properties": {"city": "Rome"}})
    assert hs.app.webhooks.wait_idle(5)
    attempts = [json.loads(body)[0]["attemptNumber"] for _, body in receiver.requests]
    assert attempts == [0, 1, 2]
    assert hs.app.webhooks.stats()["delivered_batches"] == 1


@pytest.mark.parametrize("wired", [[400, 500, 500, 500]], indirect=True)
def test_4xx_is_not_retried_and_attempts_are_bounded(wired: tuple[Running, Receiver]) -> None:
    hs, receiver = wired
    hs.call("PATCH", "/crm/v3/objects/contacts/1", {"properties": {"city": "Rome"}})
    assert hs.app.webhooks.wait_idle(5)
    assert len(receiver.requests) == 1
    hs.call("PATCH", "/crm/v3/objects/contacts/1", {"properties": {"city": "Oslo"}})
    assert hs.app.webhooks.wait_idle(5)
    assert len(receiver.requests) == 1 + 3  # max_attempts = 3, all 500
    assert hs.app.webhooks.stats()["failed_batches"] == 2


def test_live_activity_fires_webhooks(wired: tuple[Running, Receiver]) -> None:
    hs, receiver = wired
    resp = hs.post("/_sandbox/hubspot/activity", {"count": 9, "seed": 7})
    assert resp.status_code == 200 and resp.json()["generated"] == 9
    assert hs.app.webhooks.wait_idle(5)
    kinds = {e["subscriptionType"] for e in receiver.events()}
    assert {"contact.creation", "contact.propertyChange"} <= kinds
