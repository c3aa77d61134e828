"""Klaviyo resources -> segsync records (`Contact`, `Event`). Pure.

A profile becomes a `Contact` whose ``properties`` are flat:

- the standard fields that are set (``first_name``, ``last_name``, ``phone_number``,
  ``organization``, ``title``, ``locale``, ``image``),
- the ``location`` fields that are set, under their own names (``city``, ``country``, ...),
- ``created`` (epoch ms),
- then the custom ``properties``; a custom property named like a standard field above is
  shadowed by it (Klaviyo's own fields win).

An event becomes an `Event` of the segsync event type its metric is mapped to; its time is
``attributes.datetime`` (ms precision; ``timestamp`` is whole seconds), its value
``event_properties["$value"]`` when that is a number, its properties ``event_properties``
as they are. The profile's email comes from ``include=profile``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.klaviyo.wire import PROVIDER, malformed, parse_instant, string_field
from connectors.records import Contact, ContactRef, Event, JsonValue

__all__ = ["STANDARD_FIELDS", "contact_of", "emails_of", "event_of", "event_value", "events_of"]

STANDARD_FIELDS = ("first_name", "last_name", "phone_number", "organization", "title", "locale", "image")
IDENTIFIER_FIELDS = ("email", "external_id", "phone_number")


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def contact_of(item: Mapping[str, Any], what: str = "get_profiles") -> Contact:
    attrs: Mapping[str, Any] = item["attributes"]
    where = f"{what} profile {item['id']}"
    props: dict[str, JsonValue] = {}
    for name in STANDARD_FIELDS:
        value = attrs.get(name)
        if value not in (None, ""):
            props[name] = value
    location = attrs.get("location")
    if isinstance(location, Mapping):
        for name, value in location.items():
            if value not in (None, ""):
                props[str(name)] = value
    if attrs.get("created") is not None:
        props["created"] = parse_instant(attrs["created"], f"{where}: created")
    custom = attrs.get("properties")
    if isinstance(custom, Mapping):
        for name, value in custom.items():
            props.setdefault(str(name), value)
    return Contact(
        provider=PROVIDER,
        provider_id=item["id"],
        email=_text(attrs.get("email")),
        external_id=_text(attrs.get("external_id")),
        properties=props,
        updated_at=parse_instant(attrs.get("updated"), f"{where}: updated"),
    )


def emails_of(included: object) -> dict[str, str]:
    """profile id -> email, from a compound document's ``included`` array."""
    out: dict[str, str] = {}
    if not isinstance(included, list):
        return out
    for res in included:
        if isinstance(res, Mapping) and res.get("type") == "profile" and isinstance(res.get("id"), str):
            email = _text((res.get("attributes") or {}).get("email"))
            if email:
                out[res["id"]] = email
    return out


def event_value(props: Mapping[str, Any]) -> float | None:
    raw = props.get("$value")
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            return None
    return None


def event_of(
    item: Mapping[str, Any], event_type: str, emails: Mapping[str, str], what: str = "get_events"
) -> Event:
    attrs: Mapping[str, Any] = item["attributes"]
    where = f"{what} event {item['id']}"
    profile_id = string_field(item, "relationships.profile.data.id", where)
    props = attrs.get("event_properties")
    if props is None:
        props = {}
    if not isinstance(props, Mapping):
        raise malformed(where, "'event_properties' is not an object")
    return Event(
        provider=PROVIDER,
        provider_event_id=item["id"],
        contact=ContactRef(provider_id=profile_id, email=emails.get(profile_id)),
        type=event_type,
        ts=parse_instant(attrs.get("datetime"), f"{where}: datetime"),
        value=event_value(props),
        properties=dict(props),
    )


def events_of(
    data: list[dict[str, Any]], event_type: str, emails: Mapping[str, str], what: str = "get_events"
) -> list[Event]:
    """`event_of` over a page's ``data`` (already checked by `wire.resources`), in one loop
    with the same checks and results; the common shapes take the short paths."""
    out: list[Event] = []
    for item in data:
        attrs: Mapping[str, Any] = item["attributes"]
        try:
            profile_id = item["relationships"]["profile"]["data"]["id"]
        except (KeyError, TypeError):
            profile_id = None
        props = attrs.get("event_properties")
        if type(profile_id) is not str or not profile_id or not (props is None or type(props) is dict):
            out.append(event_of(item, event_type, emails, what))  # the slow path names the problem
            continue
        out.append(
            Event(
                provider=PROVIDER,
                provider_event_id=item["id"],
                contact=ContactRef(provider_id=profile_id, email=emails.get(profile_id)),
                type=event_type,
                ts=parse_instant(attrs.get("datetime"), f"{what} event {item['id']}: datetime"),
                value=event_value(props) if props else None,
                properties=props or {},
            )
        )
    return out
