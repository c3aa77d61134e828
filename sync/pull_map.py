"""What a pulled record means in the project's terms: provider properties -> declared
attributes, provider event types -> declared event types, raw values -> stored forms. Pure.

Attribute map (per source, ``[sources.<provider>.attributes]``: attribute -> provider field):

* an attribute listed there reads that field and is *owned* by the source: a field the record
  carries empty (``null`` / ``""``) clears the attribute;
* every other declared attribute reads the field of its own name, if the record has it, and
  only ever sets (an empty field leaves the stored value alone: another source, or an import,
  may hold it);
* a value that does not fit the attribute's type is skipped (the stored value stays) and
  counted per attribute in the pull summary.

Klaviyo field names may be written ``properties.x`` or ``location.x``: the connector delivers
a profile's fields flat (``connectors.klaviyo.convert``), so the prefix is dropped.

Event types: a pulled event whose type is a declared event type keeps it; otherwise the
``[events.T] aliases`` of its provider map it (HubSpot email event types, Klaviyo metric
names); anything else is not declared and is skipped (counted per type).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.records import Contact, Event, JsonValue
from mapping.errors import ConfigError
from mapping.project import Project
from mapping.rules.ast import Type
from mapping.sources import attribute_map_problems
from sync.identity import PulledContact, normalised_email
from sync.import_values import number, parse_date, parse_instant

__all__ = ["MERGED_IDS_PROPERTY", "AttributeSpec", "SourceMap", "coerce"]

# HubSpot lists the ids merged into a contact in this property (";"-separated)
MERGED_IDS_PROPERTY = "hs_merged_object_ids"
DAY_MS = 86_400_000
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}
_DIGITS = re.compile(r"-?\d{9,}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _describe(value: object) -> str:
    return "a list" if isinstance(value, list) else "an object" if isinstance(value, dict) else (
        type(value).__name__)


def _instant(value: JsonValue) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a date or time, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("expected a date or time, got a non-finite number")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if _DIGITS.fullmatch(text):
            return int(text)
        if _DATE.fullmatch(text):
            return parse_date(text)
        return parse_instant(text)
    raise ValueError(f"expected a date or time, got {_describe(value)}")


def coerce(value: JsonValue, type_: Type, *, is_date: bool = False) -> Any:
    """``value`` as a provider delivered it -> its stored form for ``type_`` (None = empty).

    Providers disagree on shapes: HubSpot sends every property as a string (numbers, ``"true"``,
    ISO instants, ``"a;b"`` for multi-select), Klaviyo sends JSON values. Both are accepted.
    Raises ValueError (the reason, without the value) when it does not fit.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if type_ is Type.STRING:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(int(value)) if float(value).is_integer() else str(value)
        raise ValueError(f"expected a string, got {_describe(value)}")
    if type_ is Type.NUMBER:
        try:
            return number(value)
        except ValueError:
            raise ValueError(f"expected a number, got {_describe(value)}") from None
    if type_ is Type.BOOL:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"expected true or false, got {_describe(value)}")
    if type_ is Type.DATETIME:
        try:
            ms = _instant(value)
        except ValueError:
            raise ValueError(f"expected an ISO-8601 date or time, got {_describe(value)}") from None
        return ms - ms % DAY_MS if is_date else ms
    if type_ is Type.LIST:
        if isinstance(value, str):
            return [part.strip() for part in value.split(";") if part.strip()]
        if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
            return [str(v) for v in value]
        raise ValueError(f"expected a list of strings, got {_describe(value)}")
    raise ValueError(f"values of type {type_} cannot be pulled")


@dataclass(frozen=True)
class AttributeSpec:
    field: str  # the provider field (a key of Contact.properties)
    type: Type
    is_date: bool
    owned: bool  # listed in the source's attribute map: an empty field clears the attribute


@dataclass
class Tally:
    """Counts a conversion adds to (per attribute / per skipped event type)."""

    invalid: dict[str, int] = field(default_factory=dict)
    skipped_types: dict[str, int] = field(default_factory=dict)

    def bump(self, counts: dict[str, int], key: str) -> None:
        counts[key] = counts.get(key, 0) + 1


@dataclass(frozen=True)
class SourceMap:
    provider: str
    attributes: Mapping[str, AttributeSpec]
    event_types: Mapping[str, str]  # provider event type or alias -> declared event type
    properties: Mapping[str, Mapping[str, Type]]  # declared event type -> property types

    @classmethod
    def build(cls, project: Project, provider: str) -> SourceMap:
        """The map of ``provider`` in ``project``; ConfigError for an unknown attribute."""
        source = getattr(project.config.sources, provider, None)
        explicit: Mapping[str, str] = getattr(source, "attributes", None) or {}
        problems = attribute_map_problems({provider: explicit}, project.attributes)
        if problems:
            raise ConfigError(problems=problems)
        attrs = {
            name: AttributeSpec(_field(provider, explicit.get(name, name)), type_,
                                name in project.date_attributes, name in explicit)
            for name, type_ in project.attributes.items()
        }
        aliases: dict[str, str] = {}
        for event_type, cfg in project.config.events.items():
            for alias in (a for prov, names in cfg.aliases.items() if prov == provider for a in names):
                aliases.setdefault(alias, event_type)
        return cls(provider, attrs, aliases, project.events)

    def fields(self) -> list[str]:
        """The provider fields the attributes read (what a connector should ask for)."""
        return sorted({spec.field for spec in self.attributes.values()})

    def contact(self, record: Contact, tally: Tally) -> PulledContact:
        props = record.properties
        attrs: dict[str, Any] = {}
        for name, spec in self.attributes.items():
            if spec.field not in props:
                continue
            try:
                value = coerce(props[spec.field], spec.type, is_date=spec.is_date)
            except ValueError:
                tally.bump(tally.invalid, name)
                continue
            if value is not None or spec.owned:
                attrs[name] = value
        external = record.external_id.strip() if record.external_id else None
        return PulledContact(record.provider_id, normalised_email(record.email), external or None,
                             attrs, record.archived, _merged_ids(props.get(MERGED_IDS_PROPERTY)))

    def event_type(self, event: Event) -> str | None:
        if event.type in self.properties:
            return event.type
        return self.event_types.get(event.type)

    def event_properties(self, event_type: str, event: Event, tally: Tally) -> dict[str, Any]:
        """Declared properties in their stored form (a misfit is dropped and counted); the
        others as the provider sent them."""
        declared = self.properties.get(event_type, {})
        out: dict[str, Any] = {}
        for name, raw in event.properties.items():
            type_ = declared.get(name)
            if type_ is None:
                if raw is not None:
                    out[name] = raw
                continue
            try:
                value = coerce(raw, type_)
            except ValueError:
                tally.bump(tally.invalid, f"{event_type}.{name}")
                continue
            if value is not None:
                out[name] = value
        return out


def _field(provider: str, name: str) -> str:
    if provider == "klaviyo":
        for prefix in ("properties.", "location."):
            if name.startswith(prefix):
                return name[len(prefix):]
    return name


def _merged_ids(value: JsonValue) -> tuple[str, ...]:
    if isinstance(value, list):
        parts = [str(v) for v in value]
    elif isinstance(value, str | int):
        parts = str(value).split(";")
    else:
        return ()
    return tuple(p.strip() for p in parts if p.strip())
