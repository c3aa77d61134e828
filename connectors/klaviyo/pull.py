"""Pulls: profiles incremental on ``updated``, events per metric incremental on ``datetime``.

Both are generators of `Page` objects; each page's cursor covers exactly the pages yielded
so far, so it is safe to store once those records are committed (see `cursors`).

- Profiles: ``sort=updated``, ``filter=greater-than(updated, mark - overlap)``, 100 per page.
- Metrics: configured names are resolved to ids once (`resolve_metrics`, all pages of
  ``get_metrics``); an unknown name is a `ConfigError` naming the config path and the
  closest existing names. A name that several metrics share (two integrations) pulls all.
- Events: one stream per metric id, ``sort=datetime``,
  ``filter=equals(metric_id,"…"),greater-or-equal(datetime, mark - overlap)``,
  ``include=profile`` with ``fields[profile]=email`` (all it reads), ``page[size]`` 1000 —
  the spec's parameter schema maximum, although its description still says 200 — falling
  back to 200 for the rest of the pull if the server refuses 1000. Streams run on up to
  ``pull_workers`` threads and their pages are yielded as they come; the per-metric marks
  keep the cursor exact. A page is read as bytes and decoded by msgspec straight into the
  fields read (`eventpage`); a page of another shape takes orjson and the general checks.
"""

from __future__ import annotations

import difflib
import logging
import queue
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from openapi_client.exceptions import ApiException
from openapi_client.rest import RESTResponse

from connectors.base import Page
from connectors.errors import PermanentError
from connectors.klaviyo.calls import KlaviyoCalls, KlaviyoOptions
from connectors.klaviyo.convert import contact_of, emails_of, events_of
from connectors.klaviyo.cursors import EventCursor, Mark, ProfileCursor
from connectors.klaviyo.eventpage import EventPage, decode_events
from connectors.klaviyo.wire import filter_instant, malformed, resources
from connectors.paginate import KlaviyoNext, pages
from connectors.records import Contact, Event
from mapping.errors import ConfigError, Location, Problem

__all__ = ["MetricRef", "merged", "pull_contacts", "pull_events", "resolve_metrics"]

LOG = logging.getLogger("segsync.connectors.klaviyo")
T = TypeVar("T")
FALLBACK_EVENT_PAGE = 200


@dataclass(frozen=True)
class MetricRef:
    event_type: str
    name: str
    id: str


def _checked(body: Any, what: str) -> dict[str, Any]:
    resources(body, what)
    return body  # type: ignore[no-any-return]


def _raw_body(raw: Any) -> bytes:
    """The body of an SDK ``*_without_preload_content`` response (a urllib3 response), read
    without the SDK's deserialiser, which walks every value of a 1,000-event page in Python.
    A non-2xx status raises the SDK's own ``ApiException``, exactly as the plain call would."""
    try:
        body: bytes = raw.data
    finally:
        raw.release_conn()
    if not 200 <= raw.status <= 299:
        resp: Any = RESTResponse(raw)
        resp.data = body
        raise ApiException.from_response(http_resp=resp, body=body.decode("utf-8", "replace"), data=None)
    return body


def _events_page(body: bytes, event_type: str, what: str) -> EventPage:
    """The page's events: msgspec straight into the fields read (`eventpage`) for the common
    shape, else orjson and the checks of the general path, which name what is wrong."""
    page = decode_events(body, event_type, what)
    if page is not None:
        return page
    try:
        doc = _checked(orjson.loads(body), what)
    except orjson.JSONDecodeError as e:
        raise malformed(what, f"the body is not JSON ({e})") from None
    events = events_of(doc["data"], event_type, emails_of(doc.get("included")), what)
    return EventPage(events, doc.get("links"))


def resolve_metrics(calls: KlaviyoCalls, wanted: Mapping[str, Sequence[str]]) -> list[MetricRef]:
    """The metric ids behind the configured names (event type -> Klaviyo metric names)."""
    ids: dict[str, list[str]] = {}

    def fetch(cursor: str | None) -> dict[str, Any]:
        return _checked(calls.metrics.get_metrics(page_cursor=cursor), "get_metrics")

    for doc in calls.pages("get_metrics", fetch):
        for item in doc["data"]:
            name = item["attributes"].get("name")
            if isinstance(name, str):
                ids.setdefault(name, []).append(item["id"])
    problems: list[Problem] = []
    refs: list[MetricRef] = []
    owner: dict[str, str] = {}
    for event_type, names in wanted.items():
        where = Location(path=f"events.{event_type}.aliases.klaviyo")
        for name in names:
            if name not in ids:
                close = difflib.get_close_matches(name, list(ids), n=3)
                hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else None
                problems.append(Problem(where, f"Klaviyo has no metric named {name!r}", hint))
                continue
            if name in owner and owner[name] != event_type:
                problems.append(
                    Problem(where, f"metric {name!r} is already mapped to event type {owner[name]!r}")
                )
                continue
            owner[name] = event_type
            refs.extend(MetricRef(event_type, name, mid) for mid in ids[name])
    if problems:
        raise ConfigError(problems=problems)
    return refs


