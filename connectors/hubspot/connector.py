"""`HubSpotConnector`: the `connectors.base.Connector` Protocol for HubSpot, composed of small
parts that share one `HubSpotCalls` (SDK client, retry policy, rate budget):

- `ContactPuller` (``contacts.py``): full listing, then ``lastmodifieddate`` search;
- `EventPuller` (``events.py``): marketing-email events (legacy v1) and unified events;
- `SchemaManager` (``schema.py``): property group, properties, options, MANUAL lists;
- `PropertyPusher` (``push.py``) and `MembershipPusher` (``memberships.py``): ``apply``;
- ``privacy.py``: ``request_deletion`` (GDPR delete by record id or email).

``apply(changes)`` returns one `PushResult` per change, in order. A per-record problem never
raises and never stops the batch; a bad token or an exhausted daily quota stops sending, and
every change not settled by then is returned retryable with that reason (the next run resends
it; pushes are idempotent sets).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from connectors.base import Page, SchemaReport, SchemaSpec
from connectors.budget import RateBudget
from connectors.gcpause import relaxed_pages
from connectors.hubspot.batch import Stop
from connectors.hubspot.calls import HubSpotCalls
from connectors.hubspot.contacts import SEARCH_CAP, ContactPuller
from connectors.hubspot.events import DAY_MS, EventPuller
from connectors.hubspot.memberships import LIST_CHUNK, MembershipPusher
from connectors.hubspot.privacy import request_deletion
from connectors.hubspot.push import PropertyPusher
from connectors.hubspot.schema import SchemaManager
from connectors.records import (
    Change,
    ChangeOp,
    Contact,
    DeletionKind,
    DeletionResult,
    Event,
    Provider,
    PushResult,
)
from connectors.retry import RetryPolicy
from connectors.sdk import HUBSPOT_URL

__all__ = ["DEFAULT_EVENT_TYPES", "HubSpotConnector", "wall_clock_ms"]

LOG = logging.getLogger("segsync.connectors.hubspot")

# HubSpot email event type -> segsync event type, when the config maps none
DEFAULT_EVENT_TYPES: Mapping[str, str] = {
    "DELIVERED": "email_delivered",
    "OPEN": "email_opened",
    "CLICK": "email_clicked",
    "BOUNCE": "email_bounced",
    "UNSUBSCRIBED": "email_unsubscribed",
}
_FIELD_OPS = (ChangeOp.SET_FIELD, ChangeOp.UNSET_FIELD)
_LIST_OPS = (ChangeOp.LIST_ADD, ChangeOp.LIST_REMOVE)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class HubSpotConnector:
    """Pull contacts and events from, and push fields and list memberships to, one account."""

    provider: Provider = "hubspot"

    def __init__(
        self,
        token: str,
        base_url: str = HUBSPOT_URL,
        properties: Sequence[str] = (),
        email_events: bool = True,
        unified_events: bool = False,
        budget: RateBudget | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], int] = wall_clock_ms,
        *,
        event_types: Mapping[str, str] | None = None,
        create_missing: bool = False,
        look_back_ms: int = 5 * 60_000,
        event_overlap_ms: int = 60 * 60_000,
        event_slice_ms: int = DAY_MS,
        list_chunk: int = LIST_CHUNK,
        search_cap: int = SEARCH_CAP,
        push_workers: int = 4,
    ) -> None:
        """`clock` is the wall clock in epoch ms (the end of each event pull, the start of a
        full listing); `budget` is shared by every connector of the same account."""
        self.calls = HubSpotCalls(token, base_url, budget=budget, retry=retry)
        self.schema = SchemaManager(self.calls)
        self._contacts = ContactPuller(self.calls, properties, look_back_ms=look_back_ms, clock=clock,
                                       search_cap=search_cap)  # fmt: skip
        self._events = EventPuller(
            self.calls, DEFAULT_EVENT_TYPES if event_types is None else event_types,
            email_events=email_events, unified_events=unified_events, overlap_ms=event_overlap_ms,
            clock=clock, slice_ms=event_slice_ms,
        )  # fmt: skip
        self._fields = PropertyPusher(self.calls, create_missing=create_missing, workers=push_workers,
                                      max_rounds=self.calls.retry.settings.max_attempts)  # fmt: skip
        self._members = MembershipPusher(self.calls, self.schema, chunk=list_chunk)

    def pull_contacts(self, cursor: str | None, *, full: bool = False) -> Iterator[Page[Contact]]:
        return relaxed_pages(self._contacts.pull(cursor, full=full))

    def pull_events(self, cursor: str | None) -> Iterator[Page[Event]]:
        return relaxed_pages(self._events.pull(cursor))

    def ensure_schema(self, spec: SchemaSpec, *, dry_run: bool = False) -> SchemaReport:
        return self.schema.ensure(spec, dry_run=dry_run)

    def apply(self, changes: Sequence[Change]) -> list[PushResult]:
        results: dict[int, PushResult] = {}
        fields: list[tuple[int, Change]] = []
        members: list[tuple[int, Change]] = []
        for idx, change in enumerate(changes):
            if change.destination != "hubspot":
                results[idx] = PushResult.rejected(change, f"a {change.destination} change sent to HubSpot")
            elif change.op in _FIELD_OPS:
                fields.append((idx, change))
            elif change.op in _LIST_OPS:
                members.append((idx, change))
            else:
                results[idx] = PushResult.rejected(
                    change, f"the HubSpot connector does not write {change.op}"
                )
        try:
            self._fields.push(fields, results)
            self._members.push(members, results)
        except Stop as stop:
            LOG.error("hubspot: stopped pushing: %s", stop.error)
            for idx, change in enumerate(changes):
                if idx not in results:
                    results[idx] = PushResult.retryable(change, str(stop.error), stop.error.request_id)
        return [results[idx] for idx in range(len(changes))]

    def request_deletion(self, kind: DeletionKind, value: str) -> DeletionResult:
        return request_deletion(self.calls, kind, value)

    def close(self) -> None:
        self.calls.close()
