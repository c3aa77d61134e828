"""Klaviyo's JSON:API documents, read strictly: instants, filter values, resource shapes.

Pure functions, no I/O. Everything that reads a response goes through `document`, `resources`
and the small field readers here, so a body that is not what the spec promises (not an
object, no ``data`` list, a resource without ``id``/``attributes``, an unparseable datetime)
becomes one `MalformedResponse` naming the operation, the place and the provider's request
id (read from the last response's headers on this thread) — never a ``KeyError`` three
frames later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

from connectors.errors import MalformedResponse, last_response_headers

__all__ = [
    "PROVIDER",
    "document",
    "filter_instant",
    "index_in_pointer",
    "malformed",
    "parse_instant",
    "request_id",
    "resources",
    "string_field",
]

PROVIDER: Final[Literal["klaviyo"]] = "klaviyo"
_POINTER = re.compile(r"\bat (/\S*)")


def request_id(headers: Mapping[str, str] | None = None) -> str | None:
    """The provider's request id among `headers` (default: the last response's)."""
    hdrs = headers if headers is not None else (last_response_headers() or {})
    for name, value in hdrs.items():
        if name.lower().endswith("request-id"):
            return value
    return None


def malformed(what: str, why: str) -> MalformedResponse:
    """A typed error for a 2xx body that is not what `what` promises."""
    return MalformedResponse(PROVIDER, None, request_id(), f"{what}: malformed response: {why}")


def document(body: object, what: str) -> dict[str, Any]:
    """`body` as a JSON:API top-level object."""
    if not isinstance(body, dict):
        raise malformed(what, f"expected a JSON object, got {type(body).__name__}")
    return body


def resources(body: object, what: str) -> list[dict[str, Any]]:
    """The ``data`` array of a collection document; each item an object with ``id`` and
    ``attributes``."""
    doc = document(body, what)
    data = doc.get("data")
    if not isinstance(data, list):
        raise malformed(what, "'data' is missing or not an array")
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            raise malformed(what, f"data[{i}] has no string 'id'")
        if not isinstance(item.get("attributes"), dict):
            raise malformed(what, f"data[{i}] ({item['id']}) has no 'attributes' object")
    return data


def string_field(obj: Mapping[str, Any], path: str, what: str) -> str:
    """The non-empty string at dotted `path` inside `obj`."""
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if not isinstance(value, str) or not value:
        raise malformed(what, f"'{path}' is missing or not a string")
    return value


def parse_instant(text: object, what: str) -> int:
    """Epoch ms UTC of an ISO-8601 date-time as Klaviyo writes it (``Z`` or an offset)."""
    if not isinstance(text, str):
        raise malformed(what, f"expected an ISO-8601 date-time, got {text!r}")
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise malformed(what, f"{text!r} is not an ISO-8601 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000) if moment.microsecond else int(moment.timestamp()) * 1000


def filter_instant(ms: int) -> str:
    """A filter value for epoch ms, **floored to the second** (``2024-01-31T10:00:00Z``).

    Flooring only widens a ``greater-than``/``greater-or-equal`` window; the overlap and the
    dedupe absorb the few extra rows. Whole seconds are the form Klaviyo documents.
    """
    return datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def index_in_pointer(message: str, pattern: str) -> int | None:
    """The row index a JSON:API ``source.pointer`` names, as `connectors.errors` renders it
    (``... at /data/3/id``); `pattern` is a regex with one group, matched in the pointer."""
    found = _POINTER.search(message)
    if not found:
        return None
    hit = re.search(pattern, found.group(1))
    return int(hit.group(1)) if hit else None
