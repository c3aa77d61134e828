"""The store side of identities (the rules are in :mod:`sync.identity`): bulk reads and
writes of ``identities`` and of new contacts, following a provider's merges (rule 4), and
resolving event references (rule 6). Everything runs on the caller's connection, inside its
transaction.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from connectors.records import ContactRef
from sync.store import repo, schema

__all__ = [
    "CACHE_LIMIT", "Ident", "RefCache", "Row", "chunks", "hashed", "insert_contacts", "load_identities",
    "merge_records", "normalised_email", "resolve_refs", "write_identities",
]

LOG = logging.getLogger("segsync.identity")
_CHUNK = 900
CACHE_LIMIT = 500_000  # entries of a resolve_refs cache before it starts over


def normalised_email(text: str | None) -> str | None:
    """The stored form of ``text``, or None when it is missing or not an email."""
    if not text:
        return None
    try:
        return repo.normalise_email(text)
    except ValueError:
        return None


def hashed(key: str | None) -> str:
    """A contact key as logs show it (never the email itself)."""
    return "-" if key is None else "h:" + hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass
class Row:
    id: int | None
    email: str | None
    external_id: str | None
    attributes: dict[str, Any]
    original: tuple[str | None, str | None, str] | None  # None for a new contact

    def changed(self) -> bool:
        return self.original != (self.email, self.external_id, repo.canonical_json(self.attributes))


@dataclass(frozen=True)
class Ident:
    contact_id: int
    email: str | None
    archived: bool


def chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _insert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def load_identities(conn: Connection, provider: str, pids: Iterable[str]) -> dict[str, Ident]:
    i = schema.identities
    out: dict[str, Ident] = {}
    for chunk in chunks(sorted(set(pids))):
        query = select(i.c.provider_id, i.c.contact_id, i.c.email, i.c.archived).where(
            i.c.provider == provider, i.c.provider_id.in_(chunk))
        for r in conn.execute(query):
            out[r.provider_id] = Ident(int(r.contact_id), r.email, bool(r.archived))
    return out


def write_identities(conn: Connection, provider: str, rows: Sequence[dict[str, Any]],
                      now_ms: int, *, overwrite: bool = True) -> None:
    if not rows:
        return
    ins = _insert(conn)(schema.identities)
    values = [{"provider": provider, "updated_at": now_ms, **r} for r in rows]
    if overwrite:
        stmt = ins.on_conflict_do_update(
            index_elements=["provider", "provider_id"],
            set_={k: ins.excluded[k] for k in ("contact_id", "email", "archived", "updated_at")})
    else:
        stmt = ins.on_conflict_do_nothing(index_elements=["provider", "provider_id"])
    conn.execute(stmt, values)


def insert_contacts(conn: Connection, rows: Sequence[Row], now_ms: int) -> None:
    """Insert ``rows`` (new contacts) and set their ids."""
    if not rows:
        return
    c = schema.contacts
    stmt = c.insert().returning(c.c.id, sort_by_parameter_order=True)
    params = [{"email": r.email, "external_id": r.external_id, "attributes": r.attributes,
               "created_at": now_ms, "updated_at": now_ms} for r in rows]
    for row, new_id in zip(rows, conn.execute(stmt, params).scalars(), strict=True):
        row.id = int(new_id)


# ------------------------------------------------------------------------------- merges


def _contact_row(conn: Connection, contact_id: int) -> Row | None:
    c = schema.contacts
    r = conn.execute(select(c.c.id, c.c.email, c.c.external_id, c.c.attributes)
                     .where(c.c.id == contact_id)).first()
    return None if r is None else Row(r.id, r.email, r.external_id, dict(r.attributes or {}), None)


def _absorb(conn: Connection, gone: int, into: int, now_ms: int) -> None:
    """Move everything of contact ``gone`` to ``into`` and delete ``gone``."""
    c, e, i = schema.contacts, schema.events, schema.identities
    loser, winner = _contact_row(conn, gone), _contact_row(conn, into)
    if loser is None or winner is None:
        return
    conn.execute(update(e).where(e.c.contact_id == gone).values(contact_id=into))
    conn.execute(update(i).where(i.c.contact_id == gone).values(contact_id=into))
    conn.execute(delete(c).where(c.c.id == gone))
    conn.execute(update(c).where(c.c.id == into).values(
        email=winner.email or loser.email, external_id=winner.external_id or loser.external_id,
        attributes={**loser.attributes, **winner.attributes}, updated_at=now_ms))


def merge_records(conn: Connection, provider: str, surviving_id: str, merged_ids: Iterable[str],
                  now_ms: int) -> int:
    """The provider merged ``merged_ids`` into ``surviving_id``: follow it (module docstring,
    rule 4). Idempotent; returns how many merged ids changed anything."""
    survivor = load_identities(conn, provider, [surviving_id]).get(surviving_id)
    if survivor is None:
        return 0
    into = survivor.contact_id
    merged = [m for m in dict.fromkeys(merged_ids) if m and m != surviving_id]
    known = load_identities(conn, provider, merged)
    done = 0
    for pid in merged:
        ident = known.get(pid)
        if ident is not None and ident.contact_id == into and ident.archived:
            continue
        write_identities(conn, provider, [{"provider_id": pid, "contact_id": into,
                                            "email": ident.email if ident else None,
                                            "archived": True}], now_ms)
        done += 1
        if ident is None or ident.contact_id == into:
            continue
        gone = ident.contact_id
        i, e = schema.identities, schema.events
        live = conn.execute(select(i.c.provider_id).where(
            i.c.contact_id == gone, i.c.archived.is_(False)).limit(1)).first()
        if live is None:
            _absorb(conn, gone, into, now_ms)
        else:
            conn.execute(update(e).where(e.c.contact_id == gone, e.c.source == provider)
                         .values(contact_id=into))
        LOG.info("%s merged %s into %s: contact %d -> %d", provider, pid, surviving_id, gone, into)
    return done


# ------------------------------------------------------------------------------- events


RefCache = dict[tuple[str, str], int]  # ("p", provider id) / ("e", email) -> contact id


def resolve_refs(conn: Connection, provider: str, refs: Sequence[ContactRef], now_ms: int,
                 cache: RefCache | None = None) -> tuple[list[int | None], int]:
    """The contact id of each event reference (module docstring, rule 6), creating contacts
    and identities for unknown ones; None for a reference that cannot be resolved. Also
    returns how many contacts were created.

    ``cache`` (kept by the caller across the pages of one events stream, while no contact
    page runs in between) remembers resolved ids and emails, so a stream of events for the
    same contacts looks each one up once."""
    cache = {} if cache is None else cache
    emails = [normalised_email(r.email) for r in refs]
    found: list[int | None] = [cache.get(("p", r.provider_id or ""), None) for r in refs]
    by_pid = load_identities(conn, provider, {
        r.provider_id for n, r in enumerate(refs) if r.provider_id and found[n] is None})
    known_pids = {r.provider_id for n, r in enumerate(refs) if r.provider_id and found[n] is not None}
    known_pids.update(by_pid)
    for n, ref in enumerate(refs):
        if found[n] is None and ref.provider_id in by_pid:
            found[n] = by_pid[ref.provider_id].contact_id
        if found[n] is None and emails[n] is not None:
            found[n] = cache.get(("e", emails[n] or ""))
    wanted = sorted({e for n, e in enumerate(emails) if e and found[n] is None})
    by_email = _email_lookup(conn, provider, wanted)
    groups: dict[tuple[str, str], Row] = {}  # ("p", id) / ("e", email) -> the contact to create
    rows: list[Row] = []
    for n, ref in enumerate(refs):
        email = emails[n]
        if found[n] is None and email is not None:
            found[n] = by_email.get(email)
        if found[n] is not None:
            continue
        keys = [k for k in (("p", ref.provider_id or ""), ("e", email or "")) if k[1]]
        if not keys:
            continue  # no id and no valid email: unresolvable
        row = next((groups[k] for k in keys if k in groups), None)
        if row is None:
            row = Row(None, None, None, {}, None)
            rows.append(row)
        if email and row.email is None and ("e", email) not in groups:
            row.email = email
        for key in keys:
            groups.setdefault(key, row)
    insert_contacts(conn, rows, now_ms)
    links: dict[str, dict[str, Any]] = {}
    for n, ref in enumerate(refs):
        email = emails[n]
        if found[n] is None:
            row = groups.get(("p", ref.provider_id) if ref.provider_id else ("e", email or ""))
            found[n] = row.id if row is not None else None
        contact_id = found[n]
        if contact_id is None:
            continue
        if ref.provider_id:
            cache[("p", ref.provider_id)] = contact_id
            if ref.provider_id not in known_pids:
                links.setdefault(ref.provider_id, {"provider_id": ref.provider_id,
                                                   "contact_id": contact_id, "email": email,
                                                   "archived": False})
        elif email:
            cache[("e", email)] = contact_id
    write_identities(conn, provider, list(links.values()), now_ms, overwrite=False)
    if len(cache) > CACHE_LIMIT:
        cache.clear()
    return found, len(rows)


def _email_lookup(conn: Connection, provider: str, emails: Sequence[str]) -> dict[str, int]:
    """email -> contact id: this provider's identities first (live before archived, newest
    first), then the contacts' own emails."""
    i, c = schema.identities, schema.contacts
    out: dict[str, int] = {}
    for chunk in chunks(emails):
        query = (select(i.c.email, i.c.contact_id)
                 .where(i.c.provider == provider, i.c.email.in_(chunk))
                 .order_by(i.c.archived.desc(), i.c.updated_at))  # the last one written wins
        for r in conn.execute(query):
            out[r.email] = int(r.contact_id)
        rest = [e for e in chunk if e not in out]
        if rest:
            for r in conn.execute(select(c.c.email, c.c.id).where(c.c.email.in_(rest))):
                out[r.email] = int(r.id)
    return out
