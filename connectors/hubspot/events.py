"""Pulling HubSpot events: marketing-email events (legacy v1, ``requests``) and, where the
account has it, the unified events API (``/events/v3/events``, Enterprise only).

`event_types` maps HubSpot names to segsync event types (the config's ``aliases.hubspot``);
only mapped types are pulled. Email names are the v1 ``type`` values (``SENT``, ``DELIVERED``,
``OPEN``, ``CLICK``, ``BOUNCE``, ``STATUSCHANGE``, ...) plus ``UNSUBSCRIBED``: a
``STATUSCHANGE`` whose status is ``UNSUBSCRIBED``. Any other name is a unified event type
(``pe<portal>_<label>``, ``ae<app>_<label>``, ``e_<label>``).

Email events, incrementally by time: from ``mark - overlap`` to now, in slices (default one
day) so that the cursor advances after each slice. Within a slice each mapped type is paged
with ``offset``/``hasMore`` (the API serves newest first); ids already delivered (the cursor's
``seen`` table, and this run's) are skipped. A slice's pages carry the previous cursor; an
empty page closing the slice carries the advanced one.

Unified events: ``occurredAfter = mark - overlap`` per mapped type, paged with ``after``. A
404 or 403 (the account lacks the API or the scope) skips them with one warning, cleanly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any

from connectors.base import Page
from connectors.classify import CallKind
from connectors.errors import MalformedResponse, PermanentError
from connectors.hubspot.calls import HubSpotCalls, iso_to_ms, ms_to_datetime
from connectors.hubspot.cursors import EventCursor
from connectors.paginate import HubSpotAfter, HubSpotOffset
from connectors.records import ContactRef, Event, JsonValue

__all__ = ["EMAIL_TYPES", "EventPuller"]

LOG = logging.getLogger("segsync.connectors.hubspot")
EMAIL_PATH = "/email/public/v1/events"
EMAIL_TYPES = frozenset({"SENT", "DELIVERED", "OPEN", "CLICK", "BOUNCE", "STATUSCHANGE", "PROCESSED",
                         "DEFERRED", "DROPPED", "SPAMREPORT", "UNSUBSCRIBED"})  # fmt: skip
_EMAIL_FIELDS = ("emailCampaignId", "url", "category", "status", "response", "deviceType",
                 "portalSubscriptionStatus", "source")  # fmt: skip
EMAIL_LIMIT = 1000
UNIFIED_LIMIT = 100
DAY_MS = 86_400_000


def _api_type(name: str) -> str:
    return "STATUSCHANGE" if name == "UNSUBSCRIBED" else name


def _is_unsubscribe(raw: Mapping[str, Any]) -> bool:
    if raw.get("portalSubscriptionStatus") == "UNSUBSCRIBED":
        return True
    subs = raw.get("subscriptions")
    return isinstance(subs, list) and any(isinstance(s, dict) and s.get("status") == "UNSUBSCRIBED"
                                          for s in subs)  # fmt: skip


class EventPuller:
    def __init__(
        self,
        calls: HubSpotCalls,
        event_types: Mapping[str, str],
        *,
        email_events: bool,
        unified_events: bool,
        overlap_ms: int,
        clock: Callable[[], int],
        slice_ms: int = DAY_MS,
    ) -> None:
        self.calls = calls
        self.types = dict(event_types)
        self.email_names = [n for n in self.types if n in EMAIL_TYPES] if email_events else []
        self.unified_names = [n for n in self.types if n not in EMAIL_TYPES] if unified_events else []
        self.overlap_ms = overlap_ms
        self.clock = clock
        self.slice_ms = slice_ms
        self.unified_available = True

    def pull(self, cursor: str | None) -> Iterator[Page[Event]]:
        state = EventCursor.parse(cursor)
        end = self.clock()
        if self.email_names:
            state = yield from self._email(state, end)
        if self.unified_names and self.unified_available:
            yield from self._unified(state, end)

    # ---- marketing email (legacy v1) --------------------------------------------------------

    def _slices(self, since: int | None, end: int) -> Iterator[tuple[int | None, int]]:
        if since is None:
            yield None, end
            return
        lo = since
        while True:
            hi = min(lo + self.slice_ms, end)
            yield lo, hi
            if hi >= end:
                return
            lo = hi

    def _email_pages(self, api_type: str, lo: int | None, hi: int) -> Iterator[list[dict[str, Any]]]:
        paging = HubSpotOffset()
        offset: str | None = None
        seen: set[str] = set()
        while True:
            params: dict[str, Any] = {"eventType": api_type, "endTimestamp": hi, "limit": EMAIL_LIMIT}
            if lo is not None:
                params["startTimestamp"] = lo
            if offset is not None:
                params["offset"] = offset
            body = self.calls.get_json(EMAIL_PATH, params, what="email events")
            events = body.get("events")
            if not isinstance(events, list):
                raise MalformedResponse("hubspot", 200, None, "email events: 'events' is not a list")
            yield [e for e in events if isinstance(e, dict)]
            offset = paging.next_cursor(body)
            if offset is None:
                return
            if offset in seen:
                raise MalformedResponse("hubspot", 200, None, f"email events offset {offset!r} repeated")
            seen.add(offset)

    def _email_event(self, raw: Mapping[str, Any], name: str) -> Event | None:
        eid, ts, recipient = raw.get("id"), raw.get("created"), raw.get("recipient")
        if not isinstance(eid, str | int) or not isinstance(ts, int) or not isinstance(recipient, str):
            raise MalformedResponse(
                "hubspot", 200, None, f"email event without id/created/recipient: {raw!r:.120}"
            )
        if name == "UNSUBSCRIBED" and not _is_unsubscribe(raw):
            return None
        props: dict[str, JsonValue] = {k: raw[k] for k in _EMAIL_FIELDS if raw.get(k) is not None}
        props["hubspot_type"] = str(raw.get("type") or name)
        return Event("hubspot", str(eid), ContactRef(email=recipient.strip().lower()), self.types[name], ts,
                     properties=props)  # fmt: skip

    def _email(self, state: EventCursor, end: int) -> Generator[Page[Event], None, EventCursor]:
        mark = state.email
        for lo, hi in self._slices(mark.since(self.overlap_ms), end):
            delivered: dict[str, int] = {}
            for name in self.email_names:
                for raw_events in self._email_pages(_api_type(name), lo, hi):
                    fresh: list[Event] = []
                    for raw in raw_events:
                        event = self._email_event(raw, name)
                        if event is None:
                            continue
                        key = f"{name}:{event.provider_event_id}"
                        if key in mark.seen or key in delivered:
                            continue
                        delivered[key] = event.ts
                        fresh.append(event)
                    yield Page(fresh, state.dump())
            mark = mark.advanced(hi, delivered, self.overlap_ms)
            state = state.with_email(mark)
            yield Page([], state.dump())
        return state

    # ---- unified events API ----------------------------------------------------------------

    def _unified_page(self, name: str, since: int | None, end: int, after: str | None) -> Any:
        api = self.calls.client.events.events_api
        kwargs: dict[str, Any] = {"object_type": "contact", "event_type": name, "limit": UNIFIED_LIMIT,
                                  "occurred_before": ms_to_datetime(end)}  # fmt: skip
        if since is not None:
            kwargs["occurred_after"] = ms_to_datetime(since)
        if after is not None:
            kwargs["after"] = after
        return self.calls.sdk(lambda: api.get_page(**kwargs), kind=CallKind.READ, what="unified events",
                              expected=(403, 404))  # fmt: skip

    def _unified_event(self, obj: Any, name: str) -> Event:
        eid, object_id = getattr(obj, "id", None), getattr(obj, "object_id", None)
        ts = iso_to_ms(getattr(obj, "occurred_at", None))
        if not eid or not object_id or ts is None:
            raise MalformedResponse(
                "hubspot", 200, None, f"unified event without id/objectId/occurredAt: {obj!r:.120}"
            )
        raw_props = getattr(obj, "properties", None) or {}
        props: dict[str, JsonValue] = {
            str(k): v for k, v in raw_props.items() if isinstance(v, str | int | float | bool)
        }
        props["hubspot_type"] = name
        return Event("hubspot", str(eid), ContactRef(provider_id=str(object_id)), self.types[name], ts,
                     properties=props)  # fmt: skip

    def _unified(self, state: EventCursor, end: int) -> Iterator[Page[Event]]:
        mark = state.unified
        since = mark.since(self.overlap_ms)
        delivered: dict[str, int] = {}
        paging = HubSpotAfter()
        for name in self.unified_names:
            after: str | None = None
            while True:
                try:
                    response = self._unified_page(name, since, end, after)
                except PermanentError as exc:
                    if exc.status not in (403, 404):
                        raise
                    LOG.warning("hubspot: the unified events API is not available (%s); skipping it", exc)
                    self.unified_available = False
                    return
                fresh = []
                for obj in getattr(response, "results", None) or []:
                    event = self._unified_event(obj, name)
                    if event.provider_event_id in mark.seen or event.provider_event_id in delivered:
                        continue
                    delivered[event.provider_event_id] = event.ts
                    fresh.append(event)
                yield Page(fresh, state.dump())
                after = paging.next_cursor(response)
                if after is None:
                    break
        state = state.with_unified(mark.advanced(end, delivered, self.overlap_ms))
        yield Page([], state.dump())
