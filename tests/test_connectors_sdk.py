"""The SDK factories against a stdlib HTTP server on 127.0.0.1: one request per call, always.

Also pins what the real SDKs raise (or silently return) for bad responses, and that the
boundary turns it into a typed error with the provider's request id.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hubspot import HubSpot
from klaviyo_api import KlaviyoAPI

from connectors.budget import BudgetSpec, RateBudget, hubspot_spec, klaviyo_spec
from connectors.classify import CallKind
from connectors.errors import (
    AmbiguousWrite,
    ConnectorError,
    MalformedResponse,
    PermanentError,
    RateLimited,
    RetryableError,
    boundary,
    last_response_headers,
)
from connectors.retry import RetryPolicy
from connectors.sdk import NO_RETRIES, http_session, hubspot_client, klaviyo_client


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    hang_up: bool = False  # read the request, then close the connection without a response


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class Loopback:
    def __init__(self) -> None:
        self.reply = Reply()
        self.seen: list[Seen] = []
        loop = self

        class Handler(BaseHTTPRequestHandler):
            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                loop.seen.append(Seen(self.command, self.path, dict(self.headers)))
                reply = loop.reply
                if reply.hang_up:
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[Loopback]:
    loop = Loopback()
    yield loop
    loop.close()


@pytest.fixture
def loop(server: Loopback) -> Loopback:
    server.reply = Reply()
    server.seen.clear()
    return server


HS_429 = b'{"status":"error","message":"ten secondly","correlationId":"c-429"}'
TOO_MANY = Reply(429, HS_429, {"Retry-After": "0"})

HUBSPOT_CALLS: dict[str, Callable[[Any], object]] = {
    "GET": lambda c: c.crm.contacts.basic_api.get_page(limit=10),
    "POST": lambda c: c.crm.contacts.batch_api.update({"inputs": [{"id": "1", "properties": {"a": "b"}}]}),
    "PUT": lambda c: c.crm.lists.memberships_api.add("123", ["1", "2"]),
}
NO_ATTRS: dict[str, Any] = {"attributes": {}}
KLAVIYO_CALLS: dict[str, Callable[[Any], object]] = {
    "GET": lambda c: c.Profiles.get_profiles(),
    "POST": lambda c: c.Lists.add_profiles_to_list("L1", {"data": [{"type": "profile", "id": "p1"}]}),
    "PATCH": lambda c: c.Profiles.update_profile("p1", {"data": {"type": "profile", "id": "p1", **NO_ATTRS}}),
}


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("method", sorted(HUBSPOT_CALLS))
def test_hubspot_sends_each_request_once(loop: Loopback, method: str, status: int) -> None:
    loop.reply = Reply(status, TOO_MANY.body, {"Retry-After": "0"})
    client = hubspot_client("pat-test", loop.url)
    with pytest.raises(RetryableError) as info, boundary("hubspot", CallKind.IDEMPOTENT_WRITE):
        HUBSPOT_CALLS[method](client)
    assert [s.method for s in loop.seen] == [method]
    assert loop.seen[0].headers["Authorization"] == "Bearer pat-test"
    assert (info.value.status, info.value.request_id) == (status, "c-429")


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("method", sorted(KLAVIYO_CALLS))
def test_klaviyo_sends_each_request_once(loop: Loopback, method: str, status: int) -> None:
    error = {"id": "k-1", "code": "throttled", "title": "t", "detail": "slow"}
    body = json.dumps({"errors": [error]}).encode()
    loop.reply = Reply(status, body, {"Retry-After": "0"}, "application/vnd.api+json")
    client = klaviyo_client("pk_test", loop.url)
    with pytest.raises(RetryableError) as info, boundary("klaviyo", CallKind.IDEMPOTENT_WRITE):
        KLAVIYO_CALLS[method](client)
    assert [s.method for s in loop.seen] == [method]
    assert loop.seen[0].headers["Authorization"] == "Klaviyo-API-Key pk_test"
    assert (info.value.status, info.value.request_id) == (status, "k-1")


@pytest.mark.parametrize(
    ("make", "call"),
    [
        (lambda url: HubSpot(access_token="pat-test", host=url), HUBSPOT_CALLS["GET"]),
        (lambda url: KlaviyoAPI("pk_test", test_host=url, max_retries=1), KLAVIYO_CALLS["GET"]),
    ],
    ids=["hubspot", "klaviyo"],
)
def test_without_the_factories_the_sdks_retry_a_get(
    loop: Loopback, make: Callable[[str], Any], call: Callable[[Any], object]
) -> None:
    """The contrast that makes the tests above meaningful: urllib3's default Retry(3)."""
    loop.reply = TOO_MANY
    with pytest.raises(Exception) as info:
        call(make(loop.url))
    assert getattr(info.value, "status", None) == 429
    assert len(loop.seen) == 4


