"""Request bodies -> verified, validated inbox items (pure: no store access).

Each function raises, before anything is stored:

* :class:`~connectors.hubspot.signature.InvalidSignature` /
  :class:`~connectors.klaviyo.signature.InvalidSignature` -> 401 (bad, missing, stale or
  future-dated signature, webhook id mismatch);
* :class:`~mapping.errors.InputError` (``MalformedPayload``, :class:`EventsInvalid`) -> 400.

``POST /events`` body (documented in ``docs/realtime.md``)::

    {"events": [{"type": "order_placed", "email": "ann@example.com", "external_id": "c-17",
                 "ts": "2024-06-01T10:00:00Z", "value": 59.9, "id": "ord-1001",
                 "properties": {"product": "boots"}}]}

``type`` is a declared event type; ``email`` and/or ``external_id`` name the contact; ``ts``
is ISO-8601 with an offset or epoch milliseconds (default: when received; at most 5 minutes
ahead); ``value`` a number; ``properties`` an object whose declared properties must have
their declared type; ``id`` the client's event id (dedupe key; default: a hash of the
content). A bare JSON array of events is accepted too. Up to :data:`MAX_EVENTS` per request.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from typing import Any

from connectors.hubspot import signature as hs_signature
from connectors.hubspot.webhook_payload import parse_batch
from connectors.klaviyo import signature as kl_signature
from connectors.klaviyo.webhook_payload import parse as parse_klaviyo
from mapping.errors import InputError
from mapping.project import Project
from mapping.rules.source import did_you_mean
from sync.import_values import parse_instant, typed_value
from sync.service.inbox import NewItem
from sync.store import repo

__all__ = ["MAX_EVENTS", "EventsInvalid", "api_items", "hubspot_items", "klaviyo_items"]

MAX_EVENTS = 1000
FUTURE_LIMIT_MS = 5 * 60 * 1000
_KEYS = ("id", "type", "email", "external_id", "ts", "value", "properties")
# HubSpot subscriptions the worker acts on (association changes are not contact data)
_HUBSPOT_KINDS = frozenset({"contact.creation", "contact.propertyChange", "contact.deletion",
                            "contact.merge", "contact.restore", "contact.privacyDeletion"})


def _key(text: str) -> str:
    """A dedupe key that fits the inbox column: the text, or its sha256 when longer."""
    return text if len(text) <= 64 else hashlib.sha256(text.encode()).hexdigest()


class EventsInvalid(InputError):
    """Some events of a ``POST /events`` batch are invalid; nothing of the batch was stored."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{first['where']}: {first['message']}{more}")


def hubspot_items(headers: Mapping[str, str], method: str, uri: str, body: bytes, secret: str,
                  now_ms: int, *, legacy_versions: Collection[str] = (),
                  max_age_ms: int = hs_signature.MAX_AGE_MS,
                  max_skew_ms: int = hs_signature.MAX_FUTURE_SKEW_MS) -> list[NewItem]:
    hs_signature.verify(headers, method, uri, body, secret, now_ms, legacy_versions=legacy_versions,
                        max_age_ms=max_age_ms, max_skew_ms=max_skew_ms)
    return [NewItem("hubspot", ev.dedupe_key(), ev.subscription_type, f"hubspot:{ev.object_id}",
                    dict(ev.raw))
            for ev in parse_batch(body) if ev.subscription_type in _HUBSPOT_KINDS]


def klaviyo_items(headers: Mapping[str, str], body: bytes, secret: str, now_ms: int,
                  *, window_ms: int = kl_signature.WINDOW_MS) -> list[NewItem]:
    kl_signature.verify(headers, body, secret, now_ms, window_ms=window_ms)
    hook = parse_klaviyo(body)
    return [NewItem("klaviyo", _key(item.external_id), item.topic,
                    f"klaviyo:{item.event.contact.provider_id}", dict(item.raw))
            for item in hook.items]


