"""apply() against the HubSpot stand-in: batching, 207 mapped per record, bisection of a
whole-batch 400, upsert by email, list memberships, and run-stopping errors."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from connectors.base import FieldSpec, SchemaSpec
from connectors.records import Change, ChangeOp, PushStatus
from connectors.sdk import hubspot_client
from tests.hubspot_connector_support import Stand, connector, serving, start

SPEC = SchemaSpec(fields=(FieldSpec("seg_tags", "multi", options=("vip", "churn")),
                          FieldSpec("seg_score", "number")), lists=("VIP",))  # fmt: skip


@pytest.fixture(scope="module")
def stand() -> Iterator[Stand]:
    yield from serving(start(450))


@pytest.fixture
def hs(stand: Stand) -> Stand:
    stand.state.reset()
    stand.settings.batch_validation = "per_input"
    stand.faults.configure([], 0)
    connector(stand).ensure_schema(SPEC)
    stand.app.log.clear()
    stand.seen.clear()
    return stand


def setf(record: str, target: str, value: object) -> Change:
    return Change("hubspot", record, ChangeOp.SET_FIELD, target, value)  # type: ignore[arg-type]


def props(hs: Stand, key: str) -> dict[str, str]:
    return hs.contact(key)["properties"]  # type: ignore[no-any-return]


def test_changes_go_out_100_records_per_call_in_order(hs: Stand) -> None:
    changes = [setf(str(i), "seg_score", i) for i in range(1, 451)]
    changes += [setf(str(i), "seg_tags", ["vip", "churn"]) for i in range(1, 11)]
    changes += [Change("hubspot", "5", ChangeOp.UNSET_FIELD, "city")]
    results = connector(hs).apply(changes)
    assert [r.change for r in results] == changes
    assert {r.status for r in results} == {PushStatus.APPLIED}
    bodies = [json.loads(b)["inputs"] for b in hs.bodies("contacts.batch.update")]
    assert sorted(len(b) for b in bodies) == [50, 100, 100, 100, 100]  # 4 batches in flight: any order
    bodies.sort(key=lambda b: int(b[0]["id"]))
    assert props(hs, "7")["seg_score"] == "7" and props(hs, "7")["seg_tags"] == "vip;churn"
    assert "city" not in props(hs, "5")
    assert bodies[0][4] == {"id": "5", "properties": {"seg_score": "5", "seg_tags": "vip;churn", "city": ""}}


def test_a_207_is_mapped_back_record_by_record(hs: Stand) -> None:
    changes = [
        setf("1", "seg_score", 10),
        setf("99999", "seg_score", 1),  # no such contact
        setf("2", "seg_score", "many"),  # not a number
        setf("2", "seg_tags", "vip"),  # fine: sent again without the bad property
        setf("3", "seg_tags", "gold"),  # not an option
        setf("3", "nonexistent_prop", "x"),
        setf("4", "seg_tags", "churn"),
    ]
    results = connector(hs).apply(changes)
    status = [(r.status, r.reason) for r in results]
    assert status[0] == (PushStatus.APPLIED, None) and status[6] == (PushStatus.APPLIED, None)
    assert status[1][0] is PushStatus.REJECTED and "OBJECT_NOT_FOUND" in str(status[1][1])
    assert status[2][0] is PushStatus.REJECTED and "INVALID_DECIMAL" in str(status[2][1])
    assert status[3] == (PushStatus.APPLIED, None)
    assert {s[0] for s in status[4:6]} == {PushStatus.REJECTED}
    assert "INVALID_OPTION" in str(status[4][1]) and "PROPERTY_DOESNT_EXIST" in str(status[5][1])
    assert props(hs, "2")["seg_tags"] == "vip" and "seg_score" not in props(hs, "2")
    assert "seg_tags" not in props(hs, "3")
    assert len(hs.bodies("contacts.batch.update")) == 2  # the batch, then record 2 without seg_score


def test_a_whole_batch_400_is_bisected_and_the_rest_applied(hs: Stand) -> None:
    hs.settings.batch_validation = "whole_batch"
    changes = [setf(str(i), "seg_score", i) for i in range(1, 101)]
    changes[37] = setf("38", "seg_score", "not-a-number")
    results = connector(hs).apply(changes)
    rejected = [r for r in results if r.status is PushStatus.REJECTED]
    assert [r.change for r in rejected] == [changes[37]]
    assert "400" in str(rejected[0].reason) and "not a valid number" in str(rejected[0].reason)
    assert all(r.status is PushStatus.APPLIED for r in results if r is not rejected[0])
    assert props(hs, "100")["seg_score"] == "100" and "seg_score" not in props(hs, "38")
    statuses = [e["status"] for e in hs.log("contacts.batch.update")]
    assert statuses.count(400) <= 8 and statuses.count(200) <= 8  # about 2 * log2(100) calls


def test_a_400_isolated_to_a_record_with_several_fields_is_split_per_field(hs: Stand) -> None:
    hs.settings.batch_validation = "whole_batch"
    results = connector(hs).apply([setf("9", "seg_score", "x"), setf("9", "seg_tags", "vip")])
    assert [r.status for r in results] == [PushStatus.REJECTED, PushStatus.APPLIED]
    assert props(hs, "9")["seg_tags"] == "vip"


@pytest.mark.parametrize("create_missing", [True, False])
def test_contacts_by_email_are_created_only_when_configured(hs: Stand, create_missing: bool) -> None:
    changes = [setf("New.Person@Example.com", "seg_score", 3), setf("person1@example.com", "seg_score", 4)]
    results = connector(hs, create_missing=create_missing).apply(changes)
    assert results[1].status is PushStatus.APPLIED and props(hs, "person1@example.com")["seg_score"] == "4"
    route = "contacts.batch.upsert" if create_missing else "contacts.batch.update"
    assert len(hs.bodies(route)) == 1
    if create_missing:
        assert results[0].status is PushStatus.APPLIED
        assert props(hs, "new.person@example.com")["seg_score"] == "3"
    else:
        assert results[0].status is PushStatus.REJECTED and "OBJECT_NOT_FOUND" in str(results[0].reason)


def test_list_memberships_are_chunked_and_missing_records_rejected(hs: Stand) -> None:
    hc = connector(hs, list_chunk=100)
    adds = [Change("hubspot", str(i), ChangeOp.LIST_ADD, "VIP") for i in range(1, 251)]
    others = [Change("hubspot", "99999", ChangeOp.LIST_ADD, "VIP"),
              Change("hubspot", "abc@example.com", ChangeOp.LIST_ADD, "VIP"),
              Change("hubspot", "5", ChangeOp.LIST_ADD, "No such list")]  # fmt: skip
    results = hc.apply(adds + others)
    assert all(r.status is PushStatus.APPLIED for r in results[:250])
    assert [r.status for r in results[250:]] == [PushStatus.REJECTED] * 3
    assert "does not exist" in str(results[250].reason) and "record id" in str(results[251].reason)
    assert "no HubSpot list named 'No such list'" in str(results[252].reason)
    members = hs.control("GET", "/_sandbox/hubspot/lists/VIP")["members"]
    assert members == [str(i) for i in range(1, 251)]
    assert [len(json.loads(b)) for b in hs.bodies("lists.memberships.add")] == [100, 100, 51]
    removes = [Change("hubspot", str(i), ChangeOp.LIST_REMOVE, "VIP") for i in range(1, 11)]
    mixed = [*removes, Change("hubspot", "300", ChangeOp.LIST_ADD, "VIP")]
    assert {r.status for r in hc.apply(mixed)} == {PushStatus.APPLIED}
    members = hs.control("GET", "/_sandbox/hubspot/lists/VIP")["members"]
    assert members == [str(i) for i in range(11, 251)] + ["300"]
    body = json.loads(hs.bodies("lists.memberships.add_and_remove")[0])
    assert body == {"recordIdsToAdd": ["300"], "recordIdsToRemove": [str(i) for i in range(1, 11)]}


def test_a_later_change_to_the_same_field_supersedes_an_earlier_one(hs: Stand) -> None:
    changes = [setf("1", "seg_score", 1), setf("1", "seg_score", 2),
               Change("hubspot", "1", ChangeOp.LIST_ADD, "VIP"),
               Change("hubspot", "1", ChangeOp.LIST_REMOVE, "VIP")]  # fmt: skip
    results = connector(hs).apply(changes)
    assert [r.status for r in results] == [PushStatus.REJECTED, PushStatus.APPLIED] * 2
    assert "superseded" in str(results[0].reason)
    assert props(hs, "1")["seg_score"] == "2"
    assert json.loads(hs.bodies("contacts.batch.update")[0])["inputs"] == [
        {"id": "1", "properties": {"seg_score": "2"}}
    ]


def test_a_bad_token_stops_the_push_and_leaves_everything_retryable(hs: Stand) -> None:
    hc = connector(hs)
    hc.calls.client = hubspot_client("pat-wrong", hs.url)  # a token the account does not know
    changes = [setf(str(i), "seg_score", 1) for i in range(1, 451)]  # 5 batches
    changes.append(Change("hubspot", "1", ChangeOp.LIST_ADD, "VIP"))
    results = hc.apply(changes)
    assert {r.status for r in results} == {PushStatus.RETRYABLE}
    assert "401" in str(results[0].reason) and "pat-wrong" not in str(results[0].reason)
    # stopped at the first refusal: only the batches already in flight (4 workers) were sent
    assert 1 <= len(hs.log("contacts.batch.update")) <= 4 and not hs.log("lists.memberships.*")


def test_values_hubspot_cannot_hold_are_rejected_before_sending(hs: Stand) -> None:
    results = connector(hs).apply([setf("1", "seg_score", {"a": 1}), setf("2", "city", True)])
    assert results[0].status is PushStatus.REJECTED and "not {" in str(results[0].reason)
    assert results[1].status is PushStatus.APPLIED
    assert json.loads(hs.bodies("contacts.batch.update")[0])["inputs"] == [
        {"id": "2", "properties": {"city": "true"}}
    ]
