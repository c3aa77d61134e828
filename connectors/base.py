"""The one small Protocol both provider connectors implement (composition, no base class).

Cursor discipline: a pull yields :class:`Page` objects; each page carries the records and the
cursor that is safe to store *after* those records are committed. Cursors are opaque strings
(JSON inside) owned by the connector that made them; the next pull re-reads a small look-back
window and the store dedupes by id.

Pushes are idempotent "set" operations described by :class:`connectors.records.Change`;
``apply`` never raises for a per-record problem: every change gets a
:class:`connectors.records.PushResult` (applied / rejected with its reason / retryable).

``request_deletion(kind, value)`` asks the provider to delete a person permanently (GDPR /
CCPA), named by its record id or by email, and returns a
:class:`connectors.records.DeletionResult` (done / rejected / retryable). A record that is
already gone counts as done. It raises only when the provider cannot be used at all
(:class:`connectors.errors.AuthError`, :class:`connectors.errors.QuotaExhausted`): a bad
token must not turn a deletion request into a rejected one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, Protocol, TypeVar

from connectors.records import Change, Contact, DeletionKind, DeletionResult, Event, Provider, PushResult

T = TypeVar("T")

FieldType = Literal["string", "number", "bool", "date", "datetime", "enumeration", "multi", "list"]


@dataclass(frozen=True)
class Page(Generic[T]):
    records: list[T]
    cursor: str | None  # store this only after ``records`` are committed


@dataclass(frozen=True)
class FieldSpec:
    """A destination field segsync manages. ``multi`` = multi-select (HubSpot checkbox
    enumeration ``a;b``, Klaviyo list property); ``enumeration`` = single-select."""

    name: str
    type: FieldType
    label: str = ""
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class SchemaSpec:
    fields: tuple[FieldSpec, ...] = ()
    lists: tuple[str, ...] = ()  # list names segsync keeps (created MANUAL when missing)
    group: str = "segsync"  # HubSpot property group


@dataclass(frozen=True)
class SchemaReport:
    created_fields: tuple[str, ...] = ()
    added_options: dict[str, tuple[str, ...]] = field(default_factory=dict)
    created_lists: tuple[str, ...] = ()
    list_ids: dict[str, str] = field(default_factory=dict)  # list name -> provider list id
    problems: tuple[str, ...] = ()  # e.g. "property x exists with type number, not string"


class Connector(Protocol):
    provider: Provider

    def pull_contacts(self, cursor: str | None, *, full: bool = False) -> Iterator[Page[Contact]]:
        """Contacts changed since ``cursor`` (all of them when ``full`` or no cursor)."""
        ...

    def pull_events(self, cursor: str | None) -> Iterator[Page[Event]]:
        """Events since ``cursor`` for the configured event types / metrics."""
        ...

    def ensure_schema(self, spec: SchemaSpec, *, dry_run: bool = False) -> SchemaReport:
        """Create what is missing; report (never coerce) what exists with the wrong shape."""
        ...

    def apply(self, changes: Sequence[Change]) -> list[PushResult]:
        """Send ``changes`` batched at the API's maxima; one result per change, in order."""
        ...

    def request_deletion(self, kind: DeletionKind, value: str) -> DeletionResult:
        """Request the permanent deletion of the person with record id / email ``value``."""
        ...
