"""JSON:API responses and errors in Klaviyo's shape.

Every error body is ``{"errors": [{"id", "status", "code", "title", "detail", "source"}]}`` with
media type ``application/vnd.api+json`` (spec ``components.responses.ClientError``; the ``status``
member and the 409 ``meta.duplicate_profile_id`` as seen in real responses quoted in
klaviyo/klaviyo-api-node#75). Handlers raise :func:`api_error`; nothing else escapes as a 500.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from connectors.sandbox.server import HTTPError, Response

MEDIA_TYPE = "application/vnd.api+json"

TITLES = {
    400: "Invalid input.",
    401: "Authentication credentials were not provided.",
    403: "You do not have permission to perform this action.",
    404: "Not found.",
    405: "Method not allowed.",
    409: "Conflict.",
    413: "Request entity too large.",
    415: "Unsupported media type.",
    429: "Request was throttled.",
    500: "A server error occurred.",
}


def document(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON:API document response (``body is None`` = no content, e.g. 202/204)."""
    if body is None:
        return Response(status, b"", dict(headers or {}))
    return Response.json(status, body, content_type=MEDIA_TYPE, headers=headers)


def error_object(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    pointer: str | None = None,
    parameter: str | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    source: dict[str, str] = {}
    if pointer is not None:
        source["pointer"] = pointer
    if parameter is not None:
        source["parameter"] = parameter
    err: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "status": status,
        "code": code,
        "title": title or TITLES.get(status, "Error."),
        "detail": detail,
        "source": source,
    }
    if meta is not None:
        err["links"] = {}
        err["meta"] = meta
    return err


def error_response(status: int, code: str, detail: str, **kw: Any) -> Response:
    headers = kw.pop("headers", None)
    return document(status, {"errors": [error_object(status, code, detail, **kw)]}, headers)


def api_error(status: int, code: str, detail: str, **kw: Any) -> HTTPError:
    """An exception carrying a Klaviyo error response; ``raise api_error(...)``."""
    return HTTPError(error_response(status, code, detail, **kw))


def invalid(detail: str, *, pointer: str | None = None, parameter: str | None = None) -> HTTPError:
    return api_error(400, "invalid", detail, pointer=pointer, parameter=parameter)


def not_found(detail: str, pointer: str = "/data/") -> HTTPError:
    return api_error(404, "not_found", detail, pointer=pointer)


def internal_error(detail: str) -> Response:
    """The 500 body; ``detail`` (a handler bug's message) is not echoed to clients."""
    del detail
    return error_response(500, "error", "A server error occurred.")


def body_json(raw: bytes) -> Any:
    """The request body as JSON or a 400 ``parse_error`` naming the reason."""
    if not raw:
        raise api_error(400, "parse_error", "The request body is empty.", pointer="/data")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise api_error(400, "parse_error", f"Malformed JSON: {e}", pointer="/") from None
