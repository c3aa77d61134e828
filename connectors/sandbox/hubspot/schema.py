"""Contact property definitions and value validation (HubSpot's type system, as the API sees it).

Every property value crosses the API as a string. :func:`normalize` turns an input value into the
stored string (or ``None`` = clear) or an ``ErrorDetail``: unknown property, read-only property,
wrong type (number / bool / date / datetime / email), unknown enumeration option; multi-checkbox
values are ``;``-joined and each option is checked. :func:`typed` gives the comparable value that
search filters and sorts use.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

TYPES = ("bool", "date", "datetime", "enumeration", "number", "phone_number", "string")
FIELD_TYPES = (
    "booleancheckbox",
    "calculation_equation",
    "checkbox",
    "date",
    "file",
    "html",
    "number",
    "phonenumber",
    "radio",
    "select",
    "text",
    "textarea",
)
# which fieldTypes each type accepts (HubSpot's UI pairs; see QUIRKS.md)
ALLOWED_FIELD_TYPES: dict[str, frozenset[str]] = {
    "string": frozenset({"text", "textarea", "html", "file", "phonenumber"}),
    "phone_number": frozenset({"phonenumber", "text"}),
    "number": frozenset({"number", "calculation_equation"}),
    "bool": frozenset({"booleancheckbox"}),
    "enumeration": frozenset({"checkbox", "radio", "select", "booleancheckbox"}),
    "date": frozenset({"date"}),
    "datetime": frozenset({"date"}),
}
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
EMAIL_RE = re.compile(r"^[^@\s;,]+@[^@\s;,]+\.[^@\s;,]+$")
MAX_STRING = 65_536
DAY_MS = 86_400_000


def iso_ms(ms: int) -> str:
    """Epoch ms -> ``2024-01-31T10:00:00.123Z`` (HubSpot's datetime rendering)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_instant(raw: str) -> int | None:
    """Epoch ms from an epoch-ms string or an ISO-8601 string (``Z`` or offset); None if neither."""
    s = raw.strip()
    if re.fullmatch(r"-?\d{1,15}", s):
        return int(s)
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


@dataclass
class PropertyDef:
    name: str
    label: str
    type: str
    field_type: str
    group_name: str
    description: str = ""
    options: list[dict[str, Any]] = field(default_factory=list)
    display_order: int = -1
    read_only: bool = False
    hubspot_defined: bool = False
    has_unique_value: bool = False
    hidden: bool = False
    form_field: bool = False
    created_at: int = 0
    updated_at: int = 0
    archived: bool = False

    @property
    def option_values(self) -> frozenset[str]:
        return frozenset(str(o["value"]) for o in self.options)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "description": self.description,
            "groupName": self.group_name,
            "options": self.options,
            "displayOrder": self.display_order,
            "calculated": False,
            "externalOptions": False,
            "hasUniqueValue": self.has_unique_value,
            "hidden": self.hidden,
            "hubspotDefined": self.hubspot_defined,
            "modificationMetadata": {
                "archivable": not self.hubspot_defined,
                "readOnlyDefinition": self.hubspot_defined,
                "readOnlyValue": self.read_only,
            },
            "formField": self.form_field,
            "createdAt": iso_ms(self.created_at),
            "updatedAt": iso_ms(self.updated_at),
            "archived": self.archived,
        }
        return out


def _opts(*values: str) -> list[dict[str, Any]]:
    return [
        {"label": v.title(), "value": v, "hidden": False, "displayOrder": i, "description": ""}
        for i, v in enumerate(values)
    ]


LIFECYCLE_STAGES = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)


def default_properties(now_ms: int) -> dict[str, PropertyDef]:
    """The HubSpot-defined contact properties the sandbox knows."""
    rows: list[tuple[str, str, str, str, str, bool, list[dict[str, Any]]]] = [
        ("email", "Email", "string", "text", "contactinformation", False, []),
        ("firstname", "First Name", "string", "text", "contactinformation", False, []),
        ("lastname", "Last Name", "string", "text", "contactinformation", False, []),
        ("phone", "Phone Number", "string", "phonenumber", "contactinformation", False, []),
        ("city", "City", "string", "text", "contactinformation", False, []),
        ("country", "Country/Region", "string", "text", "contactinformation", False, []),
        ("company", "Company Name", "string", "text", "contactinformation", False, []),
        (
            "lifecyclestage",
            "Lifecycle Stage",
            "enumeration",
            "radio",
            "contactinformation",
            False,
            _opts(*LIFECYCLE_STAGES),
        ),
        ("createdate", "Create Date", "datetime", "date", "contactinformation", False, []),
        ("lastmodifieddate", "Last Modified Date", "datetime", "date", "contactinformation", True, []),
        ("hs_object_id", "Record ID", "number", "number", "contactinformation", True, []),
        (
            "hs_email_optout",
            "Unsubscribed from all email",
            "bool",
            "booleancheckbox",
            "emailinformation",
            True,
            _opts("true", "false"),
        ),
        (
            "hs_email_last_open_date",
            "Last marketing email open date",
            "datetime",
            "date",
            "emailinformation",
            True,
            [],
        ),
        (
            "hs_email_last_click_date",
            "Last marketing email click date",
            "datetime",
            "date",
            "emailinformation",
            True,
            [],
        ),
        # set by a merge on the surviving contact: the merged ids, ";"-joined (QUIRKS.md)
        ("hs_merged_object_ids", "Merged Contact IDs", "enumeration", "checkbox", "contactinformation",
         True, []),
    ]
    return {
        name: PropertyDef(
            name,
            label,
            ptype,
            ftype,
            group,
            options=opts,
            display_order=i,
            read_only=ro,
            hubspot_defined=True,
            has_unique_value=name in ("email", "hs_object_id"),
            created_at=now_ms,
            updated_at=now_ms,
        )
        for i, (name, label, ptype, ftype, group, ro, opts) in enumerate(rows)
    }


