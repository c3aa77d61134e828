"""The connector error tree, and the one place where SDK/HTTP exceptions become it.

Each class is named by what the caller must do::

    SegsyncError                              (mapping.errors)
    └── ConnectorError(provider, status, request_id, message)   a provider call failed
        ├── RetryableError(retry_after)       safe to send again, after retry_after s if given
        │   ├── RateLimited                   429: also slow down (feed the rate budget)
        │   └── MalformedResponse             unreadable body (HTML page, truncated JSON,
        │                                     wrong shape); sent again only if idempotent
        ├── PermanentError                    sending it again will fail the same way
        │   ├── AuthError                     401/403: fix the token or its scopes
        │   └── QuotaExhausted                the provider's daily quota is used up: stop
        ├── AmbiguousWrite                    a non-idempotent write may or may not have been
        │                                     applied: read back (or let the next reconcile
        │                                     run repair it); never resend blindly
        └── RecordRejected(record_id, reason) one record of a batch was refused; the rest
                                              of the batch stands

`translate(exc, provider, kind=...)` converts, once, at the connector boundary: the HubSpot
SDK's per-package ``ApiException`` classes (duck-typed on ``.status/.body/.headers``),
Klaviyo's ``openapi_client.exceptions.ApiException`` (``.body`` str or bytes), urllib3 and
``requests`` exceptions, raw socket errors, and the ``ValueError``/``TypeError``/pydantic
errors the SDKs raise when a body cannot be deserialised. `boundary()` is the context
manager that applies it; it lets anything that is not a provider failure through (a bug,
including the SDKs' refusals of our own arguments before anything was sent).
The provider's request id is kept: HubSpot ``correlationId`` (body) or
``X-HubSpot-Correlation-Id``; Klaviyo ``errors[].id`` or any ``*request-id`` header.
Messages are redacted (`redact`, with the body readers in `connectors.bodies`) so no token
reaches a log.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pydantic
import requests
import urllib3.exceptions as u3

from connectors.bodies import (
    detail,
    forget_response,
    last_response_headers,
    lower_headers,
    note_response,
    redact,
    request_id,
    snippet,
    text_of,
)
from connectors.classify import (
    CallKind,
    Transport,
    Verdict,
    classify_status,
    classify_transport,
    parse_retry_after,
    retry_after_floor,
)
from mapping.errors import SegsyncError

__all__ = [
    "AmbiguousWrite",
    "AuthError",
    "ConnectorError",
    "MalformedResponse",
    "PermanentError",
    "QuotaExhausted",
    "RateLimited",
    "RecordRejected",
    "RetryableError",
    "boundary",
    "from_http",
    "is_provider_failure",
    "last_response_headers",
    "note_response",
    "redact",
    "translate",
]


class ConnectorError(SegsyncError):
    """A provider call failed. `status` is the HTTP status (None when no response came)."""

    def __init__(
        self,
        provider: str,
        status: int | None,
        request_id: str | None,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.request_id = request_id
        self.message = redact(message)
        self.headers: Mapping[str, str] = dict(headers or {})
        super().__init__(str(self))

    def __str__(self) -> str:
        where = [f"HTTP {self.status}"] if self.status else []
        if self.request_id:
            where.append(f"request id {self.request_id}")
        suffix = f" ({', '.join(where)})" if where else ""
        return f"{self.provider}: {self.message}{suffix}"


class RetryableError(ConnectorError):
    """Safe to send again; `retry_after` is the server's requested wait in seconds."""

    def __init__(
        self,
        provider: str,
        status: int | None,
        request_id: str | None,
        message: str,
        retry_after: float | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(provider, status, request_id, message, headers=headers)


class RateLimited(RetryableError):
    """429: wait (at least `retry_after` when given) and slow the whole process down."""


class MalformedResponse(RetryableError):
    """The response could not be read (non-JSON, truncated, missing or mistyped fields)."""


class PermanentError(ConnectorError):
    """The same request will fail again: report it, do not retry."""


class AuthError(PermanentError):
    """The token is invalid, expired, or lacks a scope."""


class QuotaExhausted(PermanentError):
    """The provider's daily request quota is used up; resume after it resets."""


class AmbiguousWrite(ConnectorError):
    """A non-idempotent write lost its response: it may or may not have been applied."""


class RecordRejected(ConnectorError):
    """The provider refused one record; `reason` says why. The rest of the batch stands."""

    def __init__(
        self,
        provider: str,
        record_id: str,
        reason: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        self.record_id = record_id
        self.reason = redact(reason)
        super().__init__(provider, status, request_id, f"record {record_id} rejected: {reason}")


# --- responses --------------------------------------------------------------------------


def from_http(
    provider: str,
    status: int,
    headers: Any,
    body: object,
    *,
    kind: CallKind = CallKind.WRITE,
    reason: str | None = None,
    now: Callable[[], float] = time.time,
) -> ConnectorError:
    """The typed error for an HTTP error response (status, headers, raw body)."""
    hdrs = lower_headers(headers)
    text = text_of(body)
    try:
        payload: object = json.loads(text) if text.strip() else None
    except ValueError:
        payload = None
    rid = request_id(payload, hdrs)
    message = f"{status} {reason or http.client.responses.get(status, '')}".rstrip()
    message += f": {detail(payload, text)}"
    verdict = classify_status(status, provider, kind)
    if verdict is Verdict.RATE_LIMITED:
        if isinstance(payload, dict) and payload.get("policyName") == "DAILY":
            return QuotaExhausted(provider, status, rid, message, headers=hdrs)
        after = parse_retry_after(hdrs.get("retry-after"), now)
        return RateLimited(provider, status, rid, message, after, headers=hdrs)
    if verdict is Verdict.RETRY:
        after = parse_retry_after(hdrs.get("retry-after"), now)
        floor = retry_after_floor(provider, status)
        if floor is not None:
            after = max(after or 0.0, floor)
        return RetryableError(provider, status, rid, message, after, headers=hdrs)
    if verdict is Verdict.AUTH:
        return AuthError(provider, status, rid, message, headers=hdrs)
    if verdict is Verdict.AMBIGUOUS:
        return AmbiguousWrite(provider, status, rid, message, headers=hdrs)
    return PermanentError(provider, status, rid, message, headers=hdrs)


# --- transport and deserialisation ------------------------------------------------------


def _is_api_exception(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"ApiException", "OpenApiException"}) and all(
        hasattr(exc, attr) for attr in ("status", "body", "headers")
    )


_REQUESTS_CONNECT = (requests.ConnectTimeout, requests.exceptions.SSLError, requests.exceptions.ProxyError)
_DESERIALISATION = (ValueError, TypeError, KeyError, AttributeError)
_SOCKET_CONNECT = (ConnectionRefusedError, socket.gaierror, ssl.SSLError)  # nothing was sent
_SOCKET = (ConnectionError, TimeoutError, *_SOCKET_CONNECT)  # not e.g. FileNotFoundError
_TRANSPORT = (u3.HTTPError, requests.RequestException, http.client.HTTPException, *_SOCKET)


_ARGUMENT_ERRORS = {"ApiTypeError", "ApiValueError", "ApiAttributeError", "ApiKeyError"}


def _is_argument_error(exc: BaseException) -> bool:
    """The SDK refused *our arguments* before sending: a bug, not a provider failure.

    The generated clients raise ``Api{Type,Value,Attribute,Key}Error`` for bad arguments,
    and klaviyo-api's ``@validate_call`` raises a pydantic ``ValidationError`` titled after
    the method (``ProfilesApi.get_profiles``), where a response model's is titled after the
    model class (no dot).
    """
    if {cls.__name__ for cls in type(exc).__mro__} & _ARGUMENT_ERRORS:
        return True
    return isinstance(exc, pydantic.ValidationError) and "." in exc.title


def is_provider_failure(exc: BaseException) -> bool:
    """True for the exceptions a provider call can raise (what `translate` understands)."""
    if _is_argument_error(exc):
        return False
    return (
        isinstance(exc, ConnectorError)
        or _is_api_exception(exc)
        or isinstance(exc, _TRANSPORT + _DESERIALISATION)
    )


def _transport(
    provider: str, failure: Transport, kind: CallKind, exc: BaseException, status: int | None = None
) -> ConnectorError:
    what = {
        Transport.CONNECT: "could not connect (request not sent)",
        Transport.RESET: "connection lost before the response",
        Transport.TIMEOUT: "timed out waiting for the response",
        Transport.MALFORMED: "response could not be read",
    }[failure]
    message = f"{what}: {type(exc).__name__}: {snippet(str(exc))}"
    verdict = classify_transport(failure, kind)
    if verdict is Verdict.AMBIGUOUS:
        return AmbiguousWrite(provider, status, None, message)
    if failure is Transport.MALFORMED:
        return MalformedResponse(provider, status, None, message)
    return RetryableError(provider, status, None, message)


def _permanent(provider: str, exc: BaseException) -> PermanentError:
    return PermanentError(provider, None, None, f"{type(exc).__name__}: {snippet(str(exc))}")


def _from_urllib3(exc: u3.HTTPError, provider: str, kind: CallKind) -> ConnectorError:
    if isinstance(exc, u3.MaxRetryError):
        if exc.reason is not None and not isinstance(exc.reason, u3.ResponseError):
            return translate(exc.reason, provider, kind=kind)
        return _permanent(provider, exc)  # redirect loop or status retries: not transient
    if isinstance(exc, u3.ConnectTimeoutError | u3.SSLError | u3.ProxyError):
        return _transport(provider, Transport.CONNECT, kind, exc)
    if isinstance(exc, u3.ReadTimeoutError):
        return _transport(provider, Transport.TIMEOUT, kind, exc)
    if isinstance(exc, u3.DecodeError):
        return _transport(provider, Transport.MALFORMED, kind, exc)
    if isinstance(exc, u3.LocationValueError):
        return _permanent(provider, exc)
    return _transport(provider, Transport.RESET, kind, exc)


def _from_requests(
    exc: requests.RequestException, provider: str, kind: CallKind, now: Callable[[], float]
) -> ConnectorError:
    response = exc.response
    if isinstance(exc, requests.HTTPError) and response is not None:
        return from_http(
            provider, response.status_code, response.headers, response.content,
            kind=kind, reason=response.reason, now=now,
        )
    if isinstance(exc, _REQUESTS_CONNECT):
        return _transport(provider, Transport.CONNECT, kind, exc)
    if isinstance(exc, requests.Timeout):
        return _transport(provider, Transport.TIMEOUT, kind, exc)
    if isinstance(exc, requests.ConnectionError):
        inner = exc.args[0] if exc.args else None
        if isinstance(inner, BaseException) and is_provider_failure(inner):
            return translate(inner, provider, kind=kind, now=now)
        return _transport(provider, Transport.RESET, kind, exc)
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return _transport(provider, Transport.RESET, kind, exc)
    if isinstance(exc, requests.exceptions.ContentDecodingError | requests.exceptions.JSONDecodeError):
        return _transport(provider, Transport.MALFORMED, kind, exc)
    return _permanent(provider, exc)  # invalid URL, too many redirects, ...


def _from_api_exception(
    exc: BaseException, provider: str, kind: CallKind, headers: Any, now: Callable[[], float]
) -> ConnectorError:
    status = getattr(exc, "status", None)
    if not status:  # the SDKs use status 0 for SSL failures and for unbuildable requests
        reason = str(getattr(exc, "reason", "") or "")
        if "SSLError" in reason:
            return _transport(provider, Transport.CONNECT, kind, exc)
        return _permanent(provider, exc)
    return from_http(
        provider, int(status), getattr(exc, "headers", None) or headers, getattr(exc, "body", None),
        kind=kind, reason=getattr(exc, "reason", None), now=now,
    )


def translate(
    exc: BaseException,
    provider: str,
    *,
    kind: CallKind = CallKind.WRITE,
    headers: Mapping[str, str] | None = None,
    now: Callable[[], float] = time.time,
) -> ConnectorError:
    """The typed error for `exc` raised by a call of `kind` (default: the most cautious).

    For a deserialisation error the exception carries no response: the request id is read
    from `headers`, else from the last response noted on this thread (`note_response`).
    """
    if isinstance(exc, ConnectorError):
        return exc
    if _is_api_exception(exc):
        return _from_api_exception(exc, provider, kind, headers, now)
    if isinstance(exc, requests.RequestException):
        return _from_requests(exc, provider, kind, now)
    if isinstance(exc, u3.HTTPError):
        return _from_urllib3(exc, provider, kind)
    if isinstance(exc, _SOCKET_CONNECT):
        return _transport(provider, Transport.CONNECT, kind, exc)
    if isinstance(exc, TimeoutError):
        return _transport(provider, Transport.TIMEOUT, kind, exc)
    if isinstance(exc, (*_SOCKET, http.client.HTTPException)):
        return _transport(provider, Transport.RESET, kind, exc)
    if isinstance(exc, _DESERIALISATION):
        error = _transport(provider, Transport.MALFORMED, kind, exc)
        hdrs = lower_headers(headers if headers is not None else last_response_headers())
        error.request_id = request_id(None, hdrs)
        error.headers = hdrs
        return error
    return _permanent(provider, exc)


@contextmanager
def boundary(
    provider: str, kind: CallKind = CallKind.WRITE, now: Callable[[], float] = time.time
) -> Iterator[None]:
    """Translate provider failures raised inside the block; let anything else through."""
    forget_response()
    try:
        yield
    except ConnectorError:
        raise
    except Exception as exc:
        if not is_provider_failure(exc):
            raise
        raise translate(exc, provider, kind=kind, now=now) from exc
