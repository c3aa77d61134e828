"""Writes to the store: contacts (upsert by normalised email / external id), provider
identities, event type ids and events (insert with dedupe). Batch-oriented: callers pass lists
and one open connection; the caller owns the transaction (see :func:`sync.store.tx.begin_write`).

Stored forms (the engine reads them back this way):

* emails are trimmed and lower-cased (:func:`normalise_email`);
* ``contacts.attributes`` is a JSON object of already-typed values: strings, numbers, booleans,
  dates and datetimes as epoch ms UTC (a date is its midnight UTC), lists as arrays of strings;
  an attribute that is not set is absent from the object;
* ``events.properties`` is a JSON object, declared properties typed as above;
* an event's ``(source, source_event_id)`` is unique: the provider's id, or
  ``sha256:<hex>`` of the canonical content (:func:`event_content_hash`) when there is none.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from sync.store import schema
from sync.store.errors import StoreError

# a practical address check (RFC 5322's dot-atom local part, a dotted domain, IDN letters allowed)
_EMAIL_RE = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~\u00a0-\uffff-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~\u00a0-\uffff-]+)*"
    r"@([a-z0-9\u00a0-\uffff]([a-z0-9\u00a0-\uffff-]*[a-z0-9\u00a0-\uffff])?\.)+"
    r"[a-z\u00a0-\uffff]{2,}"
)
_IN_CHUNK = 900  # bound parameters per IN list: well under SQLite's and PostgreSQL's limits


@lru_cache(maxsize=65_536)
def normalise_email(text: str) -> str:
    """``"  Ann@Example.COM "`` -> ``"ann@example.com"``; raises ValueError when not an email."""
    email = text.strip().lower()
    if not _EMAIL_RE.fullmatch(email) or len(email) > 320:
        raise ValueError(f"invalid email {text.strip()!r}")
    return email


_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def _dumps(value: Any) -> str:
    return _COMPACT(value)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal values give equal text."""
    return _CANONICAL(value)


def event_content_hash(
    contact_key: str, event_type: str, ts: int, value: float | None,
    properties: Mapping[str, Any] | str | None,
) -> str:
    """The dedupe id of an event that has no id of its own: ``sha256:`` of its canonical form
    (``properties`` as a mapping, or already as :func:`canonical_json` text)."""
    props = properties if isinstance(properties, str) else canonical_json(dict(properties or {}))
    canonical = canonical_json([contact_key, event_type, ts, value]) + props
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@contextmanager
def bulk_session(conn: Connection, cache_mb: int = 256) -> Iterator[None]:
    """A larger SQLite page cache while a bulk write runs on ``conn`` (index pages of a big
    events table stay in memory); restored afterwards. No-op on PostgreSQL."""
    if conn.dialect.name != "sqlite":
        yield
        return
    before = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    conn.exec_driver_sql(f"PRAGMA cache_size=-{cache_mb * 1024}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size={int(before or -2000)}")


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# ------------------------------------------------------------------------------- contacts


@dataclass
class ContactUpsert:
    """One contact row to merge in: either key may be None (not both). ``attributes`` holds the
    values to set; a value of None removes that attribute."""

    email: str | None
    external_id: str | None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Contact:
    id: int | None
    email: str | None
    external_id: str | None
    attributes: dict[str, Any]
    original: tuple[str | None, str | None, str] | None  # None for a new contact

    def changed(self) -> bool:
        now = (self.email, self.external_id, canonical_json(self.attributes))
        return self.original != now


@dataclass(frozen=True)
class UpsertOutcome:
    inserted: int
    updated: int
    conflicts: dict[int, str]  # index in the input -> reason the row was not applied


def _load_contacts(
    conn: Connection, emails: set[str], external_ids: set[str]
) -> list[_Contact]:
    c = schema.contacts
    found: dict[int, _Contact] = {}
    for column, keys in ((c.c.email, emails), (c.c.external_id, external_ids)):
        for chunk in _chunks(sorted(keys)):
            rows = conn.execute(
                select(c.c.id, c.c.email, c.c.external_id, c.c.attributes).where(column.in_(chunk))
            )
            for row in rows:
                attrs = dict(row.attributes or {})
                found[row.id] = _Contact(
                    row.id, row.email, row.external_id, attrs,
                    (row.email, row.external_id, canonical_json(attrs)),
                )
    return list(found.values())


