"""Frozen typed records: validation, immutability, idempotency keys, push results."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from connectors.errors import AmbiguousWrite, AuthError, RateLimited, RecordRejected
from connectors.records import Change, ChangeOp, Contact, ContactRef, Event, PushResult, PushStatus


def test_contact_is_frozen_and_owns_its_properties() -> None:
    props: dict[str, Any] = {"plan": "pro"}
    contact = Contact("hubspot", "101", email="a@example.com", properties=props, updated_at=1_700_000_000_000)
    props["plan"] = "free"
    assert contact.properties == {"plan": "pro"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        contact.email = "b@example.com"  # type: ignore[misc]
    assert not contact.archived


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"provider": "salesforce", "provider_id": "1"}, ValueError),
        ({"provider": "hubspot", "provider_id": ""}, ValueError),
        ({"provider": "hubspot", "provider_id": "1", "updated_at": 1.7e12}, TypeError),
        ({"provider": "hubspot", "provider_id": "1", "updated_at": True}, TypeError),
    ],
)
def test_contact_validation(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        Contact(**kwargs)


def test_event_needs_a_contact_reference_and_ms() -> None:
    ref = ContactRef(email="a@example.com")
    event = Event("klaviyo", "evt-1", ref, "Placed Order", 1_700_000_000_000, value=42.5)
    assert event.contact.provider_id is None and event.value == 42.5
    with pytest.raises(ValueError, match="provider id or an email"):
        ContactRef()
    with pytest.raises(TypeError, match="milliseconds"):
        Event("klaviyo", "evt-1", ref, "Placed Order", "2024-01-01")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("op", "value", "ok"),
    [
        (ChangeOp.SET_FIELD, "vip", True),
        (ChangeOp.SET_FIELD, None, False),
        (ChangeOp.UNSET_FIELD, None, True),
        (ChangeOp.UNSET_FIELD, "x", False),
        (ChangeOp.LIST_ADD, None, True),
        (ChangeOp.LIST_REMOVE, "x", False),
        (ChangeOp.EVENT, {"segment": "vip"}, True),
        (ChangeOp.EVENT, "vip", False),
        ("list_add", None, True),  # a plain string op is coerced
    ],
)
def test_change_op_and_value_agree(op: ChangeOp, value: Any, ok: bool) -> None:
    if ok:
        change = Change("hubspot", "101", op, "segments", value)
        assert isinstance(change.op, ChangeOp)
    else:
        with pytest.raises(ValueError):
            Change("hubspot", "101", op, "segments", value)


def test_idempotency_key_is_stable_and_content_addressed() -> None:
    a = Change("klaviyo", "01H", ChangeOp.SET_FIELD, "tier", {"b": 1, "a": 2})
    b = Change("klaviyo", "01H", ChangeOp.SET_FIELD, "tier", {"a": 2, "b": 1})
    c = Change("klaviyo", "01H", ChangeOp.SET_FIELD, "tier", {"a": 2, "b": 2})
    assert a.idempotency_key == b.idempotency_key != c.idempotency_key
    assert len(a.idempotency_key) == 32
    assert a.idempotency_key == a.digest()
    given = Change("klaviyo", "01H", ChangeOp.LIST_ADD, "VIP", idempotency_key="outbox-17")
    assert given.idempotency_key == "outbox-17"
    add, remove = (Change("hubspot", "1", op, "VIP") for op in (ChangeOp.LIST_ADD, ChangeOp.LIST_REMOVE))
    assert add.idempotency_key != remove.idempotency_key


def test_push_results() -> None:
    change = Change("hubspot", "101", ChangeOp.SET_FIELD, "tier", "gold")
    assert PushResult.applied(change, "c-1").status is PushStatus.APPLIED
    assert PushResult.applied(change).record_id == "101"
    with pytest.raises(ValueError):
        PushResult(change, PushStatus.REJECTED)
    with pytest.raises(ValueError):
        PushResult(change, PushStatus.APPLIED, reason="?")


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        (RecordRejected("hubspot", "101", "BAD_OPTION", request_id="c-2"), PushStatus.REJECTED, "BAD_OPTION"),
        (AuthError("hubspot", 403, "c-2", "missing scope"), PushStatus.REJECTED, "hubspot: missing scope"),
        (RateLimited("hubspot", 429, "c-2", "slow down", 1.0), PushStatus.RETRYABLE, "hubspot: slow down"),
        (AmbiguousWrite("hubspot", None, "c-2", "reset"), PushStatus.RETRYABLE, "hubspot: reset"),
    ],
)
def test_push_result_from_error(error: Any, status: PushStatus, reason: str) -> None:
    change = Change("hubspot", "101", ChangeOp.SET_FIELD, "tier", "gold")
    result = PushResult.from_error(change, error)
    assert result.status is status
    assert result.reason is not None and result.reason.startswith(reason)
    assert result.request_id == "c-2"
