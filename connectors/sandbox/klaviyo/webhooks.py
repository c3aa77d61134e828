"""Klaviyo-signed event webhooks out (system webhooks, developers.klaviyo.com
"working_with_system_webhooks"; see QUIRKS.md for what is verified).

Every stored event whose metric maps to a topic is queued; a daemon thread POSTs batches to
``settings.webhook_url`` with body ``{"data": [{"external_id", "payload", "topic"}], "meta":
{"klaviyo_account_id", "klaviyo_webhook_id", "timestamp"}}`` (``payload`` = the event as
``GET /api/events/{id}`` returns it) and headers ``Klaviyo-Webhook-Id``, ``Klaviyo-Timestamp``
and ``Klaviyo-Signature`` = lowercase hex HMAC-SHA256(secret, raw body + timestamp).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from connectors.sandbox.server import Request

if TYPE_CHECKING:
    from connectors.sandbox.klaviyo.app import KlaviyoApp
    from connectors.sandbox.klaviyo.state import KlaviyoState

TOPICS = {
    "Received Email": "event:klaviyo.received_email",
    "Opened Email": "event:klaviyo.opened_email",
    "Clicked Email": "event:klaviyo.clicked_email",
    "Bounced Email": "event:klaviyo.bounced_email",
    "Unsubscribed": "event:klaviyo.unsubscribed_from_email",
    "Marked Email as Spam": "event:klaviyo.marked_email_as_spam",
}
BATCH = 100


def sign(secret: str, body: bytes, timestamp: str) -> str:
    """``Klaviyo-Signature``: hex HMAC-SHA256 keyed by the webhook secret over body + timestamp."""
    return hmac.new(secret.encode(), body + timestamp.encode(), hashlib.sha256).hexdigest()


@dataclass
class Delivery:
    at: float
    events: int
    attempts: int
    status: int  # last HTTP status, 0 = connection error


class WebhookSender:
    def __init__(self, app: KlaviyoApp) -> None:
        self.app = app
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self.deliveries: deque[Delivery] = deque(maxlen=10_000)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def on_event(self, eid: str, state: KlaviyoState, pos: int) -> None:
        settings = self.app.settings
        if not settings.webhook_url:
            return
        name = state.metrics[state.metric_by_index[state.events.metric[pos]]].name
        topic = TOPICS.get(name)
        if topic is None or (settings.webhook_topics is not None and topic not in settings.webhook_topics):
            return
        from connectors.sandbox.klaviyo.events import event_resource

        fake = Request("GET", f"/api/events/{eid}", f"/api/events/{eid}", {}, {"host": "127.0.0.1"}, b"")
        self.queue.put(
            {"external_id": eid, "payload": {"data": event_resource(fake, state, pos)}, "topic": topic}
        )
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="klaviyo-webhooks", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                first = self.queue.get(timeout=5)
            except queue.Empty:
                return
            batch = [first]
            while len(batch) < BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self.deliver(batch)
            finally:
                for _ in batch:
                    self.queue.task_done()

    def deliver(self, items: list[dict[str, Any]]) -> Delivery:
        s = self.app.settings
        delivery = Delivery(time.time(), len(items), 0, 0)
        for attempt in range(1, max(s.webhook_max_attempts, 1) + 1):
            timestamp = datetime.now(UTC).replace(microsecond=0).isoformat()
            body = json.dumps(
                {
                    "data": items,
                    "meta": {
                        "klaviyo_account_id": s.account_id,
                        "klaviyo_webhook_id": s.webhook_id,
                        "timestamp": timestamp,
                    },
                }
            ).encode()
            headers = {
                "Content-Type": "application/json",
                "Klaviyo-Webhook-Id": s.webhook_id,
                "Klaviyo-Timestamp": timestamp,
                "Klaviyo-Signature": sign(s.webhook_secret, body, timestamp),
            }
            delivery.attempts = attempt
            try:
                url = s.webhook_url or ""
                if not url.startswith(("http://", "https://")):
                    break
                with urllib.request.urlopen(
                    urllib.request.Request(url, body, headers, method="POST"), timeout=10
                ) as resp:
                    delivery.status = resp.status
            except urllib.error.HTTPError as e:
                delivery.status = e.code
            except (urllib.error.URLError, OSError):
                delivery.status = 0
            if 200 <= delivery.status < 300:
                break
            time.sleep(s.webhook_backoff_s * 2 ** (attempt - 1))
        self.deliveries.append(delivery)
        return delivery

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until every queued event was delivered (or given up); for tests and the CLI."""
        end = time.monotonic() + timeout
        while self.queue.unfinished_tasks:
            if time.monotonic() > end:
                return False
            time.sleep(0.01)
        return True


def attach(app: KlaviyoApp) -> WebhookSender:
    sender = WebhookSender(app)
    app.webhooks = sender
    app.state.listeners.append(sender.on_event)
    return sender
