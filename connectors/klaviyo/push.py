"""``apply`` for Klaviyo: a batch of `Change` records -> one `PushResult` each, in order.

Order of work: profile properties, then list memberships, then events (a transition event
may start a flow that reads the profile and its lists, so it goes last).

- SET_FIELD / UNSET_FIELD are grouped per profile (`bulk.ProfileWrite`). Fewer than
  ``bulk_threshold`` profiles: one ``PATCH /api/profiles/{id}`` each; more: bulk import jobs.
- LIST_ADD / LIST_REMOVE: of several ops on one (profile, list) only the last is sent, and its
  outcome settles them all (an add and a remove in flight together could land in either order).
  They are grouped per (list, op) in order of first appearance and sent ``list_chunk`` (1,000) ids
  per call, ``push_workers`` calls in flight (the rate budget
  paces them; one call at a time cannot reach the endpoint's ceiling when a 1,000-id call
  takes longer than the window allows per call). The target is a list name (resolved through the ids
  `ensure_schema` found, else looked up: the oldest list of that name) or a list id.
- EVENT creates an event of metric ``target`` with properties ``value`` for the profile,
  ``unique_id`` = the change's idempotency key (Klaviyo drops repeats, so a resend after a
  lost response is harmless). From ``event_bulk_threshold`` events on, bulk create (1,000
  per request, one entry per event).

A call refused for one record never stops the batch: a 4xx whose ``source.pointer`` names an
entry (``/data/<i>/…``) rejects that entry and the rest is sent again; a 4xx that names none
is bisected down to the entry that causes it. Retryable failures that outlast the retry
policy, and ambiguous ones, are *retryable* results. `AuthError` and `QuotaExhausted` are
raised: no record can get past them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from connectors.errors import ConnectorError, PermanentError, RecordRejected
from connectors.klaviyo.bulk import Outcome, ProfileWrite, fatal, import_profiles, patch_profile
from connectors.klaviyo.calls import KlaviyoCalls, KlaviyoOptions
from connectors.klaviyo.schema import find_lists
from connectors.klaviyo.wire import PROVIDER, index_in_pointer
from connectors.records import Change, ChangeOp, PushResult

__all__ = ["apply_changes", "isolate"]

T = TypeVar("T")
_PROPERTY_OPS = (ChangeOp.SET_FIELD, ChangeOp.UNSET_FIELD)
_LIST_OPS = (ChangeOp.LIST_ADD, ChangeOp.LIST_REMOVE)
_MAX_EVENT_BYTES = 5_000_000 - 1024


def isolate(
    items: Sequence[T],
    send: Callable[[list[T]], None],
    pointer: str,
    split_on: frozenset[int] = frozenset({400, 413, 422}),
) -> list[Outcome]:
    """Send `items` in one call; on a permanent refusal find the entries that cause it.

    `pointer` is a regex with one group: the entry index inside the error's source pointer.
    Returns one outcome per item (None = applied).
    """
    out: list[Outcome] = [None] * len(items)
    stack = [list(range(len(items)))]
    while stack:
        part = stack.pop()
        if not part:
            continue
        try:
            send([items[i] for i in part])
        except ConnectorError as e:
            if fatal(e):
                raise
            k = index_in_pointer(e.message, pointer) if isinstance(e, PermanentError) else None
            if k is not None and 0 <= k < len(part):
                out[part[k]] = e
                stack.append(part[:k] + part[k + 1 :])
            elif isinstance(e, PermanentError) and len(part) > 1 and e.status in split_on:
                mid = len(part) // 2
                stack += [part[mid:], part[:mid]]
            else:
                for i in part:
                    out[i] = e
    return out


def _result(change: Change, outcome: Outcome) -> PushResult:
    if outcome is None:
        return PushResult.applied(change)
    if isinstance(outcome, PermanentError):
        outcome = RecordRejected(PROVIDER, change.record_id, outcome.message,
                                 status=outcome.status, request_id=outcome.request_id)  # fmt: skip
    return PushResult.from_error(change, outcome)


class _Batch:
    def __init__(self, changes: Sequence[Change]) -> None:
        self.changes = changes
        self.results: list[PushResult | None] = [None] * len(changes)

    def settle(self, positions: Sequence[int], outcome: Outcome) -> None:
        for i in positions:
            self.results[i] = _result(self.changes[i], outcome)


def apply_changes(
    calls: KlaviyoCalls,
    opts: KlaviyoOptions,
    changes: Sequence[Change],
    list_ids: dict[str, str],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> list[PushResult]:
    batch = _Batch(changes)
    writes: dict[str, ProfileWrite] = {}
    memberships: dict[tuple[str, ChangeOp], list[int]] = {}
    events: list[int] = []
    # list ops for one (profile, list) run concurrently with others, so only the last one may be
    # sent: an add and a remove of the same membership in flight together could land in either order
    last_list_op = {(c.record_id, c.target): c.op for c in changes if c.op in _LIST_OPS}
    for i, change in enumerate(changes):
        if change.destination != PROVIDER:
            batch.results[i] = PushResult.rejected(change, f"a {change.destination} change sent to klaviyo")
        elif change.op in _PROPERTY_OPS:
            write = writes.setdefault(change.record_id, ProfileWrite(change.record_id))
            if change.op is ChangeOp.SET_FIELD:
                write.set(change.target, change.value)
            else:
                write.unset(change.target)
            write.positions.append(i)
        elif change.op in _LIST_OPS:
            final_op = last_list_op[(change.record_id, change.target)]
            memberships.setdefault((change.target, final_op), []).append(i)
        else:
            events.append(i)
    _profiles(calls, opts, batch, list(writes.values()), clock, sleep)
    _lists(calls, opts, batch, memberships, list_ids)
    _events(calls, opts, batch, events)
    missing = [i for i, r in enumerate(batch.results) if r is None]
    if missing:  # every branch above settles its positions; this is a bug if it happens
        raise AssertionError(f"klaviyo apply left changes {missing[:5]} without a result")
    return [r for r in batch.results if r is not None]


def _profiles(
    calls: KlaviyoCalls,
    opts: KlaviyoOptions,
    batch: _Batch,
    writes: list[ProfileWrite],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> None:
    if len(writes) >= opts.bulk_threshold:
        outcomes = import_profiles(calls, opts, writes, clock, sleep)
    else:
        outcomes = [patch_profile(calls, w) for w in writes]
    for write, outcome in zip(writes, outcomes, strict=True):
        batch.settle(write.positions, outcome)


def _resolve_lists(calls: KlaviyoCalls, targets: Sequence[str], known: dict[str, str]) -> dict[str, str]:
    unknown = [t for t in dict.fromkeys(targets) if t not in known]
    if unknown:
        for name, entries in find_lists(calls, unknown).items():
            known[name] = entries[0][1]
    return {t: known.get(t, t) for t in targets}


def _lists(
    calls: KlaviyoCalls,
    opts: KlaviyoOptions,
    batch: _Batch,
    memberships: Mapping[tuple[str, ChangeOp], list[int]],
    list_ids: dict[str, str],
) -> None:
    if not memberships:
        return
    try:
        ids = _resolve_lists(calls, [target for target, _ in memberships], list_ids)
    except ConnectorError as e:
        if fatal(e):
            raise
        for positions in memberships.values():
            batch.settle(positions, e)
        return
    work: list[Callable[[], None]] = []
    for (target, op), positions in memberships.items():
        list_id = ids[target]
        add = op is ChangeOp.LIST_ADD
        operation = "add_profiles_to_list" if add else "remove_profiles_from_list"
        method = calls.lists.add_profiles_to_list if add else calls.lists.remove_profiles_from_list
        by_profile: dict[str, list[int]] = {}
        for i in positions:
            by_profile.setdefault(batch.changes[i].record_id, []).append(i)
        profiles = list(by_profile)

        def send(
            chunk: list[str], method: Any = method, operation: str = operation, list_id: str = list_id
        ) -> None:
            body = {"data": [{"type": "profile", "id": pid} for pid in chunk]}
            calls.call(operation, lambda: method(list_id, body), f"{operation} {list_id}")

        for start in range(0, len(profiles), opts.list_chunk):
            chunk = profiles[start : start + opts.list_chunk]

            def run(chunk: list[str] = chunk, send: Any = send, by_profile: Any = by_profile) -> None:
                for pid, outcome in zip(chunk, isolate(chunk, send, r"^/data/(\d+)"), strict=True):
                    batch.settle(by_profile[pid], outcome)

            work.append(run)
    if len(work) == 1 or opts.push_workers == 1:
        for job in work:
            job()
        return
    with ThreadPoolExecutor(max_workers=opts.push_workers, thread_name_prefix="klaviyo-push") as pool:
        for future in [pool.submit(job) for job in work]:
            future.result()


def _event_attributes(change: Change) -> dict[str, Any]:
    props = change.value if isinstance(change.value, dict) else {}
    return {
        "properties": props,
        "metric": {"data": {"type": "metric", "attributes": {"name": change.target}}},
        "unique_id": change.idempotency_key,
    }


def _profile_ref(change: Change) -> dict[str, Any]:
    return {"data": {"type": "profile", "id": change.record_id, "attributes": {}}}


def _create_event(calls: KlaviyoCalls, body: dict[str, Any]) -> None:
    calls.call("create_event", lambda: calls.events.create_event(body))


def _events(calls: KlaviyoCalls, opts: KlaviyoOptions, batch: _Batch, positions: list[int]) -> None:
    if len(positions) < opts.event_bulk_threshold:
        for i in positions:
            change = batch.changes[i]
            body = {
                "data": {
                    "type": "event",
                    "attributes": {**_event_attributes(change), "profile": _profile_ref(change)},
                }
            }
            try:
                _create_event(calls, body)
                batch.settle([i], None)
            except ConnectorError as e:
                if fatal(e):
                    raise
                batch.settle([i], e)
        return

    def entry(i: int) -> dict[str, Any]:
        change = batch.changes[i]
        event = {"type": "event", "attributes": _event_attributes(change)}
        attrs = {"profile": _profile_ref(change), "events": {"data": [event]}}
        return {"type": "event-bulk-create", "attributes": attrs}

    def send(chunk: list[dict[str, Any]]) -> None:
        body = {
            "data": {"type": "event-bulk-create-job", "attributes": {"events-bulk-create": {"data": chunk}}}
        }
        calls.call("bulk_create_events", lambda: calls.events.bulk_create_events(body))

    chunk: list[int] = []
    size = 0
    for n, i in enumerate(positions):
        item_size = len(json.dumps(entry(i))) + 2
        if chunk and (len(chunk) >= opts.max_bulk_events or size + item_size > _MAX_EVENT_BYTES):
            _send_events(batch, chunk, entry, send)
            chunk, size = [], 0
        chunk.append(i)
        size += item_size
        if n == len(positions) - 1:
            _send_events(batch, chunk, entry, send)


def _send_events(
    batch: _Batch,
    chunk: list[int],
    entry: Callable[[int], dict[str, Any]],
    send: Callable[[list[dict[str, Any]]], None],
) -> None:
    entries = [entry(i) for i in chunk]
    split = frozenset({400, 404, 413, 422})  # an unknown profile id is a 404 naming no entry
    outcomes = isolate(entries, send, r"/events-bulk-create/data/(\d+)", split)
    for i, outcome in zip(chunk, outcomes, strict=True):
        batch.settle([i], outcome)
