"""`KlaviyoConnector`: the `connectors.base.Connector` Protocol for Klaviyo.

```python
connector = KlaviyoConnector(api_key, base_url, metrics={"order_placed": ["Placed Order"]})
for page in connector.pull_contacts(cursor):
    store(page.records); cursor = page.cursor          # the cursor only after the commit
report = connector.ensure_schema(SchemaSpec(lists=("VIP",)))
results = connector.apply(changes)                    # one PushResult per change, in order
connector.request_deletion("email", "a@b.c")          # a DeletionResult (privacy.py)
```

Every call goes through the official SDK (``klaviyo-api``, SDK retries off), the shared
rate budget (``connectors.budget``, one class per endpoint family) and the one retry policy
(``connectors.retry``). Details: `pull` (cursors, metrics, event paging), `schema` (lists),
`push` and `bulk` (apply), `privacy` (request_deletion). Limits and oddities: ``QUIRKS.md``
next to this file.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from connectors.base import Page, SchemaReport, SchemaSpec
from connectors.budget import REGISTRY, RateBudget, klaviyo_spec
from connectors.gcpause import relaxed_pages
from connectors.klaviyo.calls import KlaviyoCalls, KlaviyoOptions
from connectors.klaviyo.privacy import request_deletion
from connectors.klaviyo.pull import MetricRef, pull_contacts, pull_events, resolve_metrics
from connectors.klaviyo.push import apply_changes
from connectors.klaviyo.schema import ensure_schema
from connectors.klaviyo.wire import PROVIDER
from connectors.records import Change, Contact, DeletionKind, DeletionResult, Event, Provider, PushResult
from connectors.retry import RetryPolicy
from connectors.sdk import KLAVIYO_URL

__all__ = ["KlaviyoConnector"]


class KlaviyoConnector:
    """Pull profiles and events, ensure lists, apply changes (see the module docstring).

    `metrics` maps each segsync event type to the Klaviyo metric names it is pulled from.
    `budget` defaults to the process-wide Klaviyo budget (``REGISTRY``), `retry` to the
    default policy; `clock` (monotonic seconds) and `sleep` pace bulk-import job polling.
    """

    provider: Provider = PROVIDER

    def __init__(
        self,
        api_key: str,
        base_url: str = KLAVIYO_URL,
        metrics: Mapping[str, Sequence[str]] | None = None,
        budget: RateBudget | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        options: KlaviyoOptions | None = None,
    ) -> None:
        self.options = options or KlaviyoOptions()
        self.metrics = {k: tuple(v) for k, v in (metrics or {}).items()}
        self.budget = budget or REGISTRY.get(klaviyo_spec())
        self.calls = KlaviyoCalls(api_key, base_url, self.budget, retry or RetryPolicy(PROVIDER))
        self._clock = clock
        self._sleep = sleep
        self._refs: list[MetricRef] | None = None
        self._refs_lock = threading.Lock()
        self.list_ids: dict[str, str] = {}  # list name -> id, from ensure_schema and lookups

    def metric_refs(self) -> list[MetricRef]:
        """The configured metrics resolved to ids (one ``get_metrics`` walk, then cached)."""
        with self._refs_lock:
            if self._refs is None:
                self._refs = resolve_metrics(self.calls, self.metrics)
            return list(self._refs)

    def pull_contacts(self, cursor: str | None, *, full: bool = False) -> Iterator[Page[Contact]]:
        return relaxed_pages(pull_contacts(self.calls, self.options, cursor, full))

    def pull_events(self, cursor: str | None) -> Iterator[Page[Event]]:
        refs = self.metric_refs()
        return relaxed_pages(pull_events(self.calls, self.options, refs, cursor))

    def ensure_schema(self, spec: SchemaSpec, *, dry_run: bool = False) -> SchemaReport:
        report = ensure_schema(self.calls, spec, dry_run)
        self.list_ids.update(report.list_ids)
        return report

    def apply(self, changes: Sequence[Change]) -> list[PushResult]:
        return apply_changes(self.calls, self.options, changes, self.list_ids, self._clock, self._sleep)

    def request_deletion(self, kind: DeletionKind, value: str) -> DeletionResult:
        return request_deletion(self.calls, kind, value)
