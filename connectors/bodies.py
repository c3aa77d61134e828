"""Reading what providers send back, for error messages: headers, bodies, request ids.

Also `redact`, which masks tokens in any text that may reach a log, and the per-thread note
of the last response's headers (`note_response` / `last_response_headers`), which the clients
of `connectors.sdk` fill and `connectors.errors.boundary` clears on entry.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

__all__ = [
    "detail",
    "forget_response",
    "last_response_headers",
    "lower_headers",
    "note_response",
    "redact",
    "request_id",
    "snippet",
    "text_of",
]

_SNIPPET = 200
_SECRETS = (
    re.compile(r"(?i)(bearer\s+)[^\s'\",]+"),
    re.compile(r"(?i)(klaviyo-api-key\s+)[^\s'\",]+"),
    re.compile(r"(?i)((?:hapikey|api_key|apikey|access_token|token)=)[^&\s'\"]+"),
    re.compile(r"(?i)()\bpat-[a-z0-9-]{6,}"),
    re.compile(r"()\bpk_[A-Za-z0-9]{6,}"),
)


def redact(text: str) -> str:
    """`text` with bearer tokens, Klaviyo keys and ``token=`` query values masked."""
    for pattern in _SECRETS:
        text = pattern.sub(r"\1***", text)
    return text


def lower_headers(headers: Any) -> dict[str, str]:
    """A plain dict with lower-cased names from any headers mapping (or {} for None)."""
    if not headers:
        return {}
    try:
        items = headers.items()
    except AttributeError:
        return {}
    return {str(k).lower(): str(v) for k, v in items}


def text_of(body: object) -> str:
    """A response body (str, bytes or None) as text."""
    if body is None:
        return ""
    if isinstance(body, bytes | bytearray):
        return bytes(body).decode("utf-8", errors="replace")
    return str(body)


def snippet(text: str) -> str:
    """The start of `text` for a message: tags stripped, whitespace collapsed, shortened."""
    text = re.sub(r"<[^>]*>", " ", text)
    text = " ".join(text.split())
    return text[:_SNIPPET] + ("…" if len(text) > _SNIPPET else "")


def request_id(payload: object, headers: Mapping[str, str]) -> str | None:
    """HubSpot ``correlationId`` / Klaviyo ``errors[].id`` from the body, else a header."""
    if isinstance(payload, dict):
        if isinstance(payload.get("correlationId"), str):
            return str(payload["correlationId"])
        errors = payload.get("errors")
        if isinstance(errors, list):
            for item in errors:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    return str(item["id"])
    if "x-hubspot-correlation-id" in headers:
        return headers["x-hubspot-correlation-id"]
    for name, value in headers.items():
        if name.endswith("request-id") or name.endswith("correlation-id"):
            return value
    return None


def detail(payload: object, text: str) -> str:
    """What went wrong, from a HubSpot or Klaviyo (JSON:API) error body, or a text snippet."""
    if isinstance(payload, dict):
        parts: list[str] = []
        errors = payload.get("errors")
        first = errors[0] if isinstance(errors, list) and errors else None
        if isinstance(first, dict) and "detail" in first:  # Klaviyo JSON:API
            parts = [str(first.get(k)) for k in ("code", "detail") if first.get(k)]
            source = first.get("source")
            pointer = source.get("pointer") if isinstance(source, dict) else None
            if pointer:
                parts.append(f"at {pointer}")
        else:  # HubSpot standard error
            parts = [str(payload[k]) for k in ("category", "message") if payload.get(k)]
        if parts:
            return ": ".join(parts)
    if not text.strip():
        return "empty body"
    return f"unreadable body: {snippet(text)}"


# The SDKs drop the response when its body cannot be deserialised (and the HubSpot SDK
# returns 2xx data without headers). `connectors.sdk` wraps each client's REST layer to note
# every response's headers here; `boundary` forgets them on entry, so within a boundary they
# belong to the call being made: the request id survives, and the budget can read them.

_last = threading.local()


def note_response(headers: Any) -> None:
    """Remember the headers of the response just received on this thread."""
    _last.headers = lower_headers(headers)


def last_response_headers() -> dict[str, str] | None:
    """Headers of the last response received on this thread inside the current boundary."""
    headers: dict[str, str] | None = getattr(_last, "headers", None)
    return headers


def forget_response() -> None:
    """Forget the noted headers (a new call begins on this thread)."""
    _last.headers = None
