"""Pushing contact property changes: ``batch/update`` (and ``batch/upsert`` by email).

The changes of one record become one input (``{id, properties}``; an unset is ``""``), 100
inputs per call. A record id with an ``@`` is an email: with ``create_missing`` it goes to
``batch/upsert`` (``idProperty: email``, creating the contact), otherwise to ``batch/update``
with ``idProperty: email`` (a missing contact is then rejected). Values go over the wire as
strings: booleans ``true``/``false``, numbers as written, lists ``;``-joined (multi-checkbox).

Both calls are idempotent sets (`CallKind.IDEMPOTENT_WRITE`): 429, 5xx and a connection reset
after the write are retried by the one `RetryPolicy`, paced by the budget. Then, per input:

- a 200, or a 207 input with no error: applied;
- a 207 error naming the input: rejected with the error's category, message and codes; when
  the error blames some of the input's properties only, just those changes are rejected and the
  others are sent again; an error of a transient category (`batch.TRANSIENT_CATEGORIES`) sends
  the input again, in a later batch, at most `max_rounds` times (then: retryable);
- an input a 207 neither returned nor named: sent again on its own, so that an error can only
  be about it;
- a whole-batch 4xx: bisected (`batch.bisect`); the isolated input is split per property when
  it has several, else its change is rejected with the reason;
- retries exhausted, or an ambiguous outcome: every change of the batch is retryable;
- a bad token or an exhausted daily quota: `batch.Stop` (the caller marks the rest retryable).

Up to `workers` batches are in flight at once (HubSpot answers a batch in a few hundred ms,
more than the 53 ms a request may take at 19/s); the shared budget paces them all. A record is
in one batch at a time, and is only sent again once the previous outcome is known.

Nothing here raises for one record's problem, and no record is ever sent two different values.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from connectors.classify import CallKind
from connectors.errors import ConnectorError, PermanentError
from connectors.hubspot.batch import (
    bisect,
    bisectable,
    describe,
    error_ids,
    error_properties,
    failing,
    is_transient,
    stop_on,
)
from connectors.hubspot.calls import HubSpotCalls
from connectors.paginate import dig
from connectors.records import Change, ChangeOp, JsonValue, PushResult

__all__ = ["PropertyPusher", "wire_value"]

BATCH_SIZE = 100
SUPERSEDED = "superseded by a later change to the same field in this batch"
Results = dict[int, PushResult]


def wire_value(value: JsonValue) -> str:
    """A change's value as HubSpot takes it (every property value is a string)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    if isinstance(value, list) and all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in value
    ):
        return ";".join(str(v) for v in value)
    raise ValueError(
        f"HubSpot properties hold strings, numbers, booleans or lists of them, not {json.dumps(value)[:60]}"
    )


@dataclass
class _Input:
    key: str
    by_email: bool
    values: dict[str, str]  # property -> wire value
    changes: dict[str, list[int]]  # property -> indexes of the changes it settles
    rounds: int = 0
    solo: bool = False

    @property
    def match(self) -> str:
        return self.key.lower() if self.by_email else self.key

    def only(self, names: set[str], solo: bool = False) -> _Input:
        return _Input(self.key, self.by_email, {n: v for n, v in self.values.items() if n in names},
                      {n: i for n, i in self.changes.items() if n in names}, self.rounds, solo)  # fmt: skip


class PropertyPusher:
    def __init__(
        self, calls: HubSpotCalls, *, create_missing: bool = False, max_rounds: int = 6, workers: int = 4
    ) -> None:
        self.calls = calls
        self.create_missing = create_missing
        self.max_rounds = max_rounds
        self.workers = workers

    def _inputs(self, items: Sequence[tuple[int, Change]], results: Results) -> list[_Input]:
        changes = dict(items)
        inputs: dict[str, _Input] = {}
        for idx, change in items:
            try:
                value = "" if change.op is ChangeOp.UNSET_FIELD else wire_value(change.value)
            except ValueError as exc:
                results[idx] = PushResult.rejected(change, str(exc))
                continue
            by_email = "@" in change.record_id
            key = change.record_id.strip().lower() if by_email else change.record_id.strip()
            inp = inputs.setdefault(key, _Input(key, by_email, {}, {}))
            previous = inp.changes.get(change.target, [])
            if previous and inp.values[change.target] != value:
                for old in previous:  # a later change to the same field wins
                    results[old] = PushResult.rejected(changes[old], SUPERSEDED)
                previous = []
            inp.values[change.target] = value
            inp.changes[change.target] = [*previous, idx]
        return list(inputs.values())

    def push(self, items: Sequence[tuple[int, Change]], results: Results) -> None:
        """Settle every change of `items` into `results` (index -> result)."""
        runs = {upsert: _Run(self, upsert, dict(items), results) for upsert in (False, True)}
        for inp in self._inputs(items, results):
            runs[self.create_missing and inp.by_email].queue.append(inp)
        for run in runs.values():
            run.drain()

    def call(self, batch: list[_Input], upsert: bool) -> Any:
        from hubspot.crm.contacts import (
            BatchInputSimplePublicObjectBatchInput,
            BatchInputSimplePublicObjectBatchInputUpsert,
            SimplePublicObjectBatchInput,
            SimplePublicObjectBatchInputUpsert,
        )

        api = self.calls.client.crm.contacts.batch_api
        if upsert:
            upserts = [
                SimplePublicObjectBatchInputUpsert(id=i.key, id_property="email", properties=i.values)
                for i in batch
            ]
            body: Any = BatchInputSimplePublicObjectBatchInputUpsert(inputs=upserts)
            return self.calls.sdk_json(
                lambda: api.upsert(body, _preload_content=False),
                kind=CallKind.IDEMPOTENT_WRITE,
                what="contacts batch upsert",
            )
        updates = [
            SimplePublicObjectBatchInput(
                id=i.key, id_property="email" if i.by_email else None, properties=i.values
            )
            for i in batch
        ]
        body = BatchInputSimplePublicObjectBatchInput(inputs=updates)
        return self.calls.sdk_json(
            lambda: api.update(body, _preload_content=False),
            kind=CallKind.IDEMPOTENT_WRITE,
            what="contacts batch update",
        )


