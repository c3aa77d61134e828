"""Klaviyo pushes against the sandbox through klaviyo-api: PATCH and unset, bulk import jobs
with their errors mapped back, list membership chunks, lists by name, transition events."""

from __future__ import annotations

import json

import pytest

from connectors.base import FieldSpec, SchemaSpec
from connectors.records import Change, ChangeOp, PushStatus
from connectors.sandbox import Sandbox
from connectors.sandbox.server import Request, Route
from tests.test_klaviyo_connector_support import FakeClock, clock, connector, routes, sb

__all__ = ["clock", "sb"]


def _ids(sb: Sandbox, n: int) -> list[str]:
    return sorted(sb.klaviyo.state.profiles)[:n]


def _props(sb: Sandbox, pid: str) -> dict[str, object]:
    return dict(sb.klaviyo.state.profiles[pid].properties)


def _change(pid: str, op: ChangeOp, target: str, value: object = None) -> Change:
    return Change("klaviyo", pid, op, target, value)  # type: ignore[arg-type]


def test_small_sets_patch_each_profile_with_sets_and_unsets(sb: Sandbox, clock: FakeClock) -> None:
    a, b = _ids(sb, 2)
    assert "lifecycle_stage" in _props(sb, a)
    changes = [
        _change(a, ChangeOp.SET_FIELD, "segment", "vip"),
        _change(a, ChangeOp.UNSET_FIELD, "lifecycle_stage"),
        _change(b, ChangeOp.SET_FIELD, "score", 41),
        _change(b, ChangeOp.SET_FIELD, "score", 42),  # the last change of a property wins
        _change(b, ChangeOp.SET_FIELD, "first_name", "Bea"),  # Klaviyo's own field
        _change("no-such-profile", ChangeOp.SET_FIELD, "segment", "vip"),
    ]
    results = connector(sb, clock).apply(changes)
    assert [r.change for r in results] == changes
    assert [r.status for r in results] == [PushStatus.APPLIED] * 5 + [PushStatus.REJECTED]
    assert "does not exist" in (results[5].reason or "") and results[5].request_id
    assert _props(sb, a).get("segment") == "vip" and "lifecycle_stage" not in _props(sb, a)
    assert _props(sb, b)["score"] == 42 and "first_name" not in _props(sb, b)
    assert sb.klaviyo.state.profiles[b].attrs["first_name"] == "Bea"
    assert len(routes(sb, "update_profile")) == 3 and not routes(sb, "bulk_import_profiles")


def test_large_sets_use_bulk_import_and_map_errors_back(sb: Sandbox, clock: FakeClock) -> None:
    ids = _ids(sb, 30)
    changes = [_change(pid, ChangeOp.SET_FIELD, "segment", f"s{i}") for i, pid in enumerate(ids)]
    changes[7] = _change(ids[7], ChangeOp.SET_FIELD, "email", "not-an-email")
    changes.append(_change("ghost", ChangeOp.SET_FIELD, "segment", "x"))
    results = connector(sb, clock, bulk_threshold=10, max_job_profiles=12).apply(changes)
    bad = {r.record_id: r.reason or "" for r in results if r.status is PushStatus.REJECTED}
    assert set(bad) == {ids[7], "ghost"}
    assert "Invalid email" in bad[ids[7]] and "does not exist" in bad["ghost"]
    assert sum(r.status is PushStatus.APPLIED for r in results) == 29
    assert all(_props(sb, pid)["segment"] == f"s{i}" for i, pid in enumerate(ids) if i != 7)
    assert len(sb.klaviyo.state.jobs) == len(routes(sb, "bulk_import_profiles")) == 3  # ceil(31/12)
    assert not routes(sb, "update_profile")


def test_bulk_rows_over_the_profile_size_limit_are_rejected_locally(sb: Sandbox, clock: FakeClock) -> None:
    ids = _ids(sb, 3)
    changes = [
        _change(pid, ChangeOp.SET_FIELD, "note", "x" * (200 if i else 5000)) for i, pid in enumerate(ids)
    ]
    results = connector(sb, clock, bulk_threshold=2, max_profile_bytes=1000).apply(changes)
    assert [r.status for r in results] == [PushStatus.REJECTED, PushStatus.APPLIED, PushStatus.APPLIED]
    assert "bulk import accepts at most 1000" in (results[0].reason or "")


def _make_profiles(sb: Sandbox, n: int) -> list[str]:
    state = sb.klaviyo.state
    with state.lock:
        return [state.create_profile({"email": f"bulk{i}@example.com"}).id for i in range(n)]


def test_list_membership_goes_in_chunks_of_1000(sb: Sandbox, clock: FakeClock) -> None:
    ids = _make_profiles(sb, 2500)
    conn = connector(sb, clock)
    report = conn.ensure_schema(SchemaSpec(lists=("VIP",)))
    list_id = report.list_ids["VIP"]
    results = conn.apply([_change(pid, ChangeOp.LIST_ADD, "VIP") for pid in ids])
    assert all(r.status is PushStatus.APPLIED for r in results)
    assert set(sb.klaviyo.state.lists[list_id].members) == set(ids)
    assert [e.status for e in routes(sb, "add_profiles_to_list")] == [204, 204, 204]
    results = conn.apply([_change(pid, ChangeOp.LIST_REMOVE, list_id) for pid in ids[:1500]])
    assert all(r.status is PushStatus.APPLIED for r in results)
    assert set(sb.klaviyo.state.lists[list_id].members) == set(ids[1500:])
    assert len(routes(sb, "remove_profiles_from_list")) == 2


