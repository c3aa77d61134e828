"""Reading HubSpot batch outcomes, and bisecting a batch the API refused as a whole.

A 207 ``BatchResponse...WithErrors`` lists ``errors[]``; each error names the inputs it is
about in ``context`` (``ids`` for ``OBJECT_NOT_FOUND``, ``id`` / ``email`` / ``objectId``
for per-input validation errors; shapes vary, so every list-of-strings value of a known key
counts) and the offending properties in ``errors[].in`` or ``context.propertyName``.
`error_ids`, `error_properties` and `describe` read those; `is_transient` says whether the
error is worth resending (HubSpot does not document per-input transient categories; the
ones in `TRANSIENT_CATEGORIES` are the error categories of transient whole-request failures).

`bisect(items, send, isolate)`: ``send(items)``; when it raises a whole-batch 4xx
(`bisectable`), split the batch in halves and send each, down to one item, which goes to
``isolate(item, error)``. Every other error propagates. A batch of n items with one bad item
costs at most ``2 * log2(n)`` extra requests, and every good item is still applied once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from connectors.errors import AuthError, ConnectorError, PermanentError, QuotaExhausted
from connectors.records import Change, PushResult

__all__ = [
    "BISECT_STATUSES",
    "TRANSIENT_CATEGORIES",
    "Stop",
    "bisect",
    "bisectable",
    "describe",
    "error_ids",
    "error_properties",
    "failing",
    "is_transient",
    "rejecting",
]

T = TypeVar("T")
BISECT_STATUSES = frozenset({400, 409, 413, 414, 422})
TRANSIENT_CATEGORIES = frozenset(
    {"RATE_LIMITS", "INTERNAL_ERROR", "LOCKED", "TIMEOUT", "SERVICE_UNAVAILABLE"}
)
_ID_KEYS = ("ids", "id", "objectId", "objectIds", "email", "emails", "idProperty")


class Stop(Exception):
    """Nothing more can be sent in this run (bad token, daily quota used up)."""

    def __init__(self, error: ConnectorError) -> None:
        super().__init__(str(error))
        self.error = error


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, list | tuple):
        return [str(v) for v in value if isinstance(v, str | int) and not isinstance(v, bool)]
    return []


def error_ids(error: Any) -> list[str]:
    """The input ids an error of a 207 names (as sent: record ids or emails)."""
    context = _get(error, "context") or {}
    return [i for key in _ID_KEYS for i in _strings(_get(context, key))]


def error_properties(error: Any) -> set[str]:
    """The property names an error of a 207 blames."""
    names = set(_strings(_get(_get(error, "context") or {}, "propertyName")))
    for detail in _get(error, "errors") or []:
        names.update(_strings(_get(detail, "in") or _get(detail, "_in")))
        names.update(_strings(_get(_get(detail, "context") or {}, "propertyName")))
    return names


def describe(error: Any) -> str:
    """``CATEGORY: message [CODE, ...]`` for a result's reason."""
    category = _get(error, "category") or "ERROR"
    message = _get(error, "message") or "no message"
    codes = sorted({str(_get(d, "code")) for d in _get(error, "errors") or [] if _get(d, "code")})
    return f"{category}: {message}" + (f" [{', '.join(codes)}]" if codes else "")


def is_transient(error: Any) -> bool:
    return _get(error, "category") in TRANSIENT_CATEGORIES


def bisectable(exc: ConnectorError) -> bool:
    """A refusal of the whole batch that one bad input can cause."""
    return (
        isinstance(exc, PermanentError)
        and not isinstance(exc, AuthError | QuotaExhausted)
        and (exc.status in BISECT_STATUSES)
    )


def bisect(
    items: Sequence[T], send: Callable[[list[T]], None], isolate: Callable[[T, PermanentError], None]
) -> None:
    """Send `items`; on a whole-batch 4xx split in halves until the bad items are isolated."""
    stack: list[list[T]] = [list(items)]
    while stack:
        batch = stack.pop()
        try:
            send(batch)
        except PermanentError as exc:
            if not bisectable(exc):
                raise
            if len(batch) == 1:
                isolate(batch[0], exc)
                continue
            mid = len(batch) // 2
            stack.extend([batch[mid:], batch[:mid]])  # the first half is sent first


def stop_on(exc: ConnectorError) -> None:
    """Raise `Stop` for errors that end the run (auth, quota)."""
    if isinstance(exc, AuthError | QuotaExhausted):
        raise Stop(exc) from exc


def chunks(items: Iterable[T], size: int) -> list[list[T]]:
    out: list[list[T]] = []
    for item in items:
        if not out or len(out[-1]) >= size:
            out.append([])
        out[-1].append(item)
    return out


def failing(exc: ConnectorError) -> Callable[[Change], PushResult]:
    """The result of a change that `exc` stopped (retryable or rejected, by its class)."""
    return lambda change: PushResult.from_error(change, exc)


def rejecting(reason: str) -> Callable[[Change], PushResult]:
    return lambda change: PushResult.rejected(change, reason)
