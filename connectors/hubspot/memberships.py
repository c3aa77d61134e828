"""Pushing list membership changes (Lists v3: ``PUT /crm/v3/lists/{id}/memberships/...``).

A change's target is a list id (digits) or a list name, resolved once per name (the names
`SchemaManager` saw, else ``get by name``); an unknown list rejects its changes. Its record id
must be a HubSpot record id. Per list, the adds and removes go out in chunks of `chunk` record
ids: ``add-and-remove`` when a chunk has both, else ``add`` or ``remove``. These are idempotent
(adding a member twice or removing a non-member is a no-op), so retried like any idempotent
write. Ids the response lists in ``recordIdsMissing`` are rejected (no such contact); the rest
are applied. A whole-chunk 4xx is bisected to isolate the bad id. The per-call limit is not
documented (QUIRKS.md); 1,000 ids stays well inside what is known to work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.classify import CallKind
from connectors.errors import ConnectorError, PermanentError
from connectors.hubspot.batch import bisect, bisectable, chunks, failing, rejecting, stop_on
from connectors.hubspot.calls import HubSpotCalls
from connectors.hubspot.schema import SchemaManager
from connectors.records import Change, ChangeOp, PushResult

__all__ = ["MembershipPusher"]

LIST_CHUNK = 1000
SUPERSEDED = "superseded by a later change to the same list membership in this batch"
Results = dict[int, PushResult]


@dataclass
class _Member:
    record_id: str
    add: bool
    indexes: list[int]


class MembershipPusher:
    def __init__(self, calls: HubSpotCalls, schema: SchemaManager, *, chunk: int = LIST_CHUNK) -> None:
        self.calls = calls
        self.schema = schema
        self.chunk = chunk

    def _list_id(self, target: str) -> str | None:
        if target.isdigit():
            return target
        if target not in self.schema.list_ids:
            self.schema.find_list(target)
        return self.schema.list_ids.get(target)

    def push(self, items: Sequence[tuple[int, Change]], results: Results) -> None:
        changes = dict(items)
        by_list: dict[str, dict[str, _Member]] = {}
        for idx, change in items:
            record = change.record_id.strip()
            if not record.isdigit():
                results[idx] = PushResult.rejected(
                    change, f"a HubSpot list membership needs the contact's record id, not {record!r}"
                )
                continue
            members = by_list.setdefault(change.target, {})
            add = change.op is ChangeOp.LIST_ADD
            member = members.get(record)
            if member is not None and member.add != add:
                for old in member.indexes:
                    results[old] = PushResult.rejected(changes[old], SUPERSEDED)
                member = None
            if member is None:
                members[record] = _Member(record, add, [idx])
            else:
                member.indexes.append(idx)
        for target, members in by_list.items():
            list_id = self._list_id(target)
            if list_id is None:
                reason = f"there is no HubSpot list named {target!r} (ensure_schema creates it)"
                for member in members.values():
                    _settle(member, changes, results, rejecting(reason))
                continue
            send, isolate = self._sender(list_id, target, changes, results)
            for chunk in chunks(members.values(), self.chunk):
                bisect(chunk, send, isolate)

    def _call(self, list_id: str, adds: list[str], removes: list[str]) -> Any:
        from hubspot.crm.lists import MembershipChangeRequest

        api = self.calls.client.crm.lists.memberships_api
        if adds and removes:
            body = MembershipChangeRequest(record_ids_to_add=adds, record_ids_to_remove=removes)
            fn: Callable[[], Any] = lambda: api.add_and_remove(list_id, body)  # noqa: E731
        elif adds:
            fn = lambda: api.add(list_id, adds)  # noqa: E731
        else:
            fn = lambda: api.remove(list_id, removes)  # noqa: E731
        return self.calls.sdk(fn, kind=CallKind.IDEMPOTENT_WRITE, what="list memberships")

    def _sender(
        self, list_id: str, target: str, changes: Mapping[int, Change], results: Results
    ) -> tuple[Callable[[list[_Member]], None], Callable[[_Member, PermanentError], None]]:
        """``send(chunk)`` and ``isolate(member, error)`` for `bisect`, bound to one list."""

        def send(members: list[_Member]) -> None:
            adds = [m.record_id for m in members if m.add]
            removes = [m.record_id for m in members if not m.add]
            try:
                response = self._call(list_id, adds, removes)
            except ConnectorError as exc:
                stop_on(exc)
                if bisectable(exc):
                    raise
                for m in members:
                    _settle(m, changes, results, failing(exc))
                return
            missing = {str(i) for i in getattr(response, "record_ids_missing", None) or []}
            for m in members:
                if m.record_id in missing:
                    reason = f"contact {m.record_id} does not exist in HubSpot (list {target!r})"
                    _settle(m, changes, results, rejecting(reason))
                else:
                    _settle(m, changes, results, PushResult.applied)

        def isolate(member: _Member, exc: PermanentError) -> None:
            _settle(member, changes, results, failing(exc))

        return send, isolate


def _settle(member: _Member, changes: Mapping[int, Change], results: Results,
            make: Callable[[Change], PushResult]) -> None:  # fmt: skip
    for idx in member.indexes:
        results[idx] = make(changes[idx])