def upsert_contacts(
    conn: Connection, rows: Sequence[ContactUpsert], now_ms: int
) -> UpsertOutcome:
    """Merge ``rows`` (in order) into the contacts table.

    A row matches the contact with its email or its external id. When the email and the
    external id belong to two different contacts, or the matched contact already has another
    external id, the row is a conflict and is not applied. A row with an external id matching
    a contact whose email differs changes that contact's email. Unchanged contacts are not
    written (re-importing the same rows changes nothing, ``updated_at`` included).
    """
    emails = {r.email for r in rows if r.email}
    ext_ids = {r.external_id for r in rows if r.external_id}
    by_email: dict[str, _Contact] = {}
    by_ext: dict[str, _Contact] = {}
    for known in _load_contacts(conn, emails, ext_ids):
        if known.email:
            by_email[known.email] = known
        if known.external_id:
            by_ext[known.external_id] = known
    touched: dict[int, _Contact] = {}
    conflicts: dict[int, str] = {}
    for index, row in enumerate(rows):
        e_hit = by_email.get(row.email) if row.email else None
        x_hit = by_ext.get(row.external_id) if row.external_id else None
        if e_hit is not None and x_hit is not None and e_hit is not x_hit:
            conflicts[index] = (
                f"email {row.email} and external_id {row.external_id} belong to two "
                "different contacts"
            )
            continue
        target = e_hit or x_hit
        if target is None:
            target = _Contact(None, row.email, row.external_id, {}, None)
        elif x_hit is None and row.external_id and target.external_id not in (None, row.external_id):
            conflicts[index] = (
                f"email {row.email} belongs to the contact with external_id "
                f"{target.external_id}, not {row.external_id}"
            )
            continue
        if row.email and target.email != row.email:
            if target.email:
                by_email.pop(target.email, None)
            target.email = row.email
        if row.external_id:
            target.external_id = row.external_id
        for name, value in row.attributes.items():
            if value is None:
                target.attributes.pop(name, None)
            else:
                target.attributes[name] = value
        if target.email:
            by_email[target.email] = target
        if target.external_id:
            by_ext[target.external_id] = target
        touched[id(target)] = target
    new = [t for t in touched.values() if t.id is None]
    changed = [t for t in touched.values() if t.id is not None and t.changed()]
    c = schema.contacts
    if new:
        conn.execute(
            c.insert(),
            [
                {"email": t.email, "external_id": t.external_id, "attributes": t.attributes,
                 "created_at": now_ms, "updated_at": now_ms}
                for t in new
            ],
        )
    if changed:
        conn.execute(
            update(c)
            .where(c.c.id == bindparam("b_id"))
            .values(
                email=bindparam("b_email"),
                external_id=bindparam("b_ext"),
                attributes=bindparam("b_attrs", type_=c.c.attributes.type),
                updated_at=now_ms,
            ),
            [
                {"b_id": t.id, "b_email": t.email, "b_ext": t.external_id,
                 "b_attrs": t.attributes}
                for t in changed
            ],
        )
    return UpsertOutcome(len(new), len(changed), conflicts)


class ContactResolver:
    """Contact ids for ``(email, external_id)`` keys, creating bare contacts (no attributes)
    for keys not known yet. Keeps what it learnt across calls on the same connection, so a
    stream of events for the same contacts looks each one up once.

    A key whose email and external id match two different contacts resolves by
    ``match_first`` ("email" or "external_id").
    """

    MAX_CACHED = 500_000

    def __init__(self, conn: Connection, *, match_first: str = "email") -> None:
        self.conn = conn
        self.match_first = match_first
        self.by_email: dict[str, int] = {}
        self.by_ext: dict[str, int] = {}

    def _load(self, emails: set[str], ext_ids: set[str]) -> None:
        c = schema.contacts
        for column, keys, into in ((c.c.email, emails, self.by_email),
                                   (c.c.external_id, ext_ids, self.by_ext)):
            for chunk in _chunks(sorted(keys)):
                query = select(c.c.id, c.c.email, c.c.external_id).where(column.in_(chunk))
                for row in self.conn.execute(query):
                    if row.email:
                        self.by_email[row.email] = row.id
                    if row.external_id:
                        self.by_ext[row.external_id] = row.id
                into.update(dict.fromkeys((k for k in chunk if k not in into), 0))  # 0: absent

    def _lookup(self, email: str | None, ext: str | None) -> int | None:
        hits = (self.by_email.get(email) if email else None,
                self.by_ext.get(ext) if ext else None)
        first, second = hits if self.match_first == "email" else hits[::-1]
        return first or second or None

    def resolve(self, keys: Sequence[tuple[str | None, str | None]], now_ms: int,
                *, create: bool = True) -> list[int | None]:
        if len(self.by_email) + len(self.by_ext) > self.MAX_CACHED:
            self.by_email.clear()
            self.by_ext.clear()
        self._load({e for e, _ in keys if e and e not in self.by_email},
                   {x for _, x in keys if x and x not in self.by_ext})
        if create:
            missing: dict[tuple[str | None, str | None], None] = {}
            claimed: set[str] = set()
            for email, ext in keys:
                if self._lookup(email, ext) is None and not (
                    (email and "e:" + email in claimed) or (ext and "x:" + ext in claimed)
                ):
                    missing[(email, ext)] = None
                    claimed.update(([f"e:{email}"] if email else []) + ([f"x:{ext}"] if ext else []))
            if missing:
                self.conn.execute(
                    schema.contacts.insert(),
                    [{"email": e, "external_id": x, "attributes": {}, "created_at": now_ms,
                      "updated_at": now_ms} for e, x in missing],
                )
                for e, x in missing:  # forget the "absent" marks, then read the new ids
                    self.by_email.pop(e or "", None)
                    self.by_ext.pop(x or "", None)
                self._load({e for e, _ in missing if e}, {x for _, x in missing if x})
        return [self._lookup(email, ext) for email, ext in keys]


