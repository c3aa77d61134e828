"""The executor: sends what the outbox holds, through the connectors, and records the verdicts.

::

    push_pending(engine, connectors, run_id, trigger="schedule") -> PushSummary

For each destination with a connector: claim a batch of due items (``sync.outbox.claim``),
split it per operation (field writes, list memberships, events) and hand each part to
``connector.apply`` in one call (the connector batches at the API's maxima: HubSpot 100
records per batch update, Klaviyo bulk jobs, 1,000 list ids per call), then settle the
results in one transaction: acknowledged values and the audit entry only for what the
provider confirmed; retryable results back to pending with a back-off, or dead after
``max_attempts``; rejected ones dead with their reason. Each item is tried at most once per
call (only items due when the call started are claimed).

A :class:`~connectors.errors.ConnectorError` raised out of ``apply`` (bad token, exhausted
quota) stops that destination: its claimed items go back to pending unchanged and the error
is reported in the summary. Logs show hashed contact keys only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine

from connectors.base import Connector
from connectors.errors import ConnectorError
from connectors.records import ChangeOp, PushResult
from sync import outbox
from sync.audit import hash_key

LOG = logging.getLogger("segsync.sync.executor")
BATCH = 2000  # items claimed per round: a multiple of HubSpot's 100 and Klaviyo's 1,000
_KINDS: dict[ChangeOp, int] = {
    ChangeOp.SET_FIELD: 0, ChangeOp.UNSET_FIELD: 0, ChangeOp.LIST_ADD: 1, ChangeOp.LIST_REMOVE: 1,
    ChangeOp.EVENT: 2,
}


def wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class DestinationSummary:
    applied: int = 0
    failed: int = 0  # retryable: will be sent again
    dead: int = 0
    calls: int = 0  # connector.apply calls
    error: str | None = None  # what stopped this destination


@dataclass
class PushSummary:
    destinations: dict[str, DestinationSummary] = field(default_factory=dict)

    @property
    def applied(self) -> int:
        return sum(d.applied for d in self.destinations.values())

    @property
    def failed(self) -> int:
        return sum(d.failed for d in self.destinations.values())

    @property
    def dead(self) -> int:
        return sum(d.dead for d in self.destinations.values())

    @property
    def ok(self) -> bool:
        return all(d.failed == d.dead == 0 and d.error is None for d in self.destinations.values())

    def to_json(self) -> dict[str, object]:
        return {name: vars(d) for name, d in self.destinations.items()}


def _parts(items: Sequence[outbox.Item]) -> list[list[outbox.Item]]:
    """Items split per kind of operation, each sorted by (target, record)."""
    groups: dict[int, list[outbox.Item]] = {}
    for item in items:
        groups.setdefault(_KINDS[item.change.op], []).append(item)
    return [sorted(groups[k], key=lambda i: (i.change.target, i.change.record_id, i.id))
            for k in sorted(groups)]


def _apply(connector: Connector, part: Sequence[outbox.Item]) -> list[tuple[outbox.Item, PushResult]]:
    changes = [i.change for i in part]
    results = connector.apply(changes)
    if len(results) != len(changes):
        LOG.warning("%s.apply returned %d results for %d changes; the rest count as retryable",
                    connector.provider, len(results), len(changes))
    out = []
    for n, item in enumerate(part):
        result = results[n] if n < len(results) else None
        if result is None or result.change.idempotency_key != item.change.idempotency_key:
            result = PushResult.retryable(item.change, "the connector returned no result for it")
        out.append((item, result))
    return out


def push_destination(engine: Engine, connector: Connector, run_id: int | None, *,
                     trigger: str = "manual", max_attempts: int = 5, batch: int = BATCH,
                     lease_ms: int = 300_000, clock: Callable[[], int] = wall_ms,
                     owner: str | None = None) -> DestinationSummary:
    """Send every item of ``connector``'s destination that is due now (claimed as ``owner``,
    see :func:`sync.outbox.claim`)."""
    dest = connector.provider
    summary = DestinationSummary()
    started = clock()
    while True:
        token, items = outbox.claim(engine, dest, batch, now_ms=clock(), due_by=started,
                                    lease_ms=lease_ms, owner=owner)
        if not items:
            return summary
        for part in _parts(items):
            try:
                outcomes = _apply(connector, part)
            except ConnectorError as e:
                summary.error = f"{type(e).__name__}: {e}"
                LOG.error("%s: stopped sending: %s", dest, summary.error)
                outbox.release(engine, token, now_ms=clock())
                return summary
            summary.calls += 1
            settled = outbox.settle(engine, token, outcomes, now_ms=clock(), max_attempts=max_attempts,
                                    run_id=run_id, trigger=trigger)
            summary.applied += settled.applied
            summary.failed += settled.failed
            summary.dead += settled.dead
            for item, result in outcomes:
                if result.reason is not None:
                    LOG.info("%s %s %s (contact %s): %s: %s", dest, item.change.record_id,
                             item.planned.target, hash_key(item.planned.contact_key),
                             result.status, result.reason)


def push_pending(engine: Engine, connectors: Mapping[str, Connector], run_id: int | None, *,
                 trigger: str = "manual", max_attempts: int = 5, batch: int = BATCH,
                 lease_ms: int = 300_000, clock: Callable[[], int] = wall_ms) -> PushSummary:
    """Send what is due in the outbox for every destination in ``connectors``."""
    summary = PushSummary()
    for name, connector in connectors.items():
        summary.destinations[name] = push_destination(
            engine, connector, run_id, trigger=trigger, max_attempts=max_attempts, batch=batch,
            lease_ms=lease_ms, clock=clock)
    return summary
