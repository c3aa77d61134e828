"""Klaviyo system-webhook bodies -> typed records (pure, no I/O).

Body (``API_FACTS.md`` Klaviyo §6)::

    {"data": [{"external_id": "<event id>", "topic": "event:klaviyo.opened_email",
               "payload": {"data": <the event as GET /api/events/{id} returns it>, ...}}],
     "meta": {"klaviyo_account_id": "...", "klaviyo_webhook_id": "...", "timestamp": "..."}}

Each item becomes an :class:`~connectors.records.Event` whose ``type`` is the Klaviyo metric
name of its topic (``event:klaviyo.opened_email`` -> ``Opened Email``), the name a pull would
give it, so ``[events.T] aliases.klaviyo`` map both the same way. ``external_id`` (the event
id) identifies a delivery: a retried delivery carries the same ids.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.errors import MalformedResponse
from connectors.klaviyo.convert import emails_of, event_of
from connectors.records import Event
from mapping.errors import InputError

__all__ = ["MAX_ITEMS", "KlaviyoWebhook", "KlaviyoWebhookItem", "MalformedPayload", "metric_name",
           "parse"]

MAX_ITEMS = 1000
# topics whose metric name is not the title-cased topic
_METRICS = {
    "event:klaviyo.unsubscribed_from_email": "Unsubscribed",
    "event:klaviyo.marked_email_as_spam": "Marked Email as Spam",
    "event:klaviyo.unsubscribed_from_sms": "Unsubscribed from SMS",
    "event:klaviyo.received_sms": "Received SMS",
    "event:klaviyo.clicked_sms": "Clicked SMS",
    "event:klaviyo.sent_sms": "Sent SMS",
}
_LOWER = {"as", "from", "to", "of", "on", "in"}


class MalformedPayload(InputError):
    """The body is not a Klaviyo webhook (the message says where and why)."""


def metric_name(topic: str) -> str:
    """``event:klaviyo.opened_email`` -> ``Opened Email``."""
    if topic in _METRICS:
        return _METRICS[topic]
    words = topic.split(".", 1)[-1].split("_")
    return " ".join(w if i and w in _LOWER else w.capitalize() for i, w in enumerate(words))


@dataclass(frozen=True, slots=True)
class KlaviyoWebhookItem:
    external_id: str
    topic: str
    event: Event  # type = the metric name
    raw: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class KlaviyoWebhook:
    account_id: str | None
    webhook_id: str
    items: tuple[KlaviyoWebhookItem, ...]


def item_event(raw: Mapping[str, Any], where: str = "item") -> Event:
    """The event an item carries; raises :class:`MalformedPayload`."""
    topic = raw.get("topic")
    payload = raw.get("payload")
    if not isinstance(topic, str) or not topic.startswith("event:"):
        raise MalformedPayload(f"{where}: topic must be an event topic like 'event:klaviyo.opened_email'")
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        raise MalformedPayload(f"{where}: payload.data must be the event resource")
    resource = payload["data"]
    if not isinstance(resource.get("attributes"), dict) or not isinstance(resource.get("id"), str):
        raise MalformedPayload(f"{where}: payload.data needs an id and attributes")
    try:
        return event_of(resource, metric_name(topic), emails_of(payload.get("included")), "webhook")
    except (MalformedResponse, ValueError, TypeError) as e:
        reason = str(e).split("malformed response: ", 1)[-1]
        raise MalformedPayload(f"{where}: {reason}") from None


def _item(raw: object, n: int) -> KlaviyoWebhookItem:
    where = f"data[{n}]"
    if not isinstance(raw, dict):
        raise MalformedPayload(f"{where}: expected a JSON object")
    external_id = raw.get("external_id")
    if not isinstance(external_id, str) or not external_id.strip():
        raise MalformedPayload(f"{where}: external_id is missing")
    return KlaviyoWebhookItem(external_id.strip(), str(raw.get("topic")), item_event(raw, where), raw)


def parse(body: bytes, max_items: int = MAX_ITEMS) -> KlaviyoWebhook:
    """The webhook a body carries; raises :class:`MalformedPayload` for anything else."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MalformedPayload(f"the body is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise MalformedPayload("expected a JSON object with 'data' and 'meta'")
    meta, data = doc.get("meta"), doc.get("data")
    if not isinstance(meta, dict) or not isinstance(meta.get("klaviyo_webhook_id"), str):
        raise MalformedPayload("meta.klaviyo_webhook_id is missing")
    if not isinstance(data, list):
        raise MalformedPayload("data must be an array of items")
    if len(data) > max_items:
        raise MalformedPayload(f"{len(data)} items in one request (at most {max_items})")
    account = meta.get("klaviyo_account_id")
    return KlaviyoWebhook(account if isinstance(account, str) else None, meta["klaviyo_webhook_id"],
                          tuple(_item(raw, n) for n, raw in enumerate(data)))
