"""Every Klaviyo operation segsync uses, driven through the official SDK (klaviyo-api) against the
stand-in over loopback, and every response body (success and error) validated against the
official OpenAPI schema of that operation and status (the contract test)."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from openapi_client.exceptions import ApiException

from tests.test_sandbox_klaviyo_support import Sandbox, sandbox, validate

__all__ = ["sandbox"]

HEADERS = {
    "Authorization": "Klaviyo-API-Key pk_sandbox",
    "revision": "2026-10-15",
    "Accept": "application/vnd.api+json",
    "Content-Type": "application/vnd.api+json",
}


def error_of(operation: str, call: Any, *args: Any, **kw: Any) -> tuple[int, dict[str, Any]]:
    """Call expecting an ApiException; validate its body against the spec; (status, first error)."""
    with pytest.raises(ApiException) as info:
        call(*args, **kw)
    e = info.value
    raw_body = e.body if isinstance(e.body, str | bytes) else b""
    body = json.loads(raw_body)
    validate(operation, e.status, body)
    assert len(body["errors"]) == 1
    return e.status, body["errors"][0]


def raw(
    sb: Sandbox, method: str, path: str, operation: str, body: Any = None, **kw: Any
) -> requests.Response:
    headers = {**HEADERS, **kw.pop("headers", {})}
    data = kw.pop("data", None if body is None else json.dumps(body))
    r = requests.request(method, sb.url + path, headers=headers, data=data, timeout=10, **kw)
    if r.status_code >= 400:
        assert r.headers["Content-Type"] == "application/vnd.api+json"
        validate(operation, r.status_code, r.json())
    return r


def profile_body(email: str, **attrs: Any) -> dict[str, Any]:
    return {"data": {"type": "profile", "attributes": {"email": email, **attrs}}}


def cursor_of(page: dict[str, Any]) -> str | None:
    nxt = page["links"].get("next")
    return parse_qs(urlsplit(nxt).query)["page[cursor]"][0] if nxt else None


def test_profiles_create_get_update_and_import(sandbox: Sandbox) -> None:
    k = sandbox.sdk()
    created = k.Profiles.create_profile(
        profile_body("ada@example.com", first_name="Ada", properties={"tags": ["a", "b"], "old": 1})
    )
    validate("create_profile", 201, created)
    pid = created["data"]["id"]
    assert len(pid) == 26 and created["data"]["attributes"]["first_name"] == "Ada"

    status, err = error_of("create_profile", k.Profiles.create_profile, profile_body("ADA@example.com"))
    assert (status, err["code"], err["meta"]["duplicate_profile_id"]) == (409, "duplicate_profile", pid)

    got = k.Profiles.get_profile(pid)
    validate("get_profile", 200, got)
    assert got["data"]["attributes"]["email"] == "ada@example.com"

    patch = {
        "data": {
            "type": "profile",
            "id": pid,
            "attributes": {"first_name": None, "properties": {"n": 2}},
            "meta": {
                "patch_properties": {"append": {"tags": "c"}, "unappend": {"tags": "a"}, "unset": "old"}
            },
        }
    }
    updated = k.Profiles.update_profile(pid, patch)
    validate("update_profile", 200, updated)
    attrs = updated["data"]["attributes"]
    assert attrs["first_name"] is None
    assert attrs["properties"] == {"tags": ["b", "c"], "n": 2}
    assert attrs["updated"] >= attrs["created"]

    first = raw(
        sandbox, "POST", "/api/profile-import", "create_or_update_profile", profile_body("bo@example.com")
    )
    assert first.status_code == 201
    validate("create_or_update_profile", 201, first.json())
    again = k.Profiles.create_or_update_profile(profile_body("bo@example.com", last_name="Bo"))
    validate("create_or_update_profile", 200, again)
    assert again["data"]["id"] == first.json()["data"]["id"]
    assert again["data"]["attributes"]["last_name"] == "Bo"


@pytest.mark.parametrize(
    ("operation", "call", "status", "code"),
    [
        ("get_profile", lambda k: k.Profiles.get_profile("01NOSUCHPROFILE00000000000"), 404, "not_found"),
        ("create_profile", lambda k: k.Profiles.create_profile(profile_body("not-an-email")), 400, "invalid"),
        (
            "create_profile",
            lambda k: k.Profiles.create_profile({"data": {"type": "profile", "attributes": {}}}),
            400,
            "invalid",
        ),
        (
            "update_profile",
            lambda k: k.Profiles.update_profile(
                "x", {"data": {"type": "profile", "id": "y", "attributes": {}}}
            ),
            400,
            "invalid",
        ),
        ("get_profiles", lambda k: k.Profiles.get_profiles(filter='equals(nickname,"x")'), 400, "invalid"),
        (
            "get_profiles",
            lambda k: k.Profiles.get_profiles(filter="greater-than(updated,yesterday)"),
            400,
            "invalid",
        ),
        ("get_metric", lambda k: k.Metrics.get_metric("nope00"), 404, "not_found"),
        ("get_list", lambda k: k.Lists.get_list("nope00"), 404, "not_found"),
        ("get_event", lambda k: k.Events.get_event("bogus"), 404, "not_found"),
    ],
)
def test_client_errors_have_klaviyo_shape(
    sandbox: Sandbox, operation: str, call: Any, status: int, code: str
) -> None:
    assert error_of(operation, call, sandbox.sdk())[0:1] == (status,)
    with pytest.raises(ApiException) as info:
        call(sandbox.sdk())
    assert json.loads(str(info.value.body))["errors"][0]["code"] == code


@pytest.mark.parametrize(
    ("method", "path", "operation", "kw", "status", "code"),
    [
        (
            "GET",
            "/api/profiles",
            "get_profiles",
            {"headers": {"Authorization": "Klaviyo-API-Key wrong"}},
            401,
            "authentication_failed",
        ),
        (
            "GET",
            "/api/profiles",
            "get_profiles",
            {"headers": {"Authorization": ""}},
            401,
            "not_authenticated",
        ),
        ("GET", "/api/profiles", "get_profiles", {"headers": {"revision": ""}}, 400, "invalid"),
        ("GET", "/api/profiles?page[size]=101", "get_profiles", {}, 400, "invalid"),
        ("GET", "/api/events?page[size]=1001", "get_events", {}, 400, "invalid"),
        ("GET", "/api/lists?page[size]=11", "get_lists", {}, 400, "invalid"),
        ("GET", "/api/profiles?page[cursor]=%3DWzEsMl0", "get_profiles", {}, 400, "invalid"),
        ("POST", "/api/profiles", "create_profile", {"data": "{not json"}, 400, "parse_error"),
        (
            "POST",
            "/api/profiles",
            "create_profile",
            {"data": "x", "headers": {"Content-Type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
        ("PUT", "/api/profiles", "get_profiles", {}, 405, "method_not_allowed"),
        ("GET", "/api/nothing-here", "get_profiles", {}, 404, "not_found"),
    ],
)
def test_protocol_errors(
    sandbox: Sandbox, method: str, path: str, operation: str, kw: dict[str, Any], status: int, code: str
) -> None:
    r = raw(sandbox, method, path, operation, **kw)
    assert (r.status_code, r.json()["errors"][0]["code"]) == (status, code)
    assert "Traceback" not in r.text


def test_profile_listing_filters_sort_and_cursor_paging(sandbox: Sandbox) -> None:
    k = sandbox.sdk()
    clock = [1_700_000_000.0]
    sandbox.settings.clock = lambda: clock[0]
    ids = []
    for i in range(5):
        clock[0] += 10
        ids.append(k.Profiles.create_profile(profile_body(f"p{i}@example.com"))["data"]["id"])
    seen: list[str] = []
    cursor = None
    while True:
        page = k.Profiles.get_profiles(page_size=2, page_cursor=cursor, sort="updated")
        validate("get_profiles", 200, page)
        seen += [p["id"] for p in page["data"]]
        cursor = cursor_of(page)
        if cursor is None:
            break
    assert seen == ids
    since = k.Profiles.get_profiles(filter="greater-than(updated,2023-11-14T22:13:40Z)", sort="-updated")
    assert [p["id"] for p in since["data"]] == ids[2:][::-1]
    one = k.Profiles.get_profiles(filter='equals(email,"P3@example.com")')
    assert [p["id"] for p in one["data"]] == [ids[3]]
    two = k.Profiles.get_profiles(filter='any(email,["p1@example.com","p4@example.com"])')
    assert {p["id"] for p in two["data"]} == {ids[1], ids[4]}
    both = k.Profiles.get_profiles(
        filter="and(greater-than(created,2023-11-14T22:13:30Z),less-than(created,2023-11-14T22:14:10Z))"
    )
    assert [p["id"] for p in both["data"]] == ids[1:4]


def test_cursor_with_leading_equals_is_a_setting(sandbox: Sandbox) -> None:
    k = sandbox.sdk()
    for i in range(3):
        k.Profiles.create_profile(profile_body(f"c{i}@example.com"))
    cursor = cursor_of(k.Profiles.get_profiles(page_size=2))
    assert cursor
    error_of("get_profiles", k.Profiles.get_profiles, page_size=2, page_cursor="=" + cursor)
    sandbox.settings.tolerate_cursor_equals = True
    assert len(k.Profiles.get_profiles(page_size=2, page_cursor="=" + cursor)["data"]) == 1


def wait_job(k: Any, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = k.Profiles.get_bulk_import_profiles_job(job_id)
        validate("get_bulk_import_profiles_job", 200, job)
        if job["data"]["attributes"]["status"] == "complete":
            return job  # type: ignore[no-any-return]
        time.sleep(0.02)
    raise AssertionError("the import job did not complete")


def test_bulk_import_job_lifecycle_and_errors(sandbox: Sandbox) -> None:
    k = sandbox.sdk()
    lst = k.Lists.create_list({"data": {"type": "list", "attributes": {"name": "Imported"}}})["data"]["id"]
    existing = k.Profiles.create_profile(profile_body("old@example.com"))["data"]["id"]
    rows = [
        {"type": "profile", "attributes": {"email": e, "properties": {"seg": "vip"}}}
        for e in ("n1@example.com", "bad-email", "OLD@example.com", "n2@example.com")
    ]
    body = {
        "data": {
            "type": "profile-bulk-import-job",
            "attributes": {"profiles": {"data": rows}},
            "relationships": {"lists": {"data": [{"type": "list", "id": lst}]}},
        }
    }
    job = k.Profiles.bulk_import_profiles(body)
    validate("bulk_import_profiles", 202, job)
    assert job["data"]["attributes"]["status"] == "queued"
    assert job["data"]["attributes"]["total_count"] == 4
    done = wait_job(k, job["data"]["id"])["data"]["attributes"]
    assert (done["completed_count"], done["failed_count"]) == (3, 1)
    errs = k.Profiles.get_errors_for_bulk_import_profiles_job(job["data"]["id"])
    validate("get_errors_for_bulk_import_profiles_job", 200, errs)
    assert [e["attributes"]["source"]["pointer"] for e in errs["data"]] == [
        "/data/attributes/profiles/data/1/attributes/email"
    ]
    jobs = k.Profiles.get_bulk_import_profiles_jobs(filter='equals(status,"complete")')
    validate("get_bulk_import_profiles_jobs", 200, jobs)
    assert [j["id"] for j in jobs["data"]] == [job["data"]["id"]]
    members = k.Lists.get_profile_ids_for_list(lst)
    assert len(members["data"]) == 3 and existing in {m["id"] for m in members["data"]}
    assert sandbox.state.profiles[existing].properties == {"seg": "vip"}


@pytest.mark.parametrize(("n", "pad", "status"), [(10_001, 0, 400), (2, 5 * 1024 * 1024, 413)])
def test_bulk_import_limits(sandbox: Sandbox, n: int, pad: int, status: int) -> None:
    rows = [{"type": "profile", "attributes": {"email": f"x{i}@example.com"}} for i in range(n)]
    body = {"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": rows}}}}
    data = json.dumps(body) + " " * pad
    r = raw(sandbox, "POST", "/api/profile-bulk-import-jobs", "bulk_import_profiles", data=data)
    assert r.status_code == status
    assert not sandbox.state.jobs


def event_body(email: str, metric: str, time_: str, **attrs: Any) -> dict[str, Any]:
    return {
        "data": {
            "type": "event",
            "attributes": {
                "properties": {"product": "Mug"},
                "time": time_,
                **attrs,
                "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
                "profile": {"data": {"type": "profile", "attributes": {"email": email}}},
            },
        }
    }


def test_events_create_filter_include_and_page(sandbox: Sandbox) -> None:
    k = sandbox.sdk()
    assert (
        k.Events.create_event(
            event_body("e@example.com", "Placed Order", "2024-01-01T10:00:00+00:00", value=12.5)
        )
        is None
    )
    for h in range(11, 15):
        k.Events.create_event(event_body("e@example.com", "Viewed Product", f"2024-01-01T{h}:00:00Z"))
    dup = event_body("e@example.com", "Viewed Product", "2024-01-01T11:00:00Z", unique_id="u1")
    k.Events.create_event(dup)
    k.Events.create_event(dup)  # same unique_id: ignored
    bulk = {
        "data": {
            "type": "event-bulk-create-job",
            "attributes": {
                "events-bulk-create": {
                    "data": [
                        {
                            "type": "event-bulk-create",
                            "attributes": {
                                "profile": {
                                    "data": {"type": "profile", "attributes": {"email": "f@example.com"}}
                                },
                                "events": {
                                    "data": [
                                        {
                                            "type": "event",
                                            "attributes": {
                                                "properties": {},
                                                "time": "2024-01-02T00:00:00Z",
                                                "metric": {
                                                    "data": {
                                                        "type": "metric",
                                                        "attributes": {"name": "Viewed Product"},
                                                    }
                                                },
                                            },
                                        }
                                    ]
                                },
                            },
                        }
                    ]
                }
            },
        }
    }
    assert k.Events.bulk_create_events(bulk) is None
    metrics = k.Metrics.get_metrics()
    validate("get_metrics", 200, metrics)
    by_name = {m["attributes"]["name"]: m["id"] for m in metrics["data"]}
    assert set(by_name) == {"Placed Order", "Viewed Product"}
    validate("get_metric", 200, k.Metrics.get_metric(by_name["Placed Order"]))

    viewed = by_name["Viewed Product"]
    flt = f'and(equals(metric_id,"{viewed}"),greater-or-equal(datetime,2024-01-01T12:00:00Z))'
    page = k.Events.get_events(filter=flt, include=["metric", "profile"], page_size=2, sort="datetime")
    validate("get_events", 200, page)
    assert [e["attributes"]["datetime"] for e in page["data"]] == [
        "2024-01-01T12:00:00+00:00",
        "2024-01-01T13:00:00+00:00",
    ]
    assert {(i["type"], i["id"]) for i in page["included"]} == {
        ("metric", by_name["Viewed Product"]),
        ("profile", page["data"][0]["relationships"]["profile"]["data"]["id"]),
    }
    rest = k.Events.get_events(filter=flt, page_size=2, page_cursor=cursor_of(page))
    assert [e["attributes"]["datetime"] for e in rest["data"]] == [
        "2024-01-01T14:00:00+00:00",
        "2024-01-02T00:00:00+00:00",
    ]
    assert "next" not in rest["links"]
    f_id = sandbox.state.find("email", "f@example.com").id  # type: ignore[union-attr]
    for flt_p, n in (
        (f'equals(profile_id,"{f_id}")', 1),
        (f'and(equals(profile_id,"{f_id}"),equals(metric_id,"{viewed}"))', 1),
        (f'and(equals(profile_id,"{f_id}"),equals(metric_id,"{by_name["Placed Order"]}"))', 0),
    ):
        assert len(k.Events.get_events(filter=flt_p)["data"]) == n
    total = k.Events.get_events(filter=f'equals(metric_id,"{by_name["Viewed Product"]}")')["data"]
    assert len(total) == 6  # 4 + one unique_id event + one bulk event
    order = k.Events.get_events(filter=f'equals(metric_id,"{by_name["Placed Order"]}")')["data"][0]
    assert order["attributes"]["event_properties"] == {"product": "Mug", "$value": 12.5}
    one = k.Events.get_event(order["id"], include=["metric"])
    validate("get_event", 200, one)
    assert one["data"]["id"] == order["id"]
    desc = k.Events.get_events(sort="-datetime", page_size=1)["data"][0]
    assert desc["attributes"]["datetime"] == "2024-01-02T00:00:00+00:00"


def test_event_validation_errors(sandbox: Sandbox) -> None:
    # the SDK refuses these client-side, so they go out raw
    for body in (
        event_body("e@example.com", "X", "not a time"),
        event_body("e@example.com", "", "2024-01-01T00:00:00Z"),
        event_body("not-an-email", "X", "2024-01-01T00:00:00Z"),
    ):
        r = raw(sandbox, "POST", "/api/events", "create_event", body)
        assert (r.status_code, r.json()["errors"][0]["code"]) == (400, "invalid")
    assert not sandbox.state.events and not sandbox.state.metrics and not sandbox.state.profiles


def test_lists_create_members_and_paging(sandbox: Sandbox) -> None:
    k = sandbox.sdk()
    made = [
        k.Lists.create_list({"data": {"type": "list", "attributes": {"name": "Same"}}}) for _ in range(12)
    ]
    validate("create_list", 201, made[0])
    assert len({m["data"]["id"] for m in made}) == 12  # names need not be unique
    first = k.Lists.get_lists()
    validate("get_lists", 200, first)
    assert len(first["data"]) == 10
    second = k.Lists.get_lists(page_cursor=cursor_of(first))
    assert len(second["data"]) == 2 and "next" not in second["links"]
    lid = made[0]["data"]["id"]
    pids = [k.Profiles.create_profile(profile_body(f"m{i}@example.com"))["data"]["id"] for i in range(3)]
    ids_body = {"data": [{"type": "profile", "id": p} for p in pids]}
    assert k.Lists.add_profiles_to_list(lid, ids_body) is None
    got = k.Lists.get_list(lid, additional_fields_list=["profile_count"])
    validate("get_list", 200, got)
    assert got["data"]["attributes"]["profile_count"] == 3
    members = k.Lists.get_profiles_for_list(lid, page_size=2)
    validate("get_profiles_for_list", 200, members)
    assert len(members["data"]) == 2 and "joined_group_at" in members["data"][0]["attributes"]
    ids = k.Lists.get_profile_ids_for_list(lid)
    validate("get_profile_ids_for_list", 200, ids)
    assert {i["id"] for i in ids["data"]} == set(pids)
    assert k.Lists.remove_profiles_from_list(lid, {"data": [{"type": "profile", "id": pids[0]}]}) is None
    assert set(sandbox.state.lists[lid].members) == set(pids[1:])
    too_many = {"data": [{"type": "profile", "id": pids[0]}] * 1001}
    status, err = error_of("add_profiles_to_list", k.Lists.add_profiles_to_list, lid, too_many)
    assert (status, err["code"]) == (400, "invalid")
    unknown = {"data": [{"type": "profile", "id": "01NOSUCHPROFILE00000000000"}]}
    assert error_of("add_profiles_to_list", k.Lists.add_profiles_to_list, lid, unknown)[0] == 404


def test_inspection_and_reset(sandbox: Sandbox) -> None:
    k = sandbox.sdk()
    pid = k.Profiles.create_profile(profile_body("i@example.com"))["data"]["id"]
    r = requests.get(f"{sandbox.url}/_sandbox/klaviyo/profiles", params={"email": "I@example.com"}, timeout=5)
    assert r.status_code == 200 and r.json()["id"] == pid
    act = requests.post(f"{sandbox.url}/_sandbox/klaviyo/activity", json={"events": 3, "seed": 4}, timeout=5)
    assert act.status_code == 201 and len(act.json()["events"]) == 3
    assert requests.get(f"{sandbox.url}/_sandbox/klaviyo/stats", timeout=5).json()["events"] == 3
    assert requests.post(f"{sandbox.url}/_sandbox/klaviyo/reset", timeout=5).status_code == 200
    assert not sandbox.state.profiles
    assert error_of("get_profile", k.Profiles.get_profile, pid)[0] == 404