def test_hubspot_raw_requests_use_base_url(loop: Loopback) -> None:
    loop.reply = TOO_MANY
    client = hubspot_client("pat-test", loop.url + "/")
    response = client.api_request({"method": "GET", "path": "/email/public/v1/events", "qs": {"limit": 1}})
    assert response.status_code == 429
    assert [(s.method, s.path) for s in loop.seen] == [("GET", "/email/public/v1/events?limit=1")]


def test_http_session_sends_once(loop: Loopback) -> None:
    loop.reply = TOO_MANY
    session = http_session()
    assert session.get(loop.url + "/email/public/v1/events").status_code == 429
    assert len(loop.seen) == 1
    assert NO_RETRIES.total == 0


@pytest.mark.parametrize(
    ("kind", "error"),
    [(CallKind.WRITE, AmbiguousWrite), (CallKind.IDEMPOTENT_WRITE, RetryableError)],
)
def test_connection_lost_after_a_write(loop: Loopback, kind: CallKind, error: type[ConnectorError]) -> None:
    loop.reply = Reply(hang_up=True)
    client = hubspot_client("pat-test", loop.url)
    with pytest.raises(error), boundary("hubspot", kind):
        HUBSPOT_CALLS["POST"](client)
    assert len(loop.seen) == 1


def test_connection_refused_is_retryable_and_not_retried_by_urllib3() -> None:
    idle = Loopback()
    url = idle.url
    idle.close()  # nothing listens on this port any more
    client = klaviyo_client("pk_test", url)
    with pytest.raises(RetryableError, match="could not connect"), boundary("klaviyo", CallKind.WRITE):
        KLAVIYO_CALLS["POST"](client)


HTML = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
JSONAPI = "application/vnd.api+json"


@pytest.mark.parametrize(
    ("reply", "error", "request_id"),
    [
        (Reply(200, HTML, {"X-Request-Id": "rq-1"}, "text/html"), MalformedResponse, "rq-1"),
        (Reply(200, b'{"data": [{"type": "profile", "id"', {}, JSONAPI), MalformedResponse, None),
        (Reply(200, b'{"data": [{"type": "profile"}]}', {}, JSONAPI), MalformedResponse, None),
        (Reply(502, HTML, {"X-Request-Id": "rq-2"}, "text/html"), RetryableError, "rq-2"),
        (Reply(400, b'{"errors":[{"id":"k-9","code":"invalid","title":"t","detail":"bad filter"}]}'),
         PermanentError, "k-9"),
    ],
    ids=["html-200", "truncated-200", "missing-fields-200", "html-502", "jsonapi-400"],
)
def test_klaviyo_bad_responses_become_typed_errors(
    loop: Loopback, reply: Reply, error: type[ConnectorError], request_id: str | None
) -> None:
    loop.reply = reply
    client = klaviyo_client("pk_test", loop.url)
    with pytest.raises(error) as info, boundary("klaviyo", CallKind.READ):
        KLAVIYO_CALLS["GET"](client)
    assert type(info.value) is error
    assert info.value.request_id == request_id


