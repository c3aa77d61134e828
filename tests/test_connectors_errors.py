"""Translation of SDK, urllib3, requests and deserialisation failures into the error tree."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

import openapi_client.exceptions as klaviyo_exc
import pydantic
import pytest
import requests
import urllib3.exceptions as u3
from hubspot.crm.contacts.exceptions import ApiException as HsContactsApiException
from hubspot.crm.contacts.exceptions import ServiceException as HsContactsServiceException
from hubspot.crm.lists.exceptions import ApiException as HsListsApiException
from urllib3 import HTTPHeaderDict

from connectors.classify import CallKind
from connectors.errors import (
    AmbiguousWrite,
    AuthError,
    ConnectorError,
    MalformedResponse,
    PermanentError,
    QuotaExhausted,
    RateLimited,
    RecordRejected,
    RetryableError,
    boundary,
    is_provider_failure,
    redact,
    translate,
)
from mapping.errors import SegsyncError

NOW = 1_795_000_000.0  # 2026-11-18T11:06:40Z


class FakeResponse:
    """The shape both generated SDKs read in ``ApiException(http_resp=...)``."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str], reason: str = "") -> None:
        self.status = status
        self.reason = reason or http.client.responses.get(status, "")
        self.data = body
        self._headers = HTTPHeaderDict(headers)

    def getheaders(self) -> HTTPHeaderDict:
        return self._headers


HS_429 = json.dumps({
    "status": "error", "message": "You have reached your ten_secondly_rolling limit.",
    "errorType": "RATE_LIMIT", "correlationId": "c033cdaa-2c40", "policyName": "TEN_SECONDLY_ROLLING",
}).encode()
HS_DAILY = json.dumps({
    "status": "error", "message": "You have reached your daily limit.", "errorType": "RATE_LIMIT",
    "correlationId": "d-1", "policyName": "DAILY",
}).encode()
HS_400 = json.dumps({
    "status": "error", "message": "Property values were not valid", "correlationId": "a436-83b0",
    "category": "VALIDATION_ERROR",
}).encode()
KL_429 = json.dumps({"errors": [{
    "id": "kl-err-1", "status": 429, "code": "throttled", "title": "Request was throttled.",
    "detail": "Request was throttled. Expected available in 1 second.", "source": {"pointer": "/data/"},
}]}).encode()
KL_400 = json.dumps({"errors": [{
    "id": "kl-err-2", "code": "invalid", "title": "Invalid input.", "detail": "'email' is not valid",
    "source": {"pointer": "/data/attributes/email"},
}]}).encode()
HTML = b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"


def hubspot_exc(cls: type[Exception], status: int, body: bytes, headers: dict[str, str]) -> Exception:
    exc = cls(http_resp=FakeResponse(status, body, headers))  # type: ignore[call-arg]
    exc.body = body.decode()  # type: ignore[attr-defined]  # as the SDK's api_client does
    return exc


def klaviyo_exc_from(status: int, body: bytes, headers: dict[str, str], as_bytes: bool = False) -> Exception:
    exc = klaviyo_exc.ApiException(http_resp=FakeResponse(status, body, headers))
    if as_bytes:
        exc.body = body  # type: ignore[assignment]  # the README documents bytes; 25.0.0 gives str
    return exc


