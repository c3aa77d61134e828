"""HubSpot's JSON error shapes.

* A request-level error: ``{"status": "error", "message", "correlationId", "category",
  ["subCategory"], ["errors": [ErrorDetail]], ["context"]}`` with the HTTP status
  (400/401/404/409/413/415/429/500).
* A per-input error inside a 207 batch response (``StandardError``): ``{"status": "error",
  "category", "message", "context", "errors", "links"}``.

Handlers raise :func:`fail` (an ``HTTPError``) and never let a bad request become a 500.
"""

from __future__ import annotations

import uuid
from typing import Any, NoReturn

from connectors.sandbox.server import HTTPError, Request, Response

VALIDATION_ERROR = "VALIDATION_ERROR"
OBJECT_NOT_FOUND = "OBJECT_NOT_FOUND"
INVALID_AUTHENTICATION = "INVALID_AUTHENTICATION"
RATE_LIMITS = "RATE_LIMITS"
CONFLICT = "CONFLICT"
UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
INTERNAL_ERROR = "INTERNAL_ERROR"


def correlation_id() -> str:
    return str(uuid.uuid4())


def error_body(
    message: str,
    category: str,
    *,
    sub_category: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    context: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": "error",
        "message": message,
        "correlationId": correlation_id(),
        "category": category,
    }
    if sub_category:
        body["subCategory"] = sub_category
    if errors:
        body["errors"] = errors
    if context:
        body["context"] = context
    return body


def error_response(status: int, message: str, category: str, **kw: Any) -> Response:
    return Response.json(status, error_body(message, category, **kw))


def fail(status: int, message: str, category: str = VALIDATION_ERROR, **kw: Any) -> NoReturn:
    raise HTTPError(error_response(status, message, category, **kw))


def not_found(message: str = "resource not found", **kw: Any) -> NoReturn:
    fail(404, message, OBJECT_NOT_FOUND, **kw)


def detail(message: str, code: str, prop: str | None = None) -> dict[str, Any]:
    """One ``ErrorDetail``; ``prop`` names the offending property (HubSpot's ``in``/``context``)."""
    out: dict[str, Any] = {"message": message, "code": code}
    if prop is not None:
        out["in"] = prop
        out["context"] = {"propertyName": [prop]}
    return out


def standard_error(
    message: str, category: str, context: dict[str, list[str]], errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A per-input error of a 207 multi-status batch response."""
    return {
        "status": "error",
        "category": category,
        "message": message,
        "context": context,
        "errors": errors or [],
        "links": {},
    }


def internal_error(reason: str) -> Response:
    # the reason goes to the server log only; HubSpot never shows internals
    return error_response(500, "internal error", INTERNAL_ERROR)


def route_not_found(req: Request) -> Response:
    return error_response(404, f"Unable to find a route for {req.method} {req.path}", OBJECT_NOT_FOUND)


def json_body(req: Request) -> Any:
    """The request body as JSON, or HubSpot's 415/400 answer."""
    ctype = (req.header("content-type") or "").split(";")[0].strip().lower()
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        fail(415, f"Content type '{ctype}' not supported", UNSUPPORTED_MEDIA_TYPE)
    try:
        return req.json()
    except ValueError as e:
        fail(400, f"Invalid input JSON on line 1: {e}", VALIDATION_ERROR)


def json_object(req: Request) -> dict[str, Any]:
    body = json_body(req)
    if not isinstance(body, dict):
        fail(400, "Invalid input JSON: expected an object", VALIDATION_ERROR)
    return body


def inputs_of(body: dict[str, Any], limit: int) -> list[Any]:
    """The ``inputs`` array of a batch body (``<= limit`` of them, else 400)."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list):
        fail(400, "Invalid input JSON: 'inputs' must be an array", VALIDATION_ERROR)
    if len(inputs) > limit:
        fail(
            400,
            f"Batch input limit exceeded: {len(inputs)} inputs were sent, the limit is {limit}",
            VALIDATION_ERROR,
            sub_category="BATCH_TOO_LARGE",
        )
    return inputs


def int_arg(req: Request, name: str, default: int, low: int, high: int) -> int:
    raw = req.arg(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        fail(400, f"Invalid value for query parameter '{name}': {raw!r} is not an integer")
    if not low <= value <= high:
        fail(400, f"Invalid value for query parameter '{name}': must be between {low} and {high}")
    return value


def bool_arg(req: Request, name: str) -> bool:
    raw = (req.arg(name) or "false").lower()
    if raw not in ("true", "false"):
        fail(400, f"Invalid value for query parameter '{name}': {raw!r} is not a boolean")
    return raw == "true"
