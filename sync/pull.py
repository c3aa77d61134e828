"""Pull contacts and events from the configured sources into the store, incrementally.

``pull(engine, project, connectors)`` walks, for each source, its ``contacts`` stream then its
``events`` stream. Each stream starts from the cursor stored in ``cursors`` (``--full``: from
the beginning) and, for each page the connector yields, in **one transaction**: stores the
page's contacts (:mod:`sync.identity`) or events, and saves the page's cursor. So a cursor
never runs ahead of the data it covers: a crash (or a provider error) mid-pull leaves the
store at the last committed page, and the next pull re-reads from there. Re-reading is
harmless: contacts merge by identity and unchanged ones are not rewritten; events are unique
on ``(provider, provider event id)``, and ids already stored are counted as duplicates before
anything else is done with them. Network reads happen between transactions, never inside one.

Mapping (attributes, event types, value forms): :mod:`sync.pull_map`. Events of a type that
is not declared are skipped and counted; events whose contact is unknown create it
(:func:`sync.identity.resolve_refs`). Records and events of a forgotten person (a suppressed
email, external id or provider id, :mod:`sync.service.forget`) are skipped and counted.

A provider failure (:class:`~connectors.errors.ConnectorError`, after the connector's own
retries) ends that source's pull, is recorded in its summary, and the other sources are still
pulled; :attr:`PullSummary.ok` tells. A database failure is a :class:`StoreError`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import DBAPIError

from connectors.base import Connector, Page
from connectors.errors import ConnectorError
from connectors.records import Contact, Event
from mapping.errors import ConfigError
from mapping.project import Project
from sync import identity
from sync.pull_map import SourceMap, Tally
from sync.store import repo, schema
from sync.store.errors import StoreError
from sync.store.tx import begin_write

__all__ = ["PullProgress", "PullSummary", "SourceSummary", "load_cursor", "pull", "save_cursor"]

LOG = logging.getLogger("segsync.pull")
Stream = Literal["contacts", "events"]
T = TypeVar("T")
_CHUNK = 900


def _now_ms() -> int:
    return int(time.time() * 1000)


# ------------------------------------------------------------------------------- cursors


def load_cursor(conn: Connection, source: str, stream: str) -> str | None:
    c = schema.cursors
    found = conn.execute(select(c.c.value).where(c.c.source == source, c.c.stream == stream)).scalar()
    return None if found is None else str(found)


def save_cursor(conn: Connection, source: str, stream: str, value: str, now_ms: int) -> None:
    """Upsert the cursor; call it in the transaction that commits the data it covers."""
    c = schema.cursors
    changed = conn.execute(c.update().where(c.c.source == source, c.c.stream == stream)
                           .values(value=value, updated_at=now_ms)).rowcount
    if not changed:
        conn.execute(c.insert().values(source=source, stream=stream, value=value, updated_at=now_ms))


# ------------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class PullProgress:
    """Reported after every committed page (``done``: once more when the stream ends)."""

    source: str
    stream: Stream
    pages: int
    records: int
    done: bool = False


@dataclass
class SourceSummary:
    source: str
    contact_pages: int = 0
    contacts_seen: int = 0
    contacts_new: int = 0
    contacts_updated: int = 0
    contacts_unchanged: int = 0
    contacts_archived: int = 0
    contacts_suppressed: int = 0  # records of forgotten people: not stored
    identities_linked: int = 0
    merged: int = 0
    conflicts: list[str] = field(default_factory=list)
    event_pages: int = 0
    events_seen: int = 0
    events_new: int = 0
    events_duplicate: int = 0
    events_skipped: int = 0  # type not declared
    events_unresolved: int = 0  # no known contact id and no valid email
    contacts_from_events: int = 0
    events_suppressed: int = 0
    skipped_types: dict[str, int] = field(default_factory=dict)
    invalid_values: dict[str, int] = field(default_factory=dict)  # attribute or type.property
    error: str | None = None


@dataclass
class PullSummary:
    full: bool
    started_at: int
    finished_at: int = 0
    sources: dict[str, SourceSummary] = field(default_factory=dict)
    run_id: int | None = None  # the row in ``runs``

    @property
    def ok(self) -> bool:
        return all(s.error is None for s in self.sources.values())

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "full": self.full, "run_id": self.run_id, "started_at": self.started_at,
                "finished_at": self.finished_at,
                "sources": {name: asdict(s) for name, s in self.sources.items()}}


# ------------------------------------------------------------------------------- pull


def pull(
    engine: Engine,
    project: Project,
    connectors: Mapping[str, Connector],
    full: bool = False,
    sources: Sequence[str] | None = None,
    progress: Callable[[PullProgress], None] | None = None,
    *,
    trigger: str = "manual",
    now: Callable[[], int] = _now_ms,
) -> PullSummary:
    """Pull ``sources`` (default: every connector given) into the store; see the module doc.
    The pull is recorded in ``runs`` (``kind = "pull"``, status ``ok`` / ``partial`` when a
    source failed, the summary as JSON; a pull that crashed stays ``running``)."""
    chosen = list(sources) if sources else list(connectors)
    missing = [s for s in chosen if s not in connectors]
    if missing:
        raise ConfigError(f"source {missing[0]!r} is not configured: add [sources.{missing[0]}] "
                          "to the configuration (or enable it)")
    maps = {s: SourceMap.build(project, s) for s in chosen}
    summary = PullSummary(full=full, started_at=now())
    with _store_errors("preparing the pull"), begin_write(engine) as conn:
        type_ids = repo.event_type_ids(conn, project.events)
        summary.run_id = int(conn.execute(schema.runs.insert().values(
            kind="pull", trigger=trigger, started_at=summary.started_at, status="running",
        ).returning(schema.runs.c.id)).scalar_one())
    for name in chosen:
        run = _SourcePull(engine, project, connectors[name], maps[name], type_ids, progress, now)
        summary.sources[name] = run.summary
        try:
            run.contacts(full)
            run.events(full)
        except ConnectorError as e:
            run.summary.error = str(e)
            LOG.info("pull from %s stopped: %s (the data up to the last page is stored)", name, e)
    summary.finished_at = now()
    with _store_errors("recording the pull"), begin_write(engine) as conn:
        conn.execute(schema.runs.update().where(schema.runs.c.id == summary.run_id).values(
            finished_at=summary.finished_at, status="ok" if summary.ok else "partial",
            summary=summary.to_json()))
    return summary


@contextmanager
def _store_errors(what: str) -> Iterator[None]:
    try:
        yield
    except DBAPIError as e:
        reason = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
        raise StoreError(f"{what}: the store refused it ({reason}); nothing of it was stored "
                         "and the cursor stays at the last committed page") from e


def _closing(pages: Iterable[Page[T]]) -> Iterator[Page[T]]:
    """Iterate ``pages`` and close the connector's generator however the loop ends."""
    try:
        yield from pages
    finally:
        close = getattr(pages, "close", None)
        if callable(close):
            close()


