"""Pulling HubSpot contacts: a full listing on the first run, a search on ``lastmodifieddate``
afterwards, archived contacts marked.

Full (no cursor, ``full=True``, or a full listing to resume): archived contacts first
(``GET /crm/v3/objects/contacts?archived=true``), then every active contact with
``basic_api.get_page`` (limit 100, ``after``), only the configured properties plus ``email``
and ``lastmodifieddate``. The cursor of each page resumes the listing; the last page's cursor
holds the mark = the instant the listing began.

Incremental: ``POST .../search`` with ``lastmodifieddate GTE mark - look_back``, sorted
ascending, limit 200, paged with ``after`` (an offset). HubSpot answers at most 10,000 results
per query, so before the offset reaches the cap the search restarts with a new ``GTE`` = the
last ``lastmodifieddate`` seen; results seen before are skipped (dedupe by id and
modification instant). If more than a cap's worth of contacts share one instant, that instant
is drained by ``hs_object_id`` (``EQ`` instant, ``GT`` last id, sorted by id) and the search
goes on with ``GT`` instant. Searches spend from the budget's ``search`` class (<= 4/s).
Then archived contacts archived since the window start are listed and marked archived (search
does not cover archived records).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from connectors.base import Page
from connectors.errors import MalformedResponse
from connectors.hubspot.calls import HubSpotCalls, iso_to_ms
from connectors.hubspot.cursors import ContactCursor
from connectors.paginate import HubSpotAfter, dig
from connectors.records import Contact, JsonValue

__all__ = ["ContactPuller"]

LIST_LIMIT = 100
SEARCH_LIMIT = 200
SEARCH_CAP = 10_000
MODIFIED = "lastmodifieddate"
Filters = list[dict[str, str]]


class ContactPuller:
    def __init__(
        self,
        calls: HubSpotCalls,
        properties: Sequence[str],
        *,
        look_back_ms: int,
        clock: Any,
        search_cap: int = SEARCH_CAP,
    ) -> None:
        self.calls = calls
        self.properties = tuple(dict.fromkeys(properties))
        self.requested = list(dict.fromkeys([*self.properties, "email", MODIFIED]))
        self.look_back_ms = look_back_ms
        self.clock = clock
        self.search_cap = search_cap
        self._paging = HubSpotAfter()

    def pull(self, cursor: str | None, *, full: bool = False) -> Iterator[Page[Contact]]:
        state = ContactCursor() if full else ContactCursor.parse(cursor)
        if full or state.mark is None or state.in_full_listing:
            yield from self._full(state)
        else:
            yield from self._incremental(state)

    # ---- conversion ------------------------------------------------------------------------

    def _contact(self, obj: Any, archived: bool = False) -> Contact:
        cid = dig(obj, "id")
        props = dig(obj, "properties")
        if not cid or not isinstance(props, dict):
            raise MalformedResponse("hubspot", 200, None, f"a contact without id or properties: {obj!r:.120}")
        updated = iso_to_ms(props.get(MODIFIED)) or iso_to_ms(dig(obj, "updatedAt"))
        if archived:
            updated = iso_to_ms(dig(obj, "archivedAt")) or updated
        values: dict[str, JsonValue] = {name: props.get(name) for name in self.properties}
        email = props.get("email")
        return Contact("hubspot", str(cid), email=email or None, properties=values,
                       updated_at=updated, archived=archived)  # fmt: skip

    # ---- full listing ----------------------------------------------------------------------

    def _list_page(self, after: str | None, archived: bool) -> Any:
        api = self.calls.client.crm.contacts.basic_api
        return self.calls.sdk_json(
            lambda: api.get_page(limit=LIST_LIMIT, after=after, properties=self.requested, archived=archived,
                                 _preload_content=False),
            what="contacts list" + (" (archived)" if archived else ""),
        )  # fmt: skip

    def _listing(self, after: str | None, archived: bool) -> Iterator[tuple[list[Any], str | None]]:
        seen: set[str] = set()
        while True:
            response = self._list_page(after, archived)
            nxt = self._paging.next_cursor(response)
            yield _results(response), nxt
            if nxt is None:
                return
            if nxt in seen:
                raise MalformedResponse("hubspot", 200, None, f"contacts list cursor {nxt!r} repeated")
            seen.add(nxt)
            after = nxt

    def _full(self, state: ContactCursor) -> Iterator[Page[Contact]]:
        started = state.full_started if state.in_full_listing else self.clock()
        resuming = ContactCursor(state.mark, state.full_after, started)
        if state.full_after is None:
            for results, _ in self._listing(None, archived=True):
                yield Page([self._contact(r, archived=True) for r in results], resuming.dump())
        for results, nxt in self._listing(state.full_after, archived=False):
            done = nxt is None
            cursor = ContactCursor(started) if done else ContactCursor(state.mark, nxt, started)
            yield Page([self._contact(r) for r in results], cursor.dump())

    # ---- incremental search ----------------------------------------------------------------

    def _search(self, filters: Filters, sort: str, after: int) -> Any:
        from hubspot.crm.contacts import PublicObjectSearchRequest

        request = PublicObjectSearchRequest(
            filter_groups=[{"filters": filters}],
            sorts=[{"propertyName": sort, "direction": "ASCENDING"}],
            properties=self.requested,
            limit=SEARCH_LIMIT,
            after=str(after) if after else None,
        )
        api = self.calls.client.crm.contacts.search_api
        return self.calls.sdk_json(
            lambda: api.do_search(public_object_search_request=request, _preload_content=False),
            what="contacts search",
            endpoint="search",
        )

    def _window(self, filters: Filters, sort: str) -> Iterator[tuple[list[Any], bool]]:
        """Pages of one search; the flag is True when the cap stopped it before the end."""
        after = 0
        while True:
            response = self._search(filters, sort, after)
            results = _results(response)
            nxt = dig(response, "paging", "next", "after")
            capped = nxt is not None and int(str(nxt)) >= self.search_cap
            yield results, capped
            if nxt is None or capped or not results:
                return
            after = int(str(nxt))

    def _modified_since(self, since: int) -> Iterator[list[Any]]:
        """Every contact with ``lastmodifieddate >= since``, ascending, re-windowed at the cap."""
        op, low = "GTE", since
        while True:
            last: Any = None
            capped = False
            for results, stopped in self._window([_f(MODIFIED, op, low)], MODIFIED):
                capped = stopped
                if results:
                    last = results[-1]
                yield results
            if not capped or last is None:
                return
            last_mod = iso_to_ms(dig(last, "properties", MODIFIED))
            if last_mod is None or last_mod < low:  # the search ignored its own filter: stop
                raise MalformedResponse(
                    "hubspot",
                    200,
                    None,
                    f"search result {dig(last, 'id')} has {MODIFIED} {last_mod} below {low}",
                )
            if last_mod == low:  # a cap's worth of contacts share one instant: drain it by id
                yield from self._drain_instant(last_mod)
                op = "GT"
            else:
                op = "GTE"
            low = last_mod

    def _drain_instant(self, instant: int) -> Iterator[list[Any]]:
        last_id = 0
        while True:
            filters = [_f(MODIFIED, "EQ", instant), _f("hs_object_id", "GT", last_id)]
            capped = False
            for results, stopped in self._window(filters, "hs_object_id"):
                capped = stopped
                if results:
                    last_id = int(str(dig(results[-1], "id")))
                yield results
            if not capped:
                return

    def _incremental(self, state: ContactCursor) -> Iterator[Page[Contact]]:
        assert state.mark is not None
        since = state.mark - self.look_back_ms
        mark = state.mark
        delivered: dict[str, int | None] = {}
        for results in self._modified_since(since):
            fresh: list[Contact] = []
            for obj in results:
                contact = self._contact(obj)
                if delivered.get(contact.provider_id, -1) == contact.updated_at:
                    continue
                delivered[contact.provider_id] = contact.updated_at
                fresh.append(contact)
                mark = max(mark, contact.updated_at or mark)
            yield Page(fresh, ContactCursor(mark).dump())
        for results, _ in self._listing(None, archived=True):
            gone = [self._contact(r, archived=True) for r in results]
            recent = [c for c in gone if c.updated_at is None or c.updated_at >= since]
            yield Page(recent, ContactCursor(mark).dump())


def _results(response: Any) -> list[Any]:
    results = dig(response, "results")
    if not isinstance(results, list):
        raise MalformedResponse("hubspot", 200, None, "a contacts page without a 'results' list")
    return results


def _f(name: str, operator: str, value: int) -> dict[str, str]:
    return {"propertyName": name, "operator": operator, "value": str(value)}
