"""The Klaviyo connector under faults: the sandbox's injected 429/5xx/resets are survived
(state ends as intended), and bad responses from a tiny loopback server (HTML pages,
truncated JSON, missing fields) become typed errors carrying the request id."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Lock, Thread
from typing import Any

import pytest

from connectors.base import SchemaSpec
from connectors.budget import RateBudget, klaviyo_spec
from connectors.errors import AuthError, MalformedResponse, RetryableError
from connectors.klaviyo import KlaviyoConnector, KlaviyoOptions
from connectors.records import Change, ChangeOp, PushResult, PushStatus
from connectors.retry import RetryPolicy
from connectors.sandbox import Sandbox
from connectors.sandbox.server import Request, Route
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


# --- the acceptance run: 20,000 property and 20,000 list changes under seeded faults -------

ACCEPTANCE_FAULTS = (
    "partial=1#1@bulk_import_profiles,"  # at least one bulk job fails in part, whatever the seed
    "429=0.10,5xx=0.05,reset_after=0.02,partial=0.01"
)
BAD_EMAILS = ("not-an-email", "two@@example.com", "spaces in@example.com")
UNKNOWN = ("01NOSUCHPROFILE0000000000A", "01NOSUCHPROFILE0000000000B")


class Writes:
    """A guard run just before the handlers: the body of every write the sandbox applies
    (requests answered by a fault, 429 or 5xx, never reach it; a reset-after one does)."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, str, Any]] = []  # (route, path, body)
        self._lock = Lock()

    def __call__(self, req: Request, route: Route) -> None:
        if route.name in ("bulk_import_profiles", "add_profiles_to_list", "remove_profiles_from_list"):
            with self._lock:
                self.bodies.append((route.name, req.path, json.loads(req.body)))

    def values(self) -> dict[tuple[str, str], set[str]]:
        """(profile id, field) -> every distinct value written; (list path, profile id) -> ops."""
        seen: dict[tuple[str, str], set[str]] = {}
        for route, path, body in self.bodies:
            if route == "bulk_import_profiles":
                for row in body["data"]["attributes"]["profiles"]["data"]:
                    attrs = dict(row["attributes"])
                    for name, value in {**attrs.pop("properties", {}), **attrs}.items():
                        seen.setdefault((row["id"], name), set()).add(json.dumps(value))
                    for name in (row.get("meta") or {}).get("patch_properties", {}).get("unset", []):
                        seen.setdefault((row["id"], name), set()).add("<unset>")
            else:
                for item in body["data"]:
                    seen.setdefault((path, item["id"]), set()).add(route)
        return seen


@pytest.mark.slow
def test_acceptance_20000_property_and_20000_list_changes_under_seeded_faults(sb: Sandbox) -> None:
    state = sb.klaviyo.state
    with state.lock:
        ids = [state.create_profile({"email": f"acc{i}@example.com"}).id for i in range(20_000)]
        for pid in ids[:5000]:
            state.profiles[pid].properties["old_tier"] = "gold"
        keep = state.create_list("Accept Keep")
        state.add_members(keep, ids[10_000:20_000])
    writes = Writes()
    sb.klaviyo.app.guards.append(writes)
    sb.set_faults(ACCEPTANCE_FAULTS, seed=2024)
    fake = FakeClock()  # retries and the budget wait on fake time; job polling really waits
    conn = KlaviyoConnector(
        sb.klaviyo_key, sb.klaviyo_url, metrics={},
        budget=RateBudget(klaviyo_spec(), clock=fake.now, sleep=fake.sleep),
        retry=RetryPolicy("klaviyo", sleep=fake.sleep, clock=fake.now),
        options=KlaviyoOptions(max_job_profiles=1000, job_poll_initial=0.02, job_poll_max=0.1),
    )  # fmt: skip
    for _ in range(4):  # create_list is never retried blindly: a failed create waits for the next run
        report = conn.ensure_schema(SchemaSpec(lists=("Accept Join", "Accept Keep")))
        if set(report.list_ids) == {"Accept Join", "Accept Keep"}:
            break
    assert report.list_ids["Accept Keep"] == keep.id
    bad = {ids[i]: BAD_EMAILS[i % 3] for i in range(19_995, 20_000)}
    segments = [f"s{i % 7}" for i in range(15_000)]
    pairs = zip(ids, segments, strict=False)
    props = [
        *(Change("klaviyo", pid, ChangeOp.SET_FIELD, "segment", segment) for pid, segment in pairs),
        *(Change("klaviyo", pid, ChangeOp.UNSET_FIELD, "old_tier") for pid in ids[:2000]),
        *(Change("klaviyo", pid, ChangeOp.SET_FIELD, "tier", "silver") for pid in ids[2000:4993]),
        *(Change("klaviyo", pid, ChangeOp.SET_FIELD, "email", email) for pid, email in bad.items()),
        *(Change("klaviyo", pid, ChangeOp.SET_FIELD, "segment", "ghost") for pid in UNKNOWN),
    ]  # fmt: skip
    lists = [
        *(Change("klaviyo", pid, ChangeOp.LIST_ADD, "Accept Join") for pid in ids[:14_998]),
        *(Change("klaviyo", pid, ChangeOp.LIST_ADD, "Accept Join") for pid in UNKNOWN),
        *(Change("klaviyo", pid, ChangeOp.LIST_REMOVE, "Accept Keep") for pid in ids[10_000:15_000]),
    ]
    changes = props + lists
    assert (len(props), len(lists)) == (20_000, 20_000)

    final: dict[str, PushResult] = {}
    pending = changes
    for _ in range(4):  # what the executor does: retryable results go out again next run
        results = conn.apply(pending)
        assert [r.change for r in results] == pending
        final.update((r.change.idempotency_key, r) for r in results)
        pending = [r.change for r in results if r.status is PushStatus.RETRYABLE]
        if not pending:
            break
    assert not pending, f"{len(pending)} changes still retryable after 4 runs"

    # every rejected record is one of the seeded invalid ones, and says why
    rejected = {r.change.record_id: r for r in final.values() if r.status is PushStatus.REJECTED}
    assert set(rejected) == set(bad) | set(UNKNOWN)
    assert all("email" in (rejected[pid].reason or "").lower() for pid in bad)
    assert all("does not exist" in (rejected[pid].reason or "") for pid in UNKNOWN)
    # the sandbox holds exactly the intended state
    with state.lock:
        for pid, segment in zip(ids, segments, strict=False):
            assert state.profiles[pid].properties.get("segment") == segment
        assert all("old_tier" not in state.profiles[pid].properties for pid in ids[:2000])
        assert all(state.profiles[pid].properties["old_tier"] == "gold" for pid in ids[2000:5000])
        assert all(state.profiles[pid].properties.get("tier") == "silver" for pid in ids[2000:4993])
        assert all(state.profiles[pid].attrs["email"] == f"acc{ids.index(pid)}@example.com" for pid in bad)
        [join] = [x for x in state.lists.values() if x.name == "Accept Join"]
        assert set(join.members) == set(ids[:14_998])
        assert set(keep.members) == set(ids[15_000:20_000])
    # no record was written twice with different values
    conflicting = {key: v for key, v in writes.values().items() if len(v) > 1}
    assert not conflicting, list(conflicting.items())[:3]
    # the faults did strike, each kind, and were survived
    injected = Counter[str]()
    for item in sb.klaviyo.faults.to_json()["injected"]:
        injected[item["kind"]] += item["count"]
    assert all(injected[k] > 0 for k in ("429", "5xx", "reset_after", "partial")), injected
    assert any(j.transient and j.failed for j in state.jobs.values())  # a partially failed job


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