@pytest.mark.parametrize(
    ("exc", "provider", "kind", "cls", "status", "request_id", "retry_after", "in_message"),
    [
        pytest.param(
            hubspot_exc(HsContactsApiException, 429, HS_429, {"Retry-After": "3"}),
            "hubspot", CallKind.IDEMPOTENT_WRITE, RateLimited, 429, "c033cdaa-2c40", 3.0, "ten_secondly",
            id="hubspot-429-retry-after",
        ),
        pytest.param(
            hubspot_exc(HsListsApiException, 429, HS_DAILY, {}),
            "hubspot", CallKind.READ, QuotaExhausted, 429, "d-1", None, "daily limit",
            id="hubspot-lists-429-daily",
        ),
        pytest.param(
            hubspot_exc(HsContactsApiException, 400, HS_400, {}),
            "hubspot", CallKind.IDEMPOTENT_WRITE, PermanentError, 400, "a436-83b0", None, "VALIDATION_ERROR",
            id="hubspot-400",
        ),
        pytest.param(
            hubspot_exc(HsContactsServiceException, 502, HTML, {"X-HubSpot-Correlation-Id": "hdr-7"}),
            "hubspot", CallKind.READ, RetryableError, 502, "hdr-7", None, "Bad Gateway",
            id="hubspot-html-502-header-id",
        ),
        pytest.param(
            hubspot_exc(HsContactsApiException, 423, b"{}", {}),
            "hubspot", CallKind.IDEMPOTENT_WRITE, RetryableError, 423, None, 2.0, "423",
            id="hubspot-423-documented-2s",
        ),
        pytest.param(
            hubspot_exc(HsContactsApiException, 477, b"", {"Retry-After": "Wed, 18 Nov 2026 12:06:40 GMT"}),
            "hubspot", CallKind.READ, RetryableError, 477, None, 3600.0, "empty body",
            id="hubspot-477-http-date",
        ),
        pytest.param(
            hubspot_exc(HsContactsApiException, 401, b'{"message":"credentials not found"}', {}),
            "hubspot", CallKind.READ, AuthError, 401, None, None, "credentials",
            id="hubspot-401",
        ),
        pytest.param(
            hubspot_exc(HsContactsServiceException, 500, b'{"status":"error","message":"internal"}', {}),
            "hubspot", CallKind.WRITE, AmbiguousWrite, 500, None, None, "internal",
            id="hubspot-500-non-idempotent",
        ),
        pytest.param(
            klaviyo_exc_from(429, KL_429, {"Retry-After": "1"}),
            "klaviyo", CallKind.READ, RateLimited, 429, "kl-err-1", 1.0, "throttled",
            id="klaviyo-429",
        ),
        pytest.param(
            klaviyo_exc_from(400, KL_400, {"X-Request-Id": "ignored-body-wins"}, as_bytes=True),
            "klaviyo", CallKind.IDEMPOTENT_WRITE, PermanentError, 400, "kl-err-2", None, "attributes/email",
            id="klaviyo-400-bytes-body",
        ),
        pytest.param(
            klaviyo_exc_from(503, b"Service Unavailable", {"x-klaviyo-request-id": "rq-9"}),
            "klaviyo", CallKind.IDEMPOTENT_WRITE, RetryableError, 503, "rq-9", None, "Service Unavailable",
            id="klaviyo-503-text-header-id",
        ),
        pytest.param(
            klaviyo_exc_from(403, KL_400, {}),
            "klaviyo", CallKind.READ, AuthError, 403, "kl-err-2", None, "invalid",
            id="klaviyo-403",
        ),
    ],
)
def test_api_exceptions(
    exc: Exception, provider: str, kind: CallKind, cls: type[ConnectorError], status: int,
    request_id: str | None, retry_after: float | None, in_message: str,
) -> None:
    err = translate(exc, provider, kind=kind, now=lambda: NOW)
    assert type(err) is cls
    assert isinstance(err, SegsyncError)
    assert (err.provider, err.status, err.request_id) == (provider, status, request_id)
    assert getattr(err, "retry_after", None) == retry_after
    assert in_message in str(err)
    assert "<" not in err.message  # HTML tags stripped from snippets


def _max_retry(reason: Exception) -> u3.MaxRetryError:
    return u3.MaxRetryError(None, "/crm/v3/objects/contacts", reason)  # type: ignore[arg-type]


RESET = u3.ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer"))


