"""Shared support of the pull and identity tests: a project, a scripted fake connector, and
readers of what the store holds."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select

from connectors.base import Page, SchemaReport, SchemaSpec
from connectors.errors import RetryableError
from connectors.records import Change, Contact, ContactRef, Event, Provider, PushResult
from mapping.config import load_project_text
from mapping.project import Project
from sync.store import schema

CONFIG = """
[identity]
match = "{match}"

[attributes]
city = "string"
plan = "string"
ltv = "number"
vip = "bool"
signup_date = "date"
tags = "list"

[events.opened_email]
properties = {{ campaign = "string" }}
aliases = {{ hubspot = ["OPEN"], klaviyo = ["Opened Email"] }}

[events.placed_order]
properties = {{ items = "number", shipped_at = "datetime" }}
aliases = {{ klaviyo = ["Placed Order"] }}

[sources.hubspot]
token = "env:SEGSYNC_TEST_HS"
[sources.hubspot.attributes]
plan = "hs_plan"

[sources.klaviyo]
api_key = "env:SEGSYNC_TEST_KL"
"""


def project(match: str = "email", extra: str = "") -> Project:
    return load_project_text(CONFIG.format(match=match) + extra, "test.toml")


def contact(provider: Provider, pid: str, email: str | None = None, external_id: str | None = None,
            **props: Any) -> Contact:
    return Contact(provider, pid, email=email, external_id=external_id, properties=props)


def event(provider: Provider, eid: str, type_: str, ts: int, *, pid: str | None = None,
          email: str | None = None, value: float | None = None, **props: Any) -> Event:
    return Event(provider, eid, ContactRef(provider_id=pid, email=email), type_, ts, value, props)


@dataclass
class FakeConnector:
    """A source holding `contacts` and `events` in order; pages of `page_size`. Its cursor is the
    number of records delivered; each pull re-reads `overlap` records behind it (a look-back
    window, as the real connectors do). `fail_after` raises a retryable error once that many
    pages were yielded in one pull (a provider failure mid-pull)."""

    provider: Provider
    contacts: list[Contact] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    page_size: int = 3
    overlap: int = 1
    fail_after: int | None = None
    calls: list[tuple[str, str | None, bool]] = field(default_factory=list)

    def _pages(self, items: Sequence[Any], cursor: str | None) -> Iterator[Page[Any]]:
        start = max(0, int(json.loads(cursor)["n"]) - self.overlap) if cursor else 0
        for yielded, i in enumerate(range(start, len(items), self.page_size)):
            if self.fail_after is not None and yielded >= self.fail_after:
                raise RetryableError(self.provider, 503, "req-1", "the fake is down")
            chunk = list(items[i : i + self.page_size])
            yield Page(chunk, json.dumps({"n": i + len(chunk)}))

    def pull_contacts(self, cursor: str | None, *, full: bool = False) -> Iterator[Page[Contact]]:
        self.calls.append(("contacts", cursor, full))
        return self._pages(self.contacts, None if full else cursor)

    def pull_events(self, cursor: str | None) -> Iterator[Page[Event]]:
        self.calls.append(("events", cursor, False))
        return self._pages(self.events, cursor)

    def ensure_schema(self, spec: SchemaSpec, *, dry_run: bool = False) -> SchemaReport:
        raise NotImplementedError

    def apply(self, changes: Sequence[Change]) -> list[PushResult]:
        raise NotImplementedError


def contacts_table(engine: Engine) -> list[dict[str, Any]]:
    c = schema.contacts
    with engine.connect() as conn:
        rows = conn.execute(select(c.c.id, c.c.email, c.c.external_id, c.c.attributes).order_by(c.c.id))
        return [dict(r._mapping) for r in rows]


def identities(engine: Engine) -> dict[tuple[str, str], dict[str, Any]]:
    i = schema.identities
    with engine.connect() as conn:
        rows = conn.execute(select(i.c.provider, i.c.provider_id, i.c.contact_id, i.c.email, i.c.archived))
        return {(r.provider, r.provider_id): {"contact_id": r.contact_id, "email": r.email,
                                              "archived": bool(r.archived)} for r in rows}


def events_of(engine: Engine) -> dict[tuple[str, str], int]:
    """(source, source event id) -> contact id of every stored event."""
    e = schema.events
    with engine.connect() as conn:
        rows = conn.execute(select(e.c.source, e.c.source_event_id, e.c.contact_id))
        return {(r.source, r.source_event_id): int(r.contact_id) for r in rows}


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)


def cursor_of(engine: Engine, source: str, stream: str) -> str | None:
    from sync.pull import load_cursor

    with engine.connect() as conn:
        return load_cursor(conn, source, stream)
