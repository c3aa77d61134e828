"""Acceptance: under seeded faults (10 % 429, 5 % 5xx, 2 % connection reset after the write was
applied, 1 % 207 partial failures) a push of 20,000 property changes and 20,000 list changes
ends with the stand-in's state equal to the intended state; every rejected change is one that
had to be rejected, with its reason; no contact property was ever written two different values.

Retries run on a fake clock (Retry-After and backoff cost no time); the stand-in's own rate
limits are off. A change left retryable is sent again by the next run, as segsync's
reconciling executor does (pushes are idempotent sets)."""

from __future__ import annotations

from collections import defaultdict

import pytest

from connectors.base import FieldSpec, SchemaSpec
from connectors.records import Change, ChangeOp, PushResult, PushStatus
from tests.hubspot_connector_support import connector, serving, start

N = 10_000
FAULTS = "429=0.10,5xx=0.05,reset_after=0.02,partial=0.01"
SPEC = SchemaSpec(fields=(FieldSpec("seg_tags", "multi", options=("vip", "churn", "new")),
                          FieldSpec("seg_score", "number")), lists=("Alpha", "Beta"))  # fmt: skip
TAGS = ("vip", "churn", "new", "vip;new")


def intended_changes() -> tuple[list[Change], set[int]]:
    """20,000 field and 20,000 list changes; the indexes of those HubSpot must refuse."""
    changes: list[Change] = []
    bad: set[int] = set()
    for i in range(1, N + 1):
        score: int | str = i * 3
        if i % 499 == 0:
            score = "n/a"  # not a number
            bad.add(len(changes))
        changes.append(Change("hubspot", str(i), ChangeOp.SET_FIELD, "seg_score", score))
        tag = TAGS[i % 4]
        if i % 997 == 0:
            tag = "platinum"  # not an option
            bad.add(len(changes))
        changes.append(Change("hubspot", str(i), ChangeOp.SET_FIELD, "seg_tags", tag))
    for i in range(1, N + 1):
        changes.append(Change("hubspot", str(i), ChangeOp.LIST_ADD, "Alpha"))
    for i in range(1, N // 2 + 1):
        changes.append(Change("hubspot", str(i), ChangeOp.LIST_ADD, "Beta"))
        changes.append(Change("hubspot", str(N // 2 + i), ChangeOp.LIST_REMOVE, "Beta"))
    for k in range(5):  # contacts that do not exist, among the field and the list changes
        bad.update((len(changes), len(changes) + 1))
        changes.append(Change("hubspot", str(N + 100 + k), ChangeOp.SET_FIELD, "seg_score", 1))
        changes.append(Change("hubspot", str(N + 200 + k), ChangeOp.LIST_ADD, "Alpha"))
    return changes, bad


@pytest.mark.slow  # about 7 s alone, more on a loaded machine
def test_a_push_under_faults_ends_in_the_intended_state() -> None:
    changes, bad = intended_changes()
    assert sum(c.op is ChangeOp.SET_FIELD for c in changes) == 2 * N + 5
    assert sum(c.op in (ChangeOp.LIST_ADD, ChangeOp.LIST_REMOVE) for c in changes) == 2 * N + 5
    for hs in serving(start(N)):
        hc = connector(hs)
        ids = hc.ensure_schema(SPEC).list_ids
        with hs.state.lock:  # Beta starts with the second half, which the push removes
            beta = hs.state.lists[int(ids["Beta"])]
            beta.members.update({cid: 0 for cid in range(N // 2 + 1, N + 1)})
            beta.touched(0)
        hs.record_history()
        hs.set_faults(FAULTS, seed=11)

        results = hc.apply(changes)
        runs = 1
        while runs < 4 and any(r.status is PushStatus.RETRYABLE for r in results):
            again = [i for i, r in enumerate(results) if r.status is PushStatus.RETRYABLE]
            for i, result in zip(again, hc.apply([changes[i] for i in again]), strict=True):
                results[i] = result
            runs += 1

        injected: dict[str, int] = defaultdict(int)
        for hit in hs.control("GET", "/_sandbox/faults")["injected"]:
            injected[hit["kind"]] += hit["count"]
        assert all(injected[k] > 0 for k in ("429", "5xx", "reset_after", "partial")), injected
        assert [r.change for r in results] == changes
        assert_reported(results, bad)
        assert_state(hs, changes, bad, ids)
        assert_written_once(hs)


def assert_reported(results: list[PushResult], bad: set[int]) -> None:
    rejected = {i for i, r in enumerate(results) if r.status is PushStatus.REJECTED}
    assert rejected == bad
    assert all(results[i].reason for i in rejected)
    assert {r.status for i, r in enumerate(results) if i not in bad} == {PushStatus.APPLIED}
    reasons = {results[i].change.record_id: str(results[i].reason) for i in bad}
    for record, reason in reasons.items():
        if int(record) > N + 150:
            assert reason == f"contact {record} does not exist in HubSpot (list 'Alpha')"
        elif int(record) > N:
            assert reason.startswith("OBJECT_NOT_FOUND")
        else:
            assert reason.startswith("VALIDATION_ERROR") and (
                "INVALID_DECIMAL" in reason or "INVALID_OPTION" in reason
            )


def assert_state(hs: object, changes: list[Change], bad: set[int], ids: dict[str, str]) -> None:
    state = hs.state  # type: ignore[attr-defined]
    with state.lock:
        fields = {(c.record_id, c.target): c.value for i, c in enumerate(changes)
                  if c.op is ChangeOp.SET_FIELD and i not in bad}  # fmt: skip
        for cid in range(1, N + 1):
            props = state.contacts[cid].props
            for target in ("seg_score", "seg_tags"):
                want = fields.get((str(cid), target))
                got = props.get(target)
                assert got == (None if want is None else str(want)), (cid, target)
        alpha = set(state.lists[int(ids["Alpha"])].members)
        beta = set(state.lists[int(ids["Beta"])].members)
    assert alpha == set(range(1, N + 1))
    assert beta == set(range(1, N // 2 + 1))


def assert_written_once(hs: object) -> None:
    values: dict[tuple[int, str], set[str | None]] = defaultdict(set)
    for change in hs.history:  # type: ignore[attr-defined]
        if change.kind == "contact.propertyChange":
            values[(change.object_id, change.property_name)].add(change.property_value)
    assert values, "the write history is empty"
    twice = {k: v for k, v in values.items() if len(v) > 1}
    assert twice == {}