@dataclass
class _Run:
    """One endpoint's queue of inputs and the outcomes being settled."""

    pusher: PropertyPusher
    upsert: bool
    changes: Mapping[int, Change]
    results: Results
    queue: deque[_Input] = field(default_factory=deque)

    def next_batch(self) -> list[_Input]:
        queue = self.queue
        batch = [queue.popleft()]
        while not batch[0].solo and queue and len(batch) < BATCH_SIZE and not queue[0].solo:
            batch.append(queue.popleft())
        return batch

    def drain(self) -> None:
        """Send until every input is settled, `workers` batches in flight (the budget paces)."""
        workers = self.pusher.workers
        if workers <= 1:
            while self.queue:
                bisect(self.next_batch(), self.send, self.isolated)
            return
        with ThreadPoolExecutor(workers, thread_name_prefix="hubspot-push") as pool:
            pending: set[Future[None]] = set()
            while self.queue or pending:
                while self.queue and len(pending) < workers:
                    pending.add(pool.submit(bisect, self.next_batch(), self.send, self.isolated))
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()  # a Stop ends the run once the batches in flight are back

    def settle(self, inp: _Input, make: Callable[[Change], PushResult]) -> None:
        for indexes in inp.changes.values():
            for idx in indexes:
                self.results[idx] = make(self.changes[idx])

    def send(self, batch: list[_Input]) -> None:
        try:
            response = self.pusher.call(batch, self.upsert)
        except ConnectorError as exc:
            stop_on(exc)
            if bisectable(exc):
                raise  # bisect() splits the batch, or isolates the one input
            for inp in batch:
                self.settle(inp, failing(exc))
            return
        self.read(batch, response)

    def read(self, batch: list[_Input], response: Any) -> None:
        by_match = {inp.match: inp for inp in batch}
        blamed: dict[str, list[Any]] = {}
        unattributed: list[Any] = []
        for error in dig(response, "errors") or []:  # type: ignore[attr-defined]
            hits = {i.lower() for i in error_ids(error)} & by_match.keys()
            for match in hits:
                blamed.setdefault(match, []).append(error)
            if not hits:
                unattributed.append(error)
        returned = set()
        for obj in dig(response, "results") or []:  # type: ignore[attr-defined]
            returned.add(str(dig(obj, "id")))
            email = dig(obj, "properties", "email")
            if email:
                returned.add(str(email).lower())
        for inp in batch:
            if inp.match in blamed:
                self.failed(inp, blamed[inp.match])
            elif not unattributed or inp.match in returned:
                self.settle(inp, PushResult.applied)
            elif len(batch) == 1:
                self.failed(inp, unattributed)
            else:  # unknown outcome: alone next time, so that an error can only be about it
                self.again(inp.only(set(inp.values), solo=True), "outcome unknown")

    def failed(self, inp: _Input, errors: list[Any]) -> None:
        reason = "; ".join(describe(e) for e in errors)
        if all(is_transient(e) for e in errors):
            self.again(inp, reason)
            return
        blamed = set().union(*(error_properties(e) for e in errors)) & set(inp.values)
        bad = blamed or set(inp.values)
        for name in bad:
            for idx in inp.changes[name]:
                self.results[idx] = PushResult.rejected(self.changes[idx], reason)
        rest = set(inp.values) - bad
        if rest:
            self.queue.append(inp.only(rest))

    def again(self, inp: _Input, reason: str) -> None:
        inp.rounds += 1
        if inp.rounds >= self.pusher.max_rounds:
            self.settle(inp, lambda c: PushResult.retryable(c, reason))
        else:
            self.queue.append(inp)

    def isolated(self, inp: _Input, exc: PermanentError) -> None:
        if len(inp.values) > 1:  # which property? send each alone
            for name in inp.values:
                self.queue.append(inp.only({name}, solo=True))
            return
        self.settle(inp, failing(exc))
