"""Typed, frozen records exchanged between the connectors and the engine.

- `Contact` and `Event` are what a pull yields (provider-neutral; instants are int epoch
  milliseconds UTC, as everywhere in segsync).
- `Change` is one planned write to a destination (the plan is data: a pure function makes
  them, an executor sends them); `PushResult` is the provider's verdict on one change.
- `DeletionResult` is the provider's verdict on one privacy-deletion request (a person named
  by a record id or an email, ``Connector.request_deletion``).

Mapping fields (`properties`) are copied on construction and typed read-only, so a record
never changes after it was made, whatever the caller does with the dict it passed in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, TypeAlias

from connectors.errors import AmbiguousWrite, ConnectorError, RecordRejected, RetryableError

__all__ = [
    "Change",
    "ChangeOp",
    "Contact",
    "ContactRef",
    "DeletionKind",
    "DeletionResult",
    "DeletionStatus",
    "Event",
    "JsonValue",
    "Provider",
    "PushResult",
    "PushStatus",
]

Provider: TypeAlias = Literal["hubspot", "klaviyo"]
JsonValue: TypeAlias = "str | int | float | bool | list[JsonValue] | dict[str, JsonValue] | None"
_PROVIDERS = ("hubspot", "klaviyo")


def _check_provider(provider: str) -> None:
    if provider not in _PROVIDERS:
        raise ValueError(f"unknown provider {provider!r} (expected one of {', '.join(_PROVIDERS)})")


def _check_ms(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{name} must be int epoch milliseconds, got {type(value).__name__}")


def _freeze(record: object, name: str, value: Mapping[str, JsonValue]) -> None:
    object.__setattr__(record, name, dict(value))


@dataclass(frozen=True, slots=True)
class Contact:
    """A contact as a provider holds it: ids, the configured properties, last change."""

    provider: Provider
    provider_id: str
    email: str | None = None
    external_id: str | None = None
    properties: Mapping[str, JsonValue] = field(default_factory=dict, hash=False)
    updated_at: int | None = None  # epoch ms UTC of the provider's last modification
    archived: bool = False

    def __post_init__(self) -> None:
        _check_provider(self.provider)
        if not self.provider_id:
            raise ValueError("a contact needs its provider id")
        _check_ms("updated_at", self.updated_at)
        _freeze(self, "properties", self.properties)


@dataclass(frozen=True, slots=True)
class ContactRef:
    """Who an event belongs to: the provider's contact id, an email, or both."""

    provider_id: str | None = None
    email: str | None = None

    def __post_init__(self) -> None:
        if not self.provider_id and not self.email:
            raise ValueError("a contact reference needs a provider id or an email")


@dataclass(frozen=True, slots=True)
class Event:
    """One behavioural event; unique on (provider, provider_event_id)."""

    provider: Provider
    provider_event_id: str
    contact: ContactRef
    type: str
    ts: int  # epoch ms UTC
    value: float | None = None
    properties: Mapping[str, JsonValue] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _check_provider(self.provider)
        if not self.provider_event_id or not self.type:
            raise ValueError("an event needs its provider event id and type")
        _check_ms("ts", self.ts)
        _freeze(self, "properties", self.properties)


class ChangeOp(StrEnum):
    SET_FIELD = "set_field"  # target = property name, value = the new value (not None)
    UNSET_FIELD = "unset_field"  # target = property name, no value
    LIST_ADD = "list_add"  # target = list name or id, no value
    LIST_REMOVE = "list_remove"  # target = list name or id, no value
    EVENT = "event"  # target = event name, value = its properties (a JSON object)