def test_an_unknown_profile_in_a_list_chunk_is_rejected_alone(sb: Sandbox, clock: FakeClock) -> None:
    ids = _ids(sb, 5)
    conn = connector(sb, clock)
    list_id = conn.ensure_schema(SchemaSpec(lists=("Churn",))).list_ids["Churn"]
    changes = [_change(pid, ChangeOp.LIST_ADD, "Churn") for pid in ids]
    changes.insert(2, _change("ghost", ChangeOp.LIST_ADD, "Churn"))
    results = conn.apply(changes)
    assert [r.status for r in results].count(PushStatus.REJECTED) == 1
    assert results[2].status is PushStatus.REJECTED and "ghost" in (results[2].reason or "")
    assert set(sb.klaviyo.state.lists[list_id].members) == set(ids)
    assert [e.status for e in routes(sb, "add_profiles_to_list")] == [404, 204]


def test_lists_are_found_or_created_by_name(sb: Sandbox, clock: FakeClock) -> None:
    state = sb.klaviyo.state
    with state.lock:
        oldest = state.create_list("Twice", ms=1_000)
        newer = state.create_list("Twice", ms=2_000)
    conn = connector(sb, clock)
    spec = SchemaSpec(fields=(FieldSpec("segment", "string"), FieldSpec("email", "number")),
                      lists=("Twice", "Fresh"))  # fmt: skip
    dry = conn.ensure_schema(spec, dry_run=True)
    assert dry.created_lists == ("Fresh",) and "Fresh" not in dry.list_ids and not routes(sb, "create_list")
    report = conn.ensure_schema(spec)
    assert report.list_ids["Twice"] == oldest.id
    assert report.created_lists == ("Fresh",) and state.lists[report.list_ids["Fresh"]].name == "Fresh"
    assert any(newer.id in p and "oldest" in p for p in report.problems)
    assert any("'email'" in p and "number" in p for p in report.problems)
    again = conn.ensure_schema(spec)
    assert again.created_lists == () and again.list_ids == report.list_ids
    assert len(routes(sb, "create_list")) == 1


def test_list_targets_given_by_name_are_looked_up_without_ensure_schema(
    sb: Sandbox, clock: FakeClock
) -> None:
    state = sb.klaviyo.state
    with state.lock:
        lst = state.create_list("Winback")
    pid = _ids(sb, 1)[0]
    results = connector(sb, clock).apply([_change(pid, ChangeOp.LIST_ADD, "Winback")])
    assert results[0].status is PushStatus.APPLIED and pid in lst.members


@pytest.mark.parametrize("bulk", [False, True])
def test_transition_events_are_created_once(sb: Sandbox, clock: FakeClock, bulk: bool) -> None:
    ids = _ids(sb, 4)
    changes = [_change(pid, ChangeOp.EVENT, "Entered Segment", {"segment": "vip", "n": i})
               for i, pid in enumerate(ids)]  # fmt: skip
    changes.insert(1, _change("ghost", ChangeOp.EVENT, "Entered Segment", {"segment": "vip"}))
    conn = connector(sb, clock, event_bulk_threshold=2 if bulk else 100)
    state = sb.klaviyo.state
    before = len(state.events)
    for _ in range(2):  # the second apply is a resend: unique_id keeps it from counting twice
        results = conn.apply(changes)
        assert [r.status for r in results].count(PushStatus.APPLIED) == 4
        assert results[1].status is PushStatus.REJECTED and "ghost" in (results[1].reason or "")
    assert len(state.events) == before + 4
    metric = state.metrics[state.metric_by_name["Entered Segment"]]
    props = [
        state.events.properties(p) for p in range(len(state.events)) if state.events.metric[p] == metric.index
    ]
    assert sorted(p["n"] for p in props) == [0, 1, 2, 3]
    assert bool(routes(sb, "bulk_create_events")) is bulk and bool(routes(sb, "create_event")) is not bulk


def test_a_change_for_another_provider_is_rejected(sb: Sandbox, clock: FakeClock) -> None:
    change = Change("hubspot", "1", ChangeOp.SET_FIELD, "segment", "vip")
    [result] = connector(sb, clock).apply([change])
    assert result.status is PushStatus.REJECTED and "hubspot" in (result.reason or "")


def test_an_add_and_a_remove_of_one_membership_send_only_the_last(sb: Sandbox, clock: FakeClock) -> None:
    """Calls for different (list, op) groups run concurrently, so an add and a remove of one
    membership in the same batch could land in either order: only the last op is sent."""
    ids = _ids(sb, 4)
    conn = connector(sb, clock, push_workers=4)
    list_id = conn.ensure_schema(SchemaSpec(lists=("L",))).list_ids["L"]
    added: list[str] = []

    def record_adds(req: Request, route: Route) -> None:
        if route.name == "add_profiles_to_list":
            added.extend(item["id"] for item in json.loads(req.body)["data"])

    sb.klaviyo.app.guards.insert(0, record_adds)
    changes = [
        *(_change(pid, ChangeOp.LIST_ADD, "L") for pid in ids),
        _change(ids[0], ChangeOp.LIST_REMOVE, "L"),
        _change(ids[1], ChangeOp.LIST_REMOVE, "L"),
    ]
    results = conn.apply(changes)
    assert [r.status for r in results] == [PushStatus.APPLIED] * len(changes)
    assert sorted(added) == sorted(ids[2:])
    assert set(sb.klaviyo.state.lists[list_id].members) == set(ids[2:])
