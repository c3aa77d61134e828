"""The Klaviyo connector under faults: the sandbox's injected 429/5xx/resets are survived
(state ends as intended), and bad responses from a tiny loopback server (HTML pages,
truncated JSON, missing fields) become typed errors carrying the request id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import pytest

from connectors.base import SchemaSpec
from connectors.errors import AuthError, MalformedResponse, RetryableError
from connectors.records import Change, ChangeOp, PushStatus
from connectors.sandbox import Sandbox
from tests.test_klaviyo_connector_support import FakeClock, clock, connector, routes, sb

__all__ = ["clock", "sb"]


def _sets(ids: list[str], tag: str) -> list[Change]:
    return [Change("klaviyo", pid, ChangeOp.SET_FIELD, "segment", f"{tag}-{pid[-4:]}") for pid in ids]


def test_targeted_faults_are_survived(sb: Sandbox, clock: FakeClock) -> None:
    ids = sorted(sb.klaviyo.state.profiles)[:6]
    sb.set_faults(
        "429=1:2s#1@update_profile,503=1#1@add_profiles_to_list,"
        "reset_after=1#1@remove_profiles_from_list,reset=1#1@get_profiles"
    )
    conn = connector(sb, clock)
    list_id = conn.ensure_schema(SchemaSpec(lists=("L",))).list_ids["L"]
    changes = [
        *_sets(ids[:2], "t"),
        *(Change("klaviyo", pid, ChangeOp.LIST_ADD, "L") for pid in ids),
        *(Change("klaviyo", pid, ChangeOp.LIST_REMOVE, "L") for pid in ids[:3]),
    ]
    assert all(r.status is PushStatus.APPLIED for r in conn.apply(changes))
    assert set(sb.klaviyo.state.lists[list_id].members) == set(ids[3:])
    assert all(sb.klaviyo.state.profiles[pid].properties["segment"] == f"t-{pid[-4:]}" for pid in ids[:2])
    assert 2.0 in clock.sleeps  # Retry-After honoured (jitter pinned to its ceiling, 0.5 s < 2 s)
    assert [e.status for e in routes(sb, "update_profile")] == [429, 200, 200]
    assert [e.status for e in routes(sb, "add_profiles_to_list")] == [503, 204]
    assert [e.status for e in routes(sb, "remove_profiles_from_list")] == [0, 204]  # 0 = reset
    contacts = [c for p in conn.pull_contacts(None) for c in p.records]
    assert len(contacts) == len(sb.klaviyo.state.profiles)
    assert routes(sb, "get_profiles")[0].status == 0


@pytest.mark.parametrize("bulk_threshold", [1000, 5])
def test_seeded_random_faults_end_in_the_intended_state(
    sb: Sandbox, clock: FakeClock, bulk_threshold: int
) -> None:
    ids = sorted(sb.klaviyo.state.profiles)[:120]
    sb.set_faults("429=0.1,5xx=0.05,reset_after=0.02,reset=0.02", seed=11)
    conn = connector(sb, clock, bulk_threshold=bulk_threshold, list_chunk=25)
    conn.ensure_schema(SchemaSpec(lists=("Seeded",)))
    changes = _sets(ids, "r") + [Change("klaviyo", pid, ChangeOp.LIST_ADD, "Seeded") for pid in ids]
    results = conn.apply(changes)
    retry = [r for r in results if r.status is not PushStatus.APPLIED]
    if retry:  # a change may exhaust its attempts: it must say so, and the next run repairs it
        assert all(r.status is PushStatus.RETRYABLE for r in retry)
        results = conn.apply([r.change for r in retry])
        assert all(r.status is PushStatus.APPLIED for r in results)
    state = sb.klaviyo.state
    assert all(state.profiles[pid].properties["segment"] == f"r-{pid[-4:]}" for pid in ids)
    [lst] = [x for x in state.lists.values() if x.name == "Seeded"]
    assert set(lst.members) == set(ids)
    injected = sb.klaviyo.faults.to_json()["injected"]
    assert sum(i["count"] for i in injected) >= 1


# --- bad responses from a loopback server ------------------------------------------------

Reply = tuple[int, str, bytes]  # status, content type, body


class Loopback:
    """Answers each path with the next programmed reply (the last one repeats)."""

    def __init__(self) -> None:
        self.replies: dict[str, list[Reply]] = {}
        self.seen: list[str] = []
        loop = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?")[0]
                loop.seen.append(f"{self.command} {path}")
                queue = loop.replies.get(path) or [(404, "text/plain", b"no route")]
                status, ctype, body = queue.pop(0) if len(queue) > 1 else queue[0]
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("X-Request-Id", f"req-{len(loop.seen)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = answer

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


@pytest.fixture
def loop() -> Iterator[Loopback]:
    lb = Loopback()
    yield lb
    lb.server.shutdown()
    lb.server.server_close()


HTML = (200, "text/html", b"<html><body><h1>Service Unavailable</h1></body></html>")
TRUNCATED = (200, "application/vnd.api+json", b'{"data": [{"type": "profile", "id": "01')
NO_DATA = (200, "application/vnd.api+json", b'{"links": {}}')
NO_UPDATED = (200, "application/vnd.api+json",
              json.dumps({"data": [{"type": "profile", "id": "p1", "attributes": {"email": "a@b.co"}}],
                          "links": {}}).encode())  # fmt: skip


@pytest.mark.parametrize(
    "reply", [HTML, TRUNCATED, NO_DATA, NO_UPDATED], ids=["html", "truncated", "no-data", "no-updated"]
)
def test_bad_pull_responses_are_typed_errors_with_the_request_id(
    loop: Loopback, clock: FakeClock, reply: Reply
) -> None:
    loop.replies["/api/profiles"] = [reply]
    conn = connector(loop.url, clock)
    with pytest.raises(MalformedResponse) as info:
        list(conn.pull_contacts(None))
    assert info.value.request_id == f"req-{len(loop.seen)}"
    assert "get_profiles" in str(info.value) or "response could not be read" in str(info.value)


def test_a_bad_response_to_one_record_does_not_stop_the_batch(loop: Loopback, clock: FakeClock) -> None:
    ok = (200, "application/vnd.api+json", json.dumps({"data": {"type": "profile", "id": "b"}}).encode())
    gateway = (502, "text/html", b"<html><h1>502 Bad Gateway</h1></html>")
    loop.replies["/api/profiles/a"] = [gateway]
    loop.replies["/api/profiles/b"] = [ok]
    error = {"id": "err-7", "status": 400, "code": "invalid", "title": "Invalid input.",
             "detail": "bad value", "source": {"pointer": "/data/attributes"}}  # fmt: skip
    refused = json.dumps({"errors": [error]}).encode()
    loop.replies["/api/profiles/c"] = [(400, "application/vnd.api+json", refused)]
    changes = [Change("klaviyo", pid, ChangeOp.SET_FIELD, "segment", "v") for pid in "abc"]
    results = connector(loop.url, clock).apply(changes)
    assert [r.status for r in results] == [PushStatus.RETRYABLE, PushStatus.APPLIED, PushStatus.REJECTED]
    assert (
        "502" in (results[0].reason or "")
        and results[0].request_id
        and results[0].request_id.startswith("req-")
    )
    assert results[2].request_id == "err-7" and "bad value" in (results[2].reason or "")
    assert loop.seen.count("PATCH /api/profiles/a") == 6  # the policy's attempts, then retryable


def test_auth_failures_stop_apply_with_an_auth_error(sb: Sandbox, clock: FakeClock) -> None:
    conn = connector(sb, clock, key="pk_wrong")
    with pytest.raises(AuthError):
        conn.apply(_sets(sorted(sb.klaviyo.state.profiles)[:1], "x"))
    with pytest.raises(AuthError):
        next(conn.pull_contacts(None))
    assert not isinstance(AuthError("klaviyo", 401, None, "x"), RetryableError)