@pytest.mark.parametrize(
    "body",
    [HTML, b'{"results": [{"id": "1", "prop', b'{"unexpected": true}'],
    ids=["html", "truncated", "missing"],
)
def test_hubspot_sdk_swallows_bad_200_bodies(loop: Loopback, body: bytes) -> None:
    """A quirk the HubSpot connector must check for itself: no exception, just empty fields."""
    loop.reply = Reply(200, body)
    page = HUBSPOT_CALLS["GET"](hubspot_client("pat-test", loop.url))
    assert page.results is None  # type: ignore[attr-defined]


def test_hubspot_html_502_keeps_the_correlation_header(loop: Loopback) -> None:
    loop.reply = Reply(502, HTML, {"X-HubSpot-Correlation-Id": "corr-1"}, "text/html")
    with pytest.raises(RetryableError) as info, boundary("hubspot", CallKind.READ):
        HUBSPOT_CALLS["GET"](hubspot_client("pat-test", loop.url))
    assert info.value.request_id == "corr-1"
    assert "502 Bad Gateway" in str(info.value)


def test_hubspot_bad_200_headers_are_noted_for_the_connector(loop: Loopback) -> None:
    loop.reply = Reply(200, HTML, {"X-HubSpot-Correlation-Id": "corr-2"}, "text/html")
    with boundary("hubspot", CallKind.READ):
        HUBSPOT_CALLS["GET"](hubspot_client("pat-test", loop.url))
        headers = last_response_headers()
    assert headers is not None and headers["x-hubspot-correlation-id"] == "corr-2"
    with boundary("hubspot", CallKind.READ):
        assert last_response_headers() is None  # forgotten on entering the next boundary


@pytest.mark.parametrize(
    ("make", "call", "spec", "cls", "headers", "window", "limit"),
    [
        (
            lambda url: hubspot_client("pat-test", url), HUBSPOT_CALLS["POST"], hubspot_spec(), "default",
            {"X-HubSpot-RateLimit-Max": "100", "X-HubSpot-RateLimit-Remaining": "97",
             "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"},
            "ten_second", 100,
        ),
        (
            lambda url: klaviyo_client("pk_test", url, {"USE_DICTIONARY_FOR_RESPONSE_DATA": True}),
            KLAVIYO_CALLS["GET"], klaviyo_spec(), "profiles",
            {"RateLimit-Limit": "700", "RateLimit-Remaining": "697", "RateLimit-Reset": "40"},
            "profiles.steady", 700,
        ),
    ],
    ids=["hubspot", "klaviyo"],
)
def test_policy_feeds_the_budget_from_real_responses(
    loop: Loopback, make: Callable[[str], Any], call: Callable[[Any], object], spec: BudgetSpec, cls: str,
    headers: dict[str, str], window: str, limit: int,
) -> None:
    body = b'{"data": [], "links": {}}' if spec.provider == "klaviyo" else b'{"status": "COMPLETE"}'
    loop.reply = Reply(200, body, headers, JSONAPI)
    budget = RateBudget(spec)
    client = make(loop.url)
    policy = RetryPolicy(spec.provider)
    policy.call(lambda: call(client), kind=CallKind.IDEMPOTENT_WRITE, what="x", budget=budget.bind(cls))
    assert budget.limit(window) == limit
    assert len(budget.sends(window)) == 3  # ours, plus two the server says someone else made


def test_rate_limited_is_a_retryable_error(loop: Loopback) -> None:
    loop.reply = Reply(429, b"", {"Retry-After": "3"})
    with pytest.raises(RateLimited) as info, boundary("hubspot", CallKind.READ):
        HUBSPOT_CALLS["GET"](hubspot_client("pat-test", loop.url))
    assert info.value.retry_after == 3.0
