"""HubSpot webhook bodies -> typed records (pure, no I/O).

A body is a JSON array of at most :data:`MAX_EVENTS` events (even for one event). Fields per
event (``API_FACTS.md`` HubSpot §7): ``eventId, subscriptionId, portalId, appId, occurredAt``
(ms), ``subscriptionType, attemptNumber, objectId, changeSource, changeFlag``;
``contact.propertyChange`` adds ``propertyName`` / ``propertyValue``; ``contact.merge`` adds
``primaryObjectId``, ``mergedObjectIds`` and ``newObjectId``. Generic subscriptions
(``object.propertyChange`` with ``objectTypeId`` ``"0-1"``) are read as their ``contact.*``
equivalents.

``eventId`` "is not guaranteed to be unique", so a delivery is identified by
:meth:`HubSpotWebhookEvent.dedupe_key` = sha256 of (subscriptionType, objectId, occurredAt,
propertyName, propertyValue): a retried or duplicated delivery has the same key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mapping.errors import InputError

__all__ = ["CONTACT_TYPES", "MAX_EVENTS", "HubSpotWebhookEvent", "MalformedPayload", "parse_batch",
           "parse_event"]

MAX_EVENTS = 100
CONTACT_TYPES = frozenset({
    "contact.creation", "contact.propertyChange", "contact.deletion", "contact.merge",
    "contact.restore", "contact.privacyDeletion", "contact.associationChange",
})
_CONTACT_OBJECT_TYPE = "0-1"


class MalformedPayload(InputError):
    """The body is not a HubSpot webhook batch (the message says where and why)."""


@dataclass(frozen=True, slots=True)
class HubSpotWebhookEvent:
    subscription_type: str  # contact.* for contacts (generic object.* subscriptions mapped)
    object_id: str
    occurred_at: int  # epoch ms UTC
    event_id: int | None = None
    property_name: str | None = None
    property_value: str | None = None
    primary_object_id: str | None = None
    merged_object_ids: tuple[str, ...] = ()
    new_object_id: str | None = None
    attempt_number: int = 0
    raw: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def is_contact(self) -> bool:
        return self.subscription_type in CONTACT_TYPES

    def dedupe_key(self) -> str:
        parts = [self.subscription_type, self.object_id, self.occurred_at, self.property_name,
                 self.property_value]
        return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()


def _id(value: object, where: str, name: str, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or str(value).strip() == "":
        raise MalformedPayload(f"{where}: {name} must be an id (a number or a string)")
    return str(value).strip()


def parse_event(raw: object, n: int = 0) -> HubSpotWebhookEvent:
    """One event of a batch (``n``: its index, for messages)."""
    where = f"event {n}"
    if not isinstance(raw, dict):
        raise MalformedPayload(f"{where}: expected a JSON object, got {type(raw).__name__}")
    kind = raw.get("subscriptionType")
    if not isinstance(kind, str) or not kind:
        raise MalformedPayload(f"{where}: subscriptionType is missing")
    if kind.startswith("object.") and str(raw.get("objectTypeId", "")) == _CONTACT_OBJECT_TYPE:
        kind = "contact." + kind.removeprefix("object.")
    occurred = raw.get("occurredAt")
    if isinstance(occurred, bool) or not isinstance(occurred, int) or occurred < 0:
        raise MalformedPayload(f"{where}: occurredAt must be epoch milliseconds")
    object_id = _id(raw.get("objectId"), where, "objectId")
    assert object_id is not None
    prop = raw.get("propertyName")
    if prop is not None and not isinstance(prop, str):
        raise MalformedPayload(f"{where}: propertyName must be a string")
    if kind == "contact.propertyChange" and not prop:
        raise MalformedPayload(f"{where}: a propertyChange needs propertyName")
    value = raw.get("propertyValue")
    if value is not None and not isinstance(value, str | int | float | bool):
        raise MalformedPayload(f"{where}: propertyValue must be a string")
    merged = raw.get("mergedObjectIds") or []
    if not isinstance(merged, list):
        raise MalformedPayload(f"{where}: mergedObjectIds must be an array")
    event_id = raw.get("eventId")
    attempt = raw.get("attemptNumber", 0)
    return HubSpotWebhookEvent(
        subscription_type=kind,
        object_id=object_id,
        occurred_at=occurred,
        event_id=event_id if isinstance(event_id, int) and not isinstance(event_id, bool) else None,
        property_name=prop,
        property_value=None if value is None else str(value),
        primary_object_id=_id(raw.get("primaryObjectId"), where, "primaryObjectId", required=False),
        merged_object_ids=tuple(str(_id(m, where, "mergedObjectIds[]")) for m in merged),
        new_object_id=_id(raw.get("newObjectId"), where, "newObjectId", required=False),
        attempt_number=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else 0,
        raw=raw,
    )


def parse_batch(body: bytes, max_events: int = MAX_EVENTS) -> list[HubSpotWebhookEvent]:
    """The events of a webhook body; raises :class:`MalformedPayload` for anything else."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MalformedPayload(f"the body is not JSON: {e}") from None
    if not isinstance(doc, list):
        raise MalformedPayload(f"expected a JSON array of events, got {type(doc).__name__}")
    if not doc:
        raise MalformedPayload("the batch is empty")
    if len(doc) > max_events:
        raise MalformedPayload(f"{len(doc)} events in one request (at most {max_events})")
    return [parse_event(raw, n) for n, raw in enumerate(doc)]