class _SourcePull:
    def __init__(self, engine: Engine, project: Project, connector: Connector, smap: SourceMap,
                 type_ids: Mapping[str, int], progress: Callable[[PullProgress], None] | None,
                 now: Callable[[], int]) -> None:
        self.engine = engine
        self.connector = connector
        self.provider = connector.provider
        self.smap = smap
        self.type_ids = type_ids
        self.match = project.config.identity.match
        self.progress = progress
        self.now = now
        self.summary = SourceSummary(connector.provider)
        self.tally = Tally(self.summary.invalid_values, self.summary.skipped_types)

    def _stream(self, stream: Stream, pages: Callable[[str | None], Iterable[Page[T]]],
                store: Callable[[Connection, list[T]], None], from_start: bool) -> None:
        with self.engine.connect() as conn:
            cursor = None if from_start else load_cursor(conn, self.provider, stream)
        count = records = 0
        for page in _closing(pages(cursor)):
            with _store_errors(f"{self.provider} {stream} page {count + 1}"), \
                    begin_write(self.engine) as conn:
                store(conn, page.records)
                if page.cursor is not None:
                    save_cursor(conn, self.provider, stream, page.cursor, self.now())
            count += 1
            records += len(page.records)
            if self.progress:
                self.progress(PullProgress(self.provider, stream, count, records))
        if self.progress:
            self.progress(PullProgress(self.provider, stream, count, records, done=True))

    def contacts(self, full: bool) -> None:
        def pages(cursor: str | None) -> Iterable[Page[Contact]]:
            return self.connector.pull_contacts(cursor, full=full)

        self._stream("contacts", pages, self._store_contacts, from_start=False)

    def events(self, full: bool) -> None:
        self.ref_cache: identity.RefCache = {}  # no contacts page runs until the stream ends
        self._stream("events", self.connector.pull_events, self._store_events, from_start=full)

    def _store_contacts(self, conn: Connection, records: list[Contact]) -> None:
        s = self.summary
        s.contact_pages += 1
        s.contacts_seen += len(records)
        pulled = [self.smap.contact(r, self.tally) for r in records]
        gone = _suppressed(conn, self.provider, [(p.provider_id, p.email, p.external_id) for p in pulled])
        if gone:
            pulled = [p for n, p in enumerate(pulled) if n not in gone]
            s.contacts_suppressed += len(gone)
        s.contacts_archived += sum(p.archived for p in pulled)
        out = identity.upsert_pulled_contacts(conn, self.provider, pulled, self.now(), match=self.match)
        s.contacts_new += out.new
        s.contacts_updated += out.updated
        s.contacts_unchanged += out.unchanged
        s.identities_linked += out.linked
        s.merged += out.merged
        s.conflicts += out.conflicts

    def _store_events(self, conn: Connection, records: list[Event]) -> None:
        s = self.summary
        s.event_pages += 1
        s.events_seen += len(records)
        typed: dict[str, tuple[Event, str]] = {}
        for event in records:
            event_type = self.smap.event_type(event)
            if event_type is None:
                s.events_skipped += 1
                self.tally.bump(s.skipped_types, event.type)
            elif event.provider_event_id in typed:
                s.events_duplicate += 1
            else:
                typed[event.provider_event_id] = (event, event_type)
        stored = _stored_ids(conn, self.provider, list(typed))
        s.events_duplicate += len(stored)
        fresh = [pair for eid, pair in typed.items() if eid not in stored]
        gone = _suppressed(conn, self.provider, [(e.contact.provider_id, identity.normalised_email(
            e.contact.email), None) for e, _ in fresh])
        if gone:
            fresh = [pair for n, pair in enumerate(fresh) if n not in gone]
            s.events_suppressed += len(gone)
        ids, created = identity.resolve_refs(conn, self.provider, [e.contact for e, _ in fresh],
                                             self.now(), self.ref_cache)
        s.contacts_from_events += created
        rows = []
        for (event, event_type), contact_id in zip(fresh, ids, strict=True):
            if contact_id is None:
                s.events_unresolved += 1
                continue
            props = self.smap.event_properties(event_type, event, self.tally)
            rows.append(repo.EventRow(contact_id, self.type_ids[event_type], event.ts, event.value,
                                      repo.canonical_json(props) if props else None,
                                      self.provider, event.provider_event_id))
        inserted = repo.insert_events(conn, rows)
        s.events_new += inserted
        s.events_duplicate += len(rows) - inserted


def _suppressed(conn: Connection, provider: str,
                keys: Sequence[tuple[str | None, str | None, str | None]]) -> set[int]:
    """Positions of the ``(provider id, email, external id)`` keys of a forgotten person
    (:mod:`sync.service.forget`): such records and events are never stored again."""
    from sync.service.forget import suppressed

    if not keys or conn.execute(select(schema.suppressions.c.kind).limit(1)).first() is None:
        return set()  # nobody was forgotten: no need to hash and look up every key
    hits = [suppressed(conn, kind, {k[n] for k in keys if k[n]})
            for n, kind in enumerate((provider, "email", "external_id"))]
    if not any(hits):
        return set()
    return {i for i, key in enumerate(keys) if any(key[n] in hits[n] for n in range(3) if key[n])}


def _stored_ids(conn: Connection, source: str, ids: Sequence[str]) -> set[str]:
    e = schema.events
    found: set[str] = set()
    for i in range(0, len(ids), _CHUNK):
        query = select(e.c.source_event_id).where(e.c.source == source,
                                                  e.c.source_event_id.in_(ids[i : i + _CHUNK]))
        found.update(conn.execute(query).scalars())
    return found
