"""Webhooks out: HubSpot-signed change notifications, batched and retried like HubSpot does.

A :class:`WebhookSender` is a state listener. It batches :class:`Change` records (up to
``max_batch`` = 100 per request, waiting ``linger_s`` to fill a batch), POSTs each batch as a
JSON array to ``settings.url`` signed with v3 (``X-HubSpot-Signature-v3`` =
base64(HMAC-SHA256(secret, method + uri + body + timestamp)), ``X-HubSpot-Request-Timestamp`` in
epoch ms) and, for legacy receivers, v1 (``X-HubSpot-Signature`` + ``-Version: v1``). A failed
delivery (connection error, timeout, any status but 2xx and 400/401/403/404/405) is retried up to
``max_attempts`` with short exponential delays; ``attemptNumber`` counts from 0 and the body is
re-signed on each attempt. One thread sends; retries wait in a heap so they never block new
batches.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import http.client
import itertools
import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .settings import WebhookSettings
from .state import Change

log = logging.getLogger(__name__)

_NOTHING = Change("none", 0, 0)  # "the queue was empty" (None is the stop signal)
NO_RETRY = frozenset({400, 401, 403, 404, 405})
SUBSCRIPTION_IDS = {
    "contact.creation": 1001,
    "contact.propertyChange": 1002,
    "contact.deletion": 1003,
    "contact.merge": 1004,
    "contact.privacyDeletion": 1005,
    "contact.restore": 1006,
}
CHANGE_FLAGS = {
    "contact.creation": "NEW",
    "contact.deletion": "DELETED",
    "contact.merge": "MERGED",
    "contact.privacyDeletion": "PRIVACY_DELETED",
}


def signature_v3(secret: str, method: str, uri: str, body: bytes | str, timestamp_ms: int | str) -> str:
    raw = body.decode() if isinstance(body, bytes) else body
    message = f"{method}{uri}{raw}{timestamp_ms}".encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def signature_v2(secret: str, method: str, uri: str, body: bytes | str = b"") -> str:
    raw = body.decode() if isinstance(body, bytes) else body
    return hashlib.sha256(f"{secret}{method}{uri}{raw}".encode()).hexdigest()


def signature_v1(secret: str, body: bytes | str) -> str:
    raw = body.decode() if isinstance(body, bytes) else body
    return hashlib.sha256(f"{secret}{raw}".encode()).hexdigest()


Poster = Callable[[str, bytes, dict[str, str], float], int]


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST (header names kept exactly as given) and return the status; raises OSError on
    connection failures and timeouts."""
    parts = urlsplit(url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        conn.request("POST", target, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return int(resp.status)
    except http.client.HTTPException as e:
        raise OSError(str(e)) from e
    finally:
        conn.close()


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    events: list[dict[str, Any]] = field(compare=False)
    attempt: int = field(default=0, compare=False)


@dataclass
class DeliveryRecord:
    at: float
    events: int
    attempt: int
    status: int  # 0 = connection failure / timeout
    signature_v3: str


class WebhookSender:
    def __init__(
        self,
        settings: WebhookSettings,
        post: Poster = http_post,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ):
        self.settings = settings
        self.post = post
        self.clock_ms = clock_ms
        self._queue: queue.Queue[Change | None] = queue.Queue()
        self._retries: list[_Delivery] = []
        self._seq = itertools.count()
        self._event_ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0  # changes queued or batches in flight/awaiting retry
        self.delivered = 0
        self.failed = 0
        self.attempts = 0
        self.recent: deque[DeliveryRecord] = deque(maxlen=200)

    # ---- listener side ---------------------------------------------------------------------

    def notify(self, change: Change) -> None:
        s = self.settings
        if s.url is None:
            return
        if (
            change.kind == "contact.propertyChange"
            and s.properties is not None
            and change.property_name not in s.properties
        ):
            return
        with self._lock:
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="sandbox-hubspot-webhooks", daemon=True
                )
                self._thread.start()
        self._queue.put(change)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued change was delivered or given up on (for tests/launcher)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def stop(self) -> None:
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=5)
            self._thread = None

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "url": self.settings.url,
                "pending": self._pending,
                "delivered_batches": self.delivered,
                "failed_batches": self.failed,
                "attempts": self.attempts,
                "recent": [vars(r) for r in list(self.recent)[-20:]],
            }

    # ---- sender thread ---------------------------------------------------------------------

    def _payload(self, change: Change) -> dict[str, Any]:
        s = self.settings
        out: dict[str, Any] = {
            "eventId": next(self._event_ids),
            "subscriptionId": SUBSCRIPTION_IDS.get(change.kind, 1000),
            "portalId": s.portal_id,
            "appId": s.app_id,
            "occurredAt": change.occurred_ms,
            "subscriptionType": change.kind,
            "attemptNumber": 0,
            "objectId": change.object_id,
            "changeSource": change.source,
        }
        flag = CHANGE_FLAGS.get(change.kind)
        if flag:
            out["changeFlag"] = flag
        if change.property_name is not None:
            out["propertyName"] = change.property_name
            out["propertyValue"] = change.property_value or ""
            out["sourceId"] = "sandbox"
        if change.extra:
            out.update(change.extra)
        return out

    def _run(self) -> None:
        while True:
            timeout = self.settings.linger_s
            if self._retries:
                timeout = max(0.0, min(timeout, self._retries[0].due - time.monotonic()))
            try:
                first: Change | None = (
                    self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
                )
            except queue.Empty:
                first = _NOTHING
            if first is None:
                return
            if first is not _NOTHING:
                batch = [self._payload(first)]
                deadline = time.monotonic() + self.settings.linger_s
                while len(batch) < self.settings.max_batch:
                    left = deadline - time.monotonic()
                    try:
                        nxt = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        self._queue.put(None)
                        break
                    batch.append(self._payload(nxt))
                self._send(_Delivery(time.monotonic(), next(self._seq), batch), fresh=len(batch))
            while self._retries and self._retries[0].due <= time.monotonic():
                self._send(heapq.heappop(self._retries), fresh=0)

    def _send(self, d: _Delivery, fresh: int) -> None:
        s = self.settings
        with self._lock:
            # count a batch as one pending unit from now on
            self._pending -= fresh - (1 if fresh else 0)
        url = s.url
        for e in d.events:
            e["attemptNumber"] = d.attempt
        body = json.dumps(d.events, separators=(",", ":")).encode()
        ts = self.clock_ms()
        sig = signature_v3(s.client_secret, "POST", url or "", body, ts)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/) - sandbox",
            "X-HubSpot-Signature-v3": sig,
            "X-HubSpot-Request-Timestamp": str(ts),
            "X-HubSpot-Signature": signature_v1(s.client_secret, body),
            "X-HubSpot-Signature-Version": "v1",
        }
        status = 0
        if url is not None:
            try:
                status = self.post(url, body, headers, s.timeout_s)
            except OSError as e:
                log.info("sandbox webhook delivery to %s failed: %s", url, e)
        ok = 200 <= status < 300
        retry = not ok and status not in NO_RETRY and d.attempt + 1 < s.max_attempts and url is not None
        with self._lock:
            self.attempts += 1
            self.recent.append(DeliveryRecord(time.time(), len(d.events), d.attempt, status, sig))
            if ok:
                self.delivered += 1
            elif not retry:
                self.failed += 1
            if retry:
                d.attempt += 1
                d.due = time.monotonic() + min(s.retry_max_s, s.retry_base_s * 2 ** (d.attempt - 1))
                heapq.heappush(self._retries, d)
            else:
                self._pending -= 1
                self._idle.notify_all()