def contact_ids(
    conn: Connection,
    keys: Sequence[tuple[str | None, str | None]],
    now_ms: int,
    *,
    match_first: str = "email",
    create: bool = True,
) -> list[int | None]:
    """The contact id of each ``(email, external_id)`` key (see :class:`ContactResolver`)."""
    return ContactResolver(conn, match_first=match_first).resolve(keys, now_ms, create=create)


# ------------------------------------------------------------------------------- identities


def upsert_identity(
    conn: Connection,
    provider: str,
    provider_id: str,
    contact_id: int,
    now_ms: int,
    *,
    email: str | None = None,
    archived: bool = False,
) -> None:
    """Record that ``provider``'s record ``provider_id`` is the contact ``contact_id``."""
    values = {"provider": provider, "provider_id": provider_id, "contact_id": contact_id,
              "email": email, "archived": archived, "updated_at": now_ms}
    ins = _dialect_insert(conn)(schema.identities).values(**values)
    conn.execute(
        ins.on_conflict_do_update(
            index_elements=["provider", "provider_id"],
            set_={k: ins.excluded[k] for k in ("contact_id", "email", "archived", "updated_at")},
        )
    )


def contact_for_identity(conn: Connection, provider: str, provider_id: str) -> int | None:
    i = schema.identities
    found = conn.execute(
        select(i.c.contact_id).where(i.c.provider == provider, i.c.provider_id == provider_id)
    ).scalar()
    return None if found is None else int(found)


# ------------------------------------------------------------------------------- events


def event_type_ids(conn: Connection, names: Iterable[str]) -> dict[str, int]:
    """The id of each event type name, creating the missing ones."""
    t = schema.event_types
    wanted = sorted(set(names))
    known = {r.name: int(r.id) for r in conn.execute(select(t.c.id, t.c.name))}
    missing = [n for n in wanted if n not in known]
    if missing:
        conn.execute(t.insert(), [{"name": n} for n in missing])
        known = {r.name: int(r.id) for r in conn.execute(select(t.c.id, t.c.name))}
    return {n: known[n] for n in wanted}


@dataclass(frozen=True)
class EventRow:
    contact_id: int
    type_id: int
    ts: int
    value: float | None
    properties: Mapping[str, Any] | str | None  # a mapping, or its JSON text
    source: str
    source_event_id: str


def _dialect_insert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


_EVENT_COLUMNS = "contact_id, type_id, ts, value, properties, source, source_event_id"
_SQLITE_INSERT_EVENTS = (
    f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (source, source_event_id) DO NOTHING"
)
# PostgreSQL: COPY the batch into a temporary table, then one INSERT ... SELECT (in file order)
_PG_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS segsync_events_in (n integer, contact_id bigint, "
    "type_id smallint, ts bigint, value double precision, properties text, source text, "
    "source_event_id text) ON COMMIT DROP"
)
_PG_COPY = f"COPY segsync_events_in (n, {_EVENT_COLUMNS}) FROM STDIN"
_PG_INSERT_EVENTS = (
    f"INSERT INTO events ({_EVENT_COLUMNS}) SELECT contact_id, type_id, ts, value, "
    "properties::json, source, source_event_id FROM segsync_events_in ORDER BY n "
    "ON CONFLICT (source, source_event_id) DO NOTHING"
)


def insert_events(conn: Connection, rows: Sequence[EventRow]) -> int:
    """Insert ``rows``, skipping any whose ``(source, source_event_id)`` is already stored
    (or repeated in ``rows``: the first one wins). Returns how many were inserted.

    This is the bulk path of imports and pulls, so it talks to the driver directly: SQLite
    ``executemany``; PostgreSQL ``COPY`` into a temporary table and one ``INSERT ... SELECT``.
    """
    if not rows:
        return 0
    params = [
        (r.contact_id, r.type_id, r.ts, r.value,
         r.properties if r.properties is None or isinstance(r.properties, str)
         else _dumps(r.properties), r.source, r.source_event_id)
        for r in rows
    ]
    cursor = conn.connection.cursor()
    try:
        if conn.dialect.name != "postgresql":
            cursor.executemany(_SQLITE_INSERT_EVENTS, params)
            return int(cursor.rowcount)
        cursor.execute(_PG_STAGE)
        cursor.execute("TRUNCATE segsync_events_in")
        with cursor.copy(_PG_COPY) as copy:
            for n, row in enumerate(params):
                copy.write_row((n, *row))
        cursor.execute(_PG_INSERT_EVENTS)
        return int(cursor.rowcount)
    except conn.dialect.loaded_dbapi.Error as e:
        raise StoreError(f"the store refused the events: {e}") from e
    finally:
        cursor.close()
