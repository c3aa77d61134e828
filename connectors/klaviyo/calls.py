"""Every Klaviyo call segsync makes, through the official SDK, the rate budget and the one
retry policy; plus the connector's tunables (`KlaviyoOptions`).

`KlaviyoCalls.call(op, fn)` runs ``fn`` (one SDK call, usually followed by a shape check)
under `RetryPolicy.call` with the budget class and the idempotency of operation `op`
(`OPERATIONS`, keyed by the spec's operationId). `KlaviyoCalls.pages(op, fetch)` walks a
collection: ``fetch(cursor)`` is one page; the raw ``page[cursor]`` is read out of
``links.next`` by `connectors.paginate.KlaviyoNext` and handed back to the SDK, never the
URL (klaviyo-api 25.0.0 would send ``page[cursor]==...``, see QUIRKS.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from connectors.budget import ClassBudget, RateBudget
from connectors.classify import CallKind
from connectors.paginate import KlaviyoNext, pages
from connectors.retry import RetryPolicy
from connectors.sdk import klaviyo_client

__all__ = ["OPERATIONS", "KlaviyoCalls", "KlaviyoOptions"]

T = TypeVar("T")

# operationId -> (budget class of connectors.budget.KLAVIYO_LIMITS, call kind).
# Property sets, list add/remove and bulk imports of "set" rows are idempotent by
# construction; events carry a unique_id (the change's idempotency key), which Klaviyo uses
# to drop repeats, so resending one is safe too. Creating a list is not: names need not be
# unique, a resent create may make a second list. A second privacy-deletion request for the
# same profile deletes nothing more.
OPERATIONS: dict[str, tuple[str, CallKind]] = {
    "get_profiles": ("profiles", CallKind.READ),
    "update_profile": ("profiles", CallKind.IDEMPOTENT_WRITE),
    "bulk_import_profiles": ("profile_bulk_import", CallKind.IDEMPOTENT_WRITE),
    "get_bulk_import_profiles_job": ("profile_bulk_import", CallKind.READ),
    "get_errors_for_bulk_import_profiles_job": ("profile_bulk_import", CallKind.READ),
    "get_metrics": ("metrics", CallKind.READ),
    "get_events": ("events", CallKind.READ),
    "create_event": ("events", CallKind.IDEMPOTENT_WRITE),
    "bulk_create_events": ("event_bulk_create", CallKind.IDEMPOTENT_WRITE),
    "get_lists": ("lists_read", CallKind.READ),
    "create_list": ("list_create", CallKind.WRITE),
    "add_profiles_to_list": ("list_members", CallKind.IDEMPOTENT_WRITE),
    "remove_profiles_from_list": ("list_members", CallKind.IDEMPOTENT_WRITE),
    "request_profile_deletion": ("data_privacy", CallKind.IDEMPOTENT_WRITE),
}


@dataclass(frozen=True)
class KlaviyoOptions:
    """Tunables of the Klaviyo connector; defaults follow the spec's maxima (QUIRKS.md)."""

    profile_page_size: int = 100  # get_profiles max [SPEC]
    event_page_size: int = 1000  # get_events page[size] schema max; 200 if the server refuses
    profile_overlap_ms: int = 5 * 60_000  # re-read window behind the profile mark
    event_overlap_ms: int = 15 * 60_000  # events are ingested asynchronously: a wider window
    pull_workers: int = 4  # metrics pulled concurrently
    bulk_threshold: int = 50  # profiles per apply from which a bulk import job replaces PATCHes
    max_job_profiles: int = 10_000  # [SPEC] per bulk import job
    max_job_bytes: int = 5_000_000  # [SPEC] "5MB"; counted in decimal bytes to be safe
    max_profile_bytes: int = 100_000  # [SPEC] "100KB" per profile
    list_chunk: int = 1000  # [SPEC] profile ids per add/remove call
    push_workers: int = 4  # list membership calls in flight at once (the budget paces them)
    event_bulk_threshold: int = 10  # events per apply from which bulk_create_events is used
    max_bulk_events: int = 1000  # [SPEC] per bulk_create_events request
    job_poll_initial: float = 0.25  # seconds before the first job status poll
    job_poll_max: float = 5.0  # longest wait between polls
    job_timeout: float = 900.0  # give up waiting for a job (its rows become retryable)

    def __post_init__(self) -> None:
        if not 1 <= self.profile_page_size <= 100 or not 1 <= self.event_page_size <= 1000:
            raise ValueError("page sizes: profiles 1..100, events 1..1000")
        if not 1 <= self.list_chunk <= 1000 or not 1 <= self.max_bulk_events <= 1000:
            raise ValueError("list_chunk and max_bulk_events must be within 1..1000")
        if not 1 <= self.max_job_profiles <= 10_000 or self.bulk_threshold < 1:
            raise ValueError("max_job_profiles must be within 1..10000, bulk_threshold >= 1")
        if (
            min(self.profile_overlap_ms, self.event_overlap_ms) < 0
            or min(self.pull_workers, self.push_workers) < 1
        ):
            raise ValueError("overlaps must be >= 0, pull_workers and push_workers >= 1")


class KlaviyoCalls:
    """The SDK's resource APIs (built once: the SDK rebuilds them on every attribute access)
    bound to one rate budget and one retry policy."""

    def __init__(self, api_key: str, base_url: str, budget: RateBudget, policy: RetryPolicy) -> None:
        client = klaviyo_client(api_key, base_url, {"USE_DICTIONARY_FOR_RESPONSE_DATA": True})
        self.profiles: Any = client.Profiles
        self.events: Any = client.Events
        self.metrics: Any = client.Metrics
        self.lists: Any = client.Lists
        self.privacy: Any = client.Data_Privacy
        self.policy = policy
        self._budget = budget
        self._bound: dict[str, ClassBudget] = {}
        self.sent: dict[str, int] = {}  # operationId -> calls attempted through `call`
        self._lock = threading.Lock()

    def call(self, op: str, fn: Callable[[], T], what: str | None = None) -> T:
        """Run `fn` (one call of operation `op`) under the budget and the retry policy."""
        cls, kind = OPERATIONS[op]
        bound = self._bound.get(cls)
        if bound is None:
            bound = self._bound[cls] = self._budget.bind(cls)

        def counted() -> T:
            with self._lock:
                self.sent[op] = self.sent.get(op, 0) + 1
            return fn()

        return self.policy.call(counted, kind=kind, what=what or op, budget=bound)

    def pages(self, op: str, fetch: Callable[[str | None], T], what: str | None = None) -> Iterator[T]:
        """Every page of a collection; ``fetch(None)`` is the first."""
        return pages(lambda cursor: self.call(op, lambda: fetch(cursor), what), KlaviyoNext())