def pull_contacts(
    calls: KlaviyoCalls, opts: KlaviyoOptions, cursor: str | None, full: bool
) -> Iterator[Page[Contact]]:
    mark = Mark() if full else ProfileCursor.decode(cursor).mark
    since = mark.since(opts.profile_overlap_ms)
    filt = None if since is None else f"greater-than(updated,{filter_instant(max(since, 0))})"

    def fetch(page_cursor: str | None) -> dict[str, Any]:
        body = calls.profiles.get_profiles(
            filter=filt, sort="updated", page_size=opts.profile_page_size, page_cursor=page_cursor
        )
        return _checked(body, "get_profiles")

    for doc in calls.pages("get_profiles", fetch):
        contacts: list[Contact] = []
        for item in doc["data"]:
            contact = contact_of(item)
            assert contact.updated_at is not None  # contact_of always sets it
            if not mark.delivered(contact.provider_id, contact.updated_at):
                contacts.append(contact)
        mark = mark.advance(((c.provider_id, c.updated_at or 0) for c in contacts), opts.profile_overlap_ms)
        yield Page(contacts, ProfileCursor(mark).encode())


class _PageSize:
    """The event page size, shared by the metric streams of one pull."""

    def __init__(self, size: int) -> None:
        self.size = size


def _metric_pages(
    calls: KlaviyoCalls, opts: KlaviyoOptions, ref: MetricRef, mark: Mark, size: _PageSize
) -> Generator[tuple[MetricRef, list[Event], Mark], None, None]:
    conds = [f'equals(metric_id,"{ref.id}")']
    since = mark.since(opts.event_overlap_ms)
    if since is not None:
        conds.append(f"greater-or-equal(datetime,{filter_instant(max(since, 0))})")
    what = f"get_events {ref.name}"

    def get(page_cursor: str | None, n: int) -> EventPage:
        raw = calls.events.get_events_without_preload_content(
            filter=",".join(conds),
            sort="datetime",
            include=["profile"],
            fields_event=["datetime", "event_properties"],  # all we read: ~15 % less to parse
            fields_profile=["email"],
            page_size=n,
            page_cursor=page_cursor,
        )
        return _events_page(_raw_body(raw), ref.event_type, what)

    def fetch(page_cursor: str | None) -> EventPage:
        n = size.size
        try:
            return calls.call("get_events", lambda: get(page_cursor, n), what)
        except PermanentError as e:
            text = e.message.lower()
            if n <= FALLBACK_EVENT_PAGE or e.status != 400 or "page" not in text or "size" not in text:
                raise
            LOG.warning("klaviyo refused page[size]=%d for events (%s); using %d", n, e, FALLBACK_EVENT_PAGE)
            size.size = FALLBACK_EVENT_PAGE
            return calls.call("get_events", lambda: get(page_cursor, FALLBACK_EVENT_PAGE), what)

    for page in pages(fetch, KlaviyoNext()):
        fresh = [e for e in page.events if not mark.delivered(e.provider_event_id, e.ts)]
        mark = mark.advance(((e.provider_event_id, e.ts) for e in fresh), opts.event_overlap_ms)
        yield ref, fresh, mark


def pull_events(
    calls: KlaviyoCalls, opts: KlaviyoOptions, refs: Sequence[MetricRef], cursor: str | None
) -> Iterator[Page[Event]]:
    state = EventCursor.decode(cursor)
    size = _PageSize(opts.event_page_size)
    streams = [(lambda ref=ref: _metric_pages(calls, opts, ref, state.mark(ref.id), size)) for ref in refs]
    for ref, events, mark in merged(streams, opts.pull_workers):
        state = state.with_mark(ref.id, mark)
        yield Page(events, state.encode())


def merged(streams: Sequence[Callable[[], Generator[T, None, None]]], workers: int) -> Iterator[T]:
    """Items of every stream, each stream run on a worker thread, in arrival order.

    Items of one stream keep their order. The first exception of any stream stops the others
    and is raised here; closing this generator stops them too (after their current call).
    """
    if workers <= 1 or len(streams) <= 1:
        for stream in streams:
            yield from stream()
        return
    out: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=2 * workers)
    stop = threading.Event()

    def put(kind: str, item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put((kind, item), timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run(stream: Callable[[], Generator[T, None, None]]) -> None:
        gen = stream()
        try:
            for item in gen:
                if not put("item", item):
                    return
            put("done", None)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put("error", exc)
        finally:
            gen.close()

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="klaviyo-pull")
    try:
        for stream in streams:
            pool.submit(run, stream)
        done = 0
        while done < len(streams):
            kind, item = out.get()
            if kind == "error":
                raise item
            if kind == "done":
                done += 1
                continue
            yield item
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