def default_groups() -> dict[str, dict[str, Any]]:
    return {
        "contactinformation": {
            "name": "contactinformation",
            "label": "Contact information",
            "displayOrder": 0,
            "archived": False,
        },
        "emailinformation": {
            "name": "emailinformation",
            "label": "Email information",
            "displayOrder": 1,
            "archived": False,
        },
    }


class Invalid(Exception):
    """A property value HubSpot would refuse; ``detail`` is the ErrorDetail code."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.message = message
        self.code = code


def _as_text(raw: Any) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int | float):
        return repr(raw) if isinstance(raw, float) else str(raw)
    if isinstance(raw, str):
        return raw
    raise Invalid(f"{raw!r} is not a valid property value", "INVALID_VALUE")


def normalize(prop: PropertyDef, raw: Any) -> str | None:
    """The stored string for ``raw`` (None = clear the value); raises :class:`Invalid`."""
    text = _as_text(raw)
    if text is None or text == "":
        return None
    name, ptype = prop.name, prop.type
    if ptype in ("string", "phone_number"):
        if len(text) > MAX_STRING:
            raise Invalid(f"{name} is longer than {MAX_STRING} characters", "INVALID_STRING_LENGTH")
        if name == "email":
            text = text.strip().lower()
            if not EMAIL_RE.match(text):
                raise Invalid(f"Email address {text} is invalid", "INVALID_EMAIL")
        return text
    if ptype == "number":
        try:
            value = float(text)
        except ValueError:
            raise Invalid(f"{text!r} is not a valid number", "INVALID_DECIMAL") from None
        if not math.isfinite(value):
            raise Invalid(f"{text!r} is not a valid number", "INVALID_DECIMAL")
        return text.strip()
    if ptype == "bool":
        low = text.strip().lower()
        if low not in ("true", "false"):
            raise Invalid(f"{text!r} is not a valid boolean, use true or false", "INVALID_BOOLEAN")
        return low
    if ptype == "date":
        return _normalize_date(text)
    if ptype == "datetime":
        ms = parse_instant(text)
        if ms is None:
            raise Invalid(f"{text!r} is not a valid datetime (epoch ms or ISO-8601)", "INVALID_DATETIME")
        return iso_ms(ms)
    if ptype == "enumeration":
        allowed = prop.option_values
        multi = prop.field_type == "checkbox"
        tokens = [t for t in text.split(";") if t != ""] if multi else [text]
        bad = [t for t in tokens if t not in allowed]
        if bad:
            raise Invalid(f"{bad[0]} was not one of the allowed options: {sorted(allowed)}", "INVALID_OPTION")
        return ";".join(tokens)
    raise Invalid(f"property {name} has unknown type {ptype}", "INVALID_VALUE")  # pragma: no cover


def _normalize_date(text: str) -> str:
    s = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
        try:
            return date.fromisoformat(s).isoformat()
        except ValueError:
            pass
    elif re.fullmatch(r"-?\d{1,15}", s):
        ms = int(s)
        if ms % DAY_MS != 0:
            raise Invalid(f"{s} is not at midnight UTC; a date value must be", "INVALID_DATE")
        return datetime.fromtimestamp(ms / 1000, UTC).date().isoformat()
    raise Invalid(f"{text!r} is not a valid date (YYYY-MM-DD or epoch ms at midnight UTC)", "INVALID_DATE")


def typed(prop: PropertyDef | None, value: str) -> Any:
    """A comparable value for search: float, epoch ms, bool or case-folded string."""
    ptype = prop.type if prop else "string"
    if ptype == "number":
        try:
            return float(value)
        except ValueError:
            return None
    if ptype in ("datetime", "date"):
        if ptype == "date" and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            return int(datetime.fromisoformat(value.strip()).replace(tzinfo=UTC).timestamp() * 1000)
        return parse_instant(value)
    if ptype == "bool":
        return value.strip().lower() == "true"
    return value.lower()