@dataclass(frozen=True, slots=True)
class Change:
    """One planned, idempotent write to a destination record.

    `idempotency_key` defaults to a digest of everything else, so the same intended write
    always carries the same key (duplicates are recognisable) and two writes that differ in
    any way never share one.
    """

    destination: Provider
    record_id: str
    op: ChangeOp
    target: str
    value: JsonValue = None
    idempotency_key: str = ""

    def __post_init__(self) -> None:
        _check_provider(self.destination)
        object.__setattr__(self, "op", ChangeOp(self.op))
        if not self.record_id or not self.target:
            raise ValueError("a change needs a record id and a target")
        if self.op is ChangeOp.SET_FIELD and self.value is None:
            raise ValueError(f"set_field {self.target!r} needs a value (use unset_field to clear)")
        if self.op in (ChangeOp.UNSET_FIELD, ChangeOp.LIST_ADD, ChangeOp.LIST_REMOVE) and (
            self.value is not None
        ):
            raise ValueError(f"{self.op} takes no value")
        if self.op is ChangeOp.EVENT and not isinstance(self.value, dict | type(None)):
            raise ValueError("an event change's value is its properties object")
        if not self.idempotency_key:
            object.__setattr__(self, "idempotency_key", self.digest())

    def digest(self) -> str:
        """A stable digest of (destination, record, op, target, value)."""
        canonical = json.dumps(
            [self.destination, self.record_id, str(self.op), self.target, self.value],
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class PushStatus(StrEnum):
    APPLIED = "applied"  # the provider confirmed it
    REJECTED = "rejected"  # the provider refused it for `reason`; resending will not help
    RETRYABLE = "retryable"  # not applied (or not known to be): send again later


@dataclass(frozen=True, slots=True)
class PushResult:
    """The outcome of one `Change`, with the provider's request id when known."""

    change: Change
    status: PushStatus
    reason: str | None = None
    request_id: str | None = None

    def __post_init__(self) -> None:
        if (self.status is PushStatus.APPLIED) != (self.reason is None):
            raise ValueError("an applied result has no reason; any other result needs one")

    @property
    def record_id(self) -> str:
        return self.change.record_id

    @classmethod
    def applied(cls, change: Change, request_id: str | None = None) -> PushResult:
        return cls(change, PushStatus.APPLIED, None, request_id)

    @classmethod
    def rejected(cls, change: Change, reason: str, request_id: str | None = None) -> PushResult:
        return cls(change, PushStatus.REJECTED, reason, request_id)

    @classmethod
    def retryable(cls, change: Change, reason: str, request_id: str | None = None) -> PushResult:
        return cls(change, PushStatus.RETRYABLE, reason, request_id)

    @classmethod
    def from_error(cls, change: Change, error: ConnectorError) -> PushResult:
        """Retryable for retryable and ambiguous errors (the next run repairs them)."""
        reason = error.reason if isinstance(error, RecordRejected) else str(error)
        if isinstance(error, RetryableError | AmbiguousWrite):
            return cls.retryable(change, reason, error.request_id)
        return cls.rejected(change, reason, error.request_id)


DeletionKind: TypeAlias = Literal["id", "email"]  # how a deletion request names the person


class DeletionStatus(StrEnum):
    DONE = "done"  # the provider accepted the request (or the record was already gone)
    REJECTED = "rejected"  # the provider refused it for `reason`; resending will not help
    RETRYABLE = "retryable"  # not accepted (or not known to be): send again later


@dataclass(frozen=True, slots=True)
class DeletionResult:
    """The outcome of one privacy-deletion request, with the provider's request id when known."""

    status: DeletionStatus
    reason: str | None = None
    request_id: str | None = None

    def __post_init__(self) -> None:
        if (self.status is DeletionStatus.DONE) != (self.reason is None):
            raise ValueError("a done result has no reason; any other result needs one")

    @classmethod
    def done(cls, request_id: str | None = None) -> DeletionResult:
        return cls(DeletionStatus.DONE, None, request_id)

    @classmethod
    def rejected(cls, reason: str, request_id: str | None = None) -> DeletionResult:
        return cls(DeletionStatus.REJECTED, reason, request_id)

    @classmethod
    def retryable(cls, reason: str, request_id: str | None = None) -> DeletionResult:
        return cls(DeletionStatus.RETRYABLE, reason, request_id)

    @classmethod
    def from_error(cls, error: ConnectorError) -> DeletionResult:
        """Retryable for retryable and ambiguous errors, rejected for the rest."""
        reason = error.reason if isinstance(error, RecordRejected) else str(error)
        if isinstance(error, RetryableError | AmbiguousWrite):
            return cls.retryable(reason, error.request_id)
        return cls.rejected(reason, error.request_id)