@pytest.mark.parametrize(
    ("exc", "kind", "cls"),
    [
        (_max_retry(u3.NewConnectionError(None, "Connection refused")), CallKind.WRITE, RetryableError),  # type: ignore[arg-type]
        (_max_retry(RESET), CallKind.READ, RetryableError),
        (RESET, CallKind.IDEMPOTENT_WRITE, RetryableError),
        (RESET, CallKind.WRITE, AmbiguousWrite),
        (u3.ReadTimeoutError(None, "/x", "Read timed out."), CallKind.WRITE, AmbiguousWrite),  # type: ignore[arg-type]
        (u3.ReadTimeoutError(None, "/x", "Read timed out."), CallKind.READ, RetryableError),  # type: ignore[arg-type]
        (u3.DecodeError("bad gzip"), CallKind.READ, MalformedResponse),
        (_max_retry(u3.ResponseError("too many redirects")), CallKind.READ, PermanentError),
        (u3.LocationParseError("http://[bad"), CallKind.READ, PermanentError),
        (requests.ConnectionError(_max_retry(u3.NewConnectionError(None, "refused"))), CallKind.WRITE,  # type: ignore[arg-type]
         RetryableError),
        (requests.ConnectionError(RESET), CallKind.WRITE, AmbiguousWrite),
        (requests.ConnectTimeout("connect timed out"), CallKind.WRITE, RetryableError),
        (requests.ReadTimeout("read timed out"), CallKind.IDEMPOTENT_WRITE, RetryableError),
        (requests.exceptions.ChunkedEncodingError("truncated"), CallKind.READ, RetryableError),
        (requests.exceptions.JSONDecodeError("Expecting value", "<", 0), CallKind.READ, MalformedResponse),
        (requests.exceptions.InvalidURL("no host"), CallKind.READ, PermanentError),
        (ConnectionRefusedError(111, "refused"), CallKind.WRITE, RetryableError),
        (ConnectionResetError(104, "reset"), CallKind.WRITE, AmbiguousWrite),
        (http.client.RemoteDisconnected("closed"), CallKind.READ, RetryableError),
        (http.client.IncompleteRead(b"{\"res"), CallKind.WRITE, AmbiguousWrite),
        (TimeoutError("timed out"), CallKind.READ, RetryableError),
        (socket.gaierror(-2, "Name or service not known"), CallKind.WRITE, RetryableError),
        (json.JSONDecodeError("Expecting value", '{"results": [', 13), CallKind.READ, MalformedResponse),
        (AttributeError("'int' object has no attribute 'items'"), CallKind.READ, MalformedResponse),
        (KeyError("results"), CallKind.WRITE, AmbiguousWrite),
        (HsContactsApiException(status=0, reason="SSLError\ncertificate verify failed"), CallKind.WRITE,
         RetryableError),
        (HsContactsApiException(status=0, reason="Cannot prepare a request message"), CallKind.READ,
         PermanentError),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_transport_and_body_failures(exc: BaseException, kind: CallKind, cls: type[ConnectorError]) -> None:
    err = translate(exc, "hubspot", kind=kind)
    assert type(err) is cls
    assert err.status is None and err.request_id is None
    assert str(err).startswith("hubspot: ")


def test_requests_http_error_carries_the_response() -> None:
    response = requests.Response()
    response.status_code = 429
    response.reason = "Too Many Requests"
    response.headers.update({"Retry-After": "2", "X-HubSpot-Correlation-Id": "legacy-1"})
    response._content = b'{"status":"error","message":"ten secondly"}'
    err = translate(requests.HTTPError(response=response), "hubspot", kind=CallKind.READ)
    assert isinstance(err, RateLimited)
    assert (err.status, err.retry_after, err.request_id) == (429, 2.0, "legacy-1")


class Profile(pydantic.BaseModel):
    id: str


def test_pydantic_response_errors_are_malformed_and_keep_the_request_id() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        Profile.model_validate({"type": "profile"})
    err = translate(info.value, "klaviyo", kind=CallKind.READ, headers={"X-Request-Id": "rq-1"})
    assert isinstance(err, MalformedResponse)
    assert err.request_id == "rq-1"
    assert "Profile" in str(err)


def test_argument_errors_are_bugs_not_provider_failures() -> None:
    @pydantic.validate_call
    def get_profiles(page_size: int) -> None: ...

    with pytest.raises(pydantic.ValidationError) as info:
        get_profiles("abc")  # type: ignore[arg-type]
    assert not is_provider_failure(info.value)
    assert not is_provider_failure(klaviyo_exc.ApiValueError("Missing the required parameter `id`"))
    assert is_provider_failure(klaviyo_exc_from(500, b"", {}))
    assert is_provider_failure(ValueError("Expecting value"))
    assert is_provider_failure(ConnectionResetError(104, "reset"))
    assert not is_provider_failure(FileNotFoundError("config.toml"))
    assert not is_provider_failure(ZeroDivisionError())


def test_boundary_translates_once_and_lets_bugs_through() -> None:
    with pytest.raises(RateLimited) as info, boundary("klaviyo", CallKind.READ):
        raise klaviyo_exc_from(429, KL_429, {"Retry-After": "5"})
    assert isinstance(info.value.__cause__, klaviyo_exc.ApiException)
    already = PermanentError("klaviyo", 400, None, "bad")
    with pytest.raises(PermanentError) as again, boundary("klaviyo"):
        raise already
    assert again.value is already
    with pytest.raises(ZeroDivisionError), boundary("klaviyo"):
        _ = 1 / 0


@pytest.mark.parametrize(
    "secret",
    [
        "Authorization: Bearer pat-na1-0123abcd-ffff",
        "Klaviyo-API-Key pk_abcdef123456",
        "GET /email/public/v1/events?hapikey=abc-123-def&limit=10",
        "token pat-na1-77aa88bb99",
    ],
)
def test_secrets_are_redacted_from_messages(secret: str) -> None:
    assert "***" in redact(secret)
    err = translate(ConnectionResetError(104, secret), "hubspot", kind=CallKind.READ)
    for token in ("pat-na1-0123abcd-ffff", "pk_abcdef123456", "abc-123-def", "pat-na1-77aa88bb99"):
        assert token not in str(err)


def test_record_rejected() -> None:
    err = RecordRejected("hubspot", "1234", "Property values were not valid", status=207, request_id="c-1")
    assert isinstance(err, ConnectorError) and not isinstance(err, RetryableError | PermanentError)
    assert (err.record_id, err.reason, err.request_id) == ("1234", "Property values were not valid", "c-1")
    expected = "hubspot: record 1234 rejected: Property values were not valid (HTTP 207, request id c-1)"
    assert str(err) == expected


def test_unexpected_exception_is_permanent() -> None:
    class Weird(Exception):
        pass

    err: Any = translate(Weird("?"), "klaviyo")
    assert type(err) is PermanentError and "Weird" in str(err)


@pytest.mark.parametrize(
    "body",
    [
        b'{"errors": [{"id": "k-1", "detail": "x", "source": "not an object"}]}',
        b'{"errors": "nope"}',
        b'[1, 2, 3]',
        b'"just a string"',
        b"\xff\xfe not utf-8",
    ],
)
def test_odd_error_bodies_never_break_translation(body: bytes) -> None:
    err = translate(klaviyo_exc_from(400, body, {}, as_bytes=True), "klaviyo", kind=CallKind.READ)
    assert type(err) is PermanentError and err.status == 400