class _Checker:
    def __init__(self, project: Project, now_ms: int) -> None:
        self.project = project
        self.now_ms = now_ms
        self.errors: list[dict[str, Any]] = []

    def fail(self, index: int, field: str | None, message: str) -> None:
        where = f"events[{index}]" + (f".{field}" if field else "")
        self.errors.append({"index": index, "field": field, "where": where, "message": message})

    def text(self, n: int, raw: Mapping[str, Any], key: str, limit: int) -> str | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            self.fail(n, key, f"must be a non-empty string of at most {limit} characters")
            return None
        return value.strip()

    def instant(self, n: int, value: object) -> int | None:
        if value is None:
            return self.now_ms
        if isinstance(value, int) and not isinstance(value, bool):
            ts: int = value
        elif isinstance(value, str):
            try:
                ts = parse_instant(value)
            except ValueError as e:
                self.fail(n, "ts", str(e))
                return None
        else:
            self.fail(n, "ts", "must be an ISO-8601 date-time with an offset or epoch milliseconds")
            return None
        if ts - self.now_ms > FUTURE_LIMIT_MS:
            self.fail(n, "ts", "is more than 5 minutes in the future")
            return None
        return ts

    def properties(self, n: int, event_type: str, value: object) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(n, "properties", "must be an object")
            return {}
        declared = self.project.events.get(event_type, {})
        out: dict[str, Any] = {}
        for name, raw in value.items():
            if raw is None:
                continue
            if name not in declared:
                out[name] = raw
                continue
            try:
                out[name] = typed_value(raw, declared[name])
            except ValueError as e:
                self.fail(n, f"properties.{name}", str(e))
        return out

    def event(self, n: int, raw: object) -> dict[str, Any] | None:
        if not isinstance(raw, dict):
            self.fail(n, None, "must be an object")
            return None
        errors = len(self.errors)
        for key in raw:
            if key not in _KEYS:
                hint = did_you_mean(str(key), _KEYS)
                self.fail(n, str(key), "unknown key" + (f" ({hint})" if hint else ""))
        event_type = raw.get("type")
        if not isinstance(event_type, str) or event_type not in self.project.events:
            hint = did_you_mean(str(event_type), self.project.events) if isinstance(event_type, str) else None
            declared = ", ".join(sorted(self.project.events)) or "none"
            self.fail(n, "type", f"{event_type!r} is not a declared event type "
                      + (f"({hint})" if hint else f"(declared: {declared})"))
            event_type = None
        email = self.text(n, raw, "email", 320)
        if email is not None:
            try:
                email = repo.normalise_email(email)
            except ValueError as e:
                self.fail(n, "email", str(e))
        ext = self.text(n, raw, "external_id", 255)
        event_id = self.text(n, raw, "id", 200)
        if email is None and ext is None and "email" not in raw and "external_id" not in raw:
            self.fail(n, None, "needs an email or an external_id")
        ts = self.instant(n, raw.get("ts"))
        value = raw.get("value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            self.fail(n, "value", "must be a number")
        props = self.properties(n, event_type, raw.get("properties")) if event_type else {}
        if len(self.errors) > errors or event_type is None or ts is None:
            return None
        number = None if value is None else float(value)
        if event_id is None:
            event_id = repo.event_content_hash(f"{email or ''}|{ext or ''}", event_type, ts, number,
                                               repo.canonical_json(props))
        else:
            event_id = "id:" + event_id
        return {"type": event_type, "email": email, "external_id": ext, "ts": ts, "value": number,
                "properties": props, "event_id": event_id}


def api_items(body: bytes, project: Project, now_ms: int) -> list[NewItem]:
    """The events of a ``POST /events`` body; :class:`EventsInvalid` lists every problem."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"the body is not JSON: {e}") from None
    events = doc.get("events") if isinstance(doc, dict) else doc
    if not isinstance(events, list):
        raise InputError('expected {"events": [...]} (or a JSON array of events)')
    if not events:
        raise InputError("no events in the request")
    if len(events) > MAX_EVENTS:
        raise InputError(f"{len(events)} events in one request (at most {MAX_EVENTS})")
    check = _Checker(project, now_ms)
    items = []
    for n, raw in enumerate(events):
        item = check.event(n, raw)
        if item is not None:
            key = item["email"] or f"ext:{item['external_id']}"
            items.append(NewItem("api", _key(item["event_id"]), item["type"], key, item))
    if check.errors:
        raise EventsInvalid(check.errors)
    return items
