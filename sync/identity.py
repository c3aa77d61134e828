"""Identity: which segsync contact a provider's record (or an event's contact reference) is.

The contract, in the order the rules apply:

1. **A linked record stays linked.** Once ``(provider, provider_id)`` is in ``identities`` it
   always resolves to that contact, whatever its email becomes.
2. **A new record is matched by key**, in the order of ``[identity] match``: ``"email"``
   (default) matches the normalised email first, then the external id; ``"external_id"`` the
   other way round. The second key only matches a contact that has no value (or the same
   value) for the first key: two records with different emails are different people in email
   mode, whatever their external ids say (and symmetrically). No match -> a new contact.
   People in both HubSpot and Klaviyo thus become one contact, and so do a provider's
   case/whitespace duplicates of one email. A missing or invalid email is no key.
3. **A linked record's email change** moves the contact's email when the contact's email was
   the one that record had (it "owned" it) and the new email is free. When the new email
   already belongs to *another* contact, the two stay separate (merging two histories on an
   email edit would be a guess) and the conflict is reported; the identity records the
   provider's current email so its events still find this contact (rule 6). A contact whose
   key is empty takes a linked record's key when that key is free. Keys are never cleared.
   Conflicts (a record's key held by another contact, a second external id) are reported
   when a record is linked or its email changes, not on every re-read.
4. **Merges** (HubSpot ``hs_merged_object_ids`` on the surviving record, or a ``contact.merge``
   webhook) follow the surviving id: each merged id's identity is repointed to the surviving
   contact (kept, marked archived, so references to the old id still resolve). When the merged
   contact has no other live identity it is absorbed: its events and identities move to the
   surviving contact, missing attributes and keys are taken over, and the empty contact row is
   deleted. Otherwise (it is still someone in another provider) only the events pulled from
   the merging provider move.
5. **Archived / deleted** provider records mark their identity ``archived``; the contact stays.
6. **Events** resolve their reference by: the provider id's identity; an identity of the same
   provider with that email (covers merged and re-emailed records); a contact with that email.
   An unknown reference *creates* the contact (with the email when it is free) and records the
   provider id's identity, so events never wait for a contacts pull and the later pull of the
   record lands on the same contact. A reference with neither a known id nor a valid email is
   unresolvable: that event is skipped and counted.

Everything works on one open connection inside the caller's transaction; pages are loaded in
bulk, decided in memory and written with ``executemany``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from connectors.records import ContactRef
from sync.store import repo, schema

__all__ = [
    "ContactOutcome",
    "MatchOrder",
    "PulledContact",
    "merge_records",
    "normalised_email",
    "resolve_refs",
    "upsert_pulled_contacts",
]

LOG = logging.getLogger("segsync.identity")
MatchOrder = Literal["email", "external_id"]
_CHUNK = 900


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


@dataclass(frozen=True)
class PulledContact:
    """A provider record ready to store: keys normalised, attributes typed (None = clear)."""

    provider_id: str
    email: str | None
    external_id: str | None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    archived: bool = False
    merged_ids: tuple[str, ...] = ()


@dataclass
class ContactOutcome:
    """What one page of records did to the contacts (distinct contacts, not records)."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    linked: int = 0  # identities created
    merged: int = 0  # merged provider ids followed
    conflicts: list[str] = field(default_factory=list)


@dataclass
class _Row:
    id: int | None
    email: str | None
    external_id: str | None
    attributes: dict[str, Any]
    original: tuple[str | None, str | None, str] | None  # None for a new contact

    def changed(self) -> bool:
        return self.original != (self.email, self.external_id, repo.canonical_json(self.attributes))


@dataclass(frozen=True)
class _Ident:
    contact_id: int
    email: str | None
    archived: bool


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _insert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _load_identities(conn: Connection, provider: str, pids: Iterable[str]) -> dict[str, _Ident]:
    i = schema.identities
    out: dict[str, _Ident] = {}
    for chunk in _chunks(sorted(set(pids))):
        query = select(i.c.provider_id, i.c.contact_id, i.c.email, i.c.archived).where(
            i.c.provider == provider, i.c.provider_id.in_(chunk))
        for r in conn.execute(query):
            out[r.provider_id] = _Ident(int(r.contact_id), r.email, bool(r.archived))
    return out


def _write_identities(conn: Connection, provider: str, rows: Sequence[dict[str, Any]],
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


def _insert_contacts(conn: Connection, rows: Sequence[_Row], now_ms: int) -> None:
    """Insert ``rows`` (new contacts) and set their ids."""
    if not rows:
        return
    c = schema.contacts
    stmt = c.insert().returning(c.c.id, sort_by_parameter_order=True)
    params = [{"email": r.email, "external_id": r.external_id, "attributes": r.attributes,
               "created_at": now_ms, "updated_at": now_ms} for r in rows]
    for row, new_id in zip(rows, conn.execute(stmt, params).scalars(), strict=True):
        row.id = int(new_id)


class _Book:
    """The contacts a page touches: loaded in bulk, edited in memory, written by `flush`."""

    def __init__(self, conn: Connection, provider: str) -> None:
        self.conn = conn
        self.provider = provider
        self.by_id: dict[int, _Row] = {}
        self.by_email: dict[str, _Row] = {}
        self.by_ext: dict[str, _Row] = {}
        self.idents: dict[str, _Ident] = {}
        self.touched: dict[int, _Row] = {}  # id(row) -> row
        self.new_idents: set[str] = set()
        self.ident_writes: dict[str, tuple[_Row, str | None, bool]] = {}
        self.conflicts: list[str] = []

    def load(self, records: Sequence[PulledContact]) -> None:
        self.idents = _load_identities(self.conn, self.provider, (r.provider_id for r in records))
        c = schema.contacts
        wanted = (
            (c.c.id, sorted({i.contact_id for i in self.idents.values()})),
            (c.c.email, sorted({r.email for r in records if r.email})),
            (c.c.external_id, sorted({r.external_id for r in records if r.external_id})),
        )
        for column, keys in wanted:
            for chunk in _chunks(keys):
                query = select(c.c.id, c.c.email, c.c.external_id, c.c.attributes).where(
                    column.in_(chunk))
                for r in self.conn.execute(query):
                    if r.id not in self.by_id:
                        attrs = dict(r.attributes or {})
                        self._index(_Row(r.id, r.email, r.external_id, attrs,
                                         (r.email, r.external_id, repo.canonical_json(attrs))))

    def _index(self, row: _Row) -> None:
        if row.id is not None:
            self.by_id[row.id] = row
        if row.email:
            self.by_email[row.email] = row
        if row.external_id:
            self.by_ext[row.external_id] = row

    def _conflict(self, record: PulledContact, reason: str) -> None:
        text = f"{self.provider} record {record.provider_id}: {reason}"
        LOG.info("identity conflict: %s", text)  # the pull summary reports it
        self.conflicts.append(text)

    def _set_key(self, row: _Row, kind: Literal["email", "external_id"], value: str) -> None:
        index = self.by_email if kind == "email" else self.by_ext
        old = getattr(row, kind)
        if old is not None:
            index.pop(old, None)
        setattr(row, kind, value)
        index[value] = row
        if row.id is not None:  # written now, in order, so the unique keys never clash
            c = schema.contacts
            self.conn.execute(update(c).where(c.c.id == row.id).values({kind: value}))

    def _match(self, r: PulledContact, order: MatchOrder) -> _Row | None:
        by_e = self.by_email.get(r.email) if r.email else None
        by_x = self.by_ext.get(r.external_id) if r.external_id else None
        first, second, key = (by_e, by_x, "email") if order == "email" else (by_x, by_e, "external_id")
        if first is not None:
            return first
        if second is not None and (getattr(second, key) is None or getattr(r, key) is None):
            return second
        return None  # a second-key hit with another first key is someone else (_fill_keys says so)

    def _new(self, r: PulledContact) -> _Row:
        email = r.email if r.email and r.email not in self.by_email else None
        ext = r.external_id if r.external_id and r.external_id not in self.by_ext else None
        row = _Row(None, email, ext, {}, None)
        self._index(row)
        return row

    def _email_changed(self, row: _Row, r: PulledContact, previous: str | None) -> None:
        """The record's email changed and the contact had its old one: follow when free."""
        if not r.email or previous is None or r.email == previous or row.email != previous:
            return
        if r.email not in self.by_email:
            self._set_key(row, "email", r.email)

    def _fill_keys(self, row: _Row, r: PulledContact, report: bool) -> None:
        """Empty keys of the contact take the record's free ones; a key held by another contact
        (or a second external id) is a conflict, reported when ``report``."""
        keys: tuple[tuple[Literal["email", "external_id"], str | None], ...] = (
            ("email", r.email), ("external_id", r.external_id))
        for kind, value in keys:
            current = getattr(row, kind)
            if value is None or current == value:
                continue
            label = kind.replace("_", " ")
            holder = (self.by_email if kind == "email" else self.by_ext).get(value)
            if current is None and holder is None:
                self._set_key(row, kind, value)
            elif not report:
                continue
            elif holder is not None:
                shown = hashed(value) if kind == "email" else value
                self._conflict(r, f"its {label} {shown} belongs to another contact: the two are "
                               "kept apart")
            elif kind == "external_id":  # two emails across providers are normal; two ids are not
                self._conflict(r, f"its contact already has another {label}: kept that one")

    def apply(self, r: PulledContact, order: MatchOrder) -> None:
        ident = self.idents.get(r.provider_id)
        row = self.by_id.get(ident.contact_id) if ident is not None else None
        if row is None:
            row = self._match(r, order) or self._new(r)
        else:
            assert ident is not None
            self._email_changed(row, r, ident.email)
        self._fill_keys(row, r, report=ident is None or ident.email != r.email)
        for name, value in r.attributes.items():
            if value is None:
                row.attributes.pop(name, None)
            else:
                row.attributes[name] = value
        self.touched[id(row)] = row
        if ident is None:
            self.new_idents.add(r.provider_id)
        if ident is None or ident.contact_id != row.id or ident.email != r.email or (
            ident.archived != r.archived
        ):
            self.ident_writes[r.provider_id] = (row, r.email, r.archived)

    def flush(self, now_ms: int) -> ContactOutcome:
        rows = list(self.touched.values())
        new = [r for r in rows if r.id is None]
        changed = [r for r in rows if r.id is not None and r.changed()]
        _insert_contacts(self.conn, new, now_ms)
        if changed:
            c = schema.contacts
            self.conn.execute(
                update(c).where(c.c.id == bindparam("b_id")).values(
                    email=bindparam("b_email"), external_id=bindparam("b_ext"),
                    attributes=bindparam("b_attrs", type_=c.c.attributes.type), updated_at=now_ms),
                [{"b_id": r.id, "b_email": r.email, "b_ext": r.external_id, "b_attrs": r.attributes}
                 for r in changed],
            )
        _write_identities(self.conn, self.provider, [
            {"provider_id": pid, "contact_id": row.id, "email": email, "archived": archived}
            for pid, (row, email, archived) in self.ident_writes.items()
        ], now_ms)
        return ContactOutcome(new=len(new), updated=len(changed),
                              unchanged=len(rows) - len(new) - len(changed),
                              linked=len(self.new_idents), conflicts=self.conflicts)


def upsert_pulled_contacts(conn: Connection, provider: str, records: Sequence[PulledContact],
                           now_ms: int, *, match: MatchOrder = "email") -> ContactOutcome:
    """Store one page of a provider's contacts (see the module docstring for the rules)."""
    book = _Book(conn, provider)
    book.load(records)
    for record in records:
        book.apply(record, match)
    outcome = book.flush(now_ms)
    for record in records:
        if record.merged_ids:
            outcome.merged += merge_records(conn, provider, record.provider_id, record.merged_ids,
                                            now_ms)
    return outcome


# ------------------------------------------------------------------------------- merges


def _contact_row(conn: Connection, contact_id: int) -> _Row | None:
    c = schema.contacts
    r = conn.execute(select(c.c.id, c.c.email, c.c.external_id, c.c.attributes)
                     .where(c.c.id == contact_id)).first()
    return None if r is None else _Row(r.id, r.email, r.external_id, dict(r.attributes or {}), None)


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
    survivor = _load_identities(conn, provider, [surviving_id]).get(surviving_id)
    if survivor is None:
        return 0
    into = survivor.contact_id
    merged = [m for m in dict.fromkeys(merged_ids) if m and m != surviving_id]
    known = _load_identities(conn, provider, merged)
    done = 0
    for pid in merged:
        ident = known.get(pid)
        if ident is not None and ident.contact_id == into and ident.archived:
            continue
        _write_identities(conn, provider, [{"provider_id": pid, "contact_id": into,
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


def resolve_refs(conn: Connection, provider: str, refs: Sequence[ContactRef],
                 now_ms: int) -> tuple[list[int | None], int]:
    """The contact id of each event reference (module docstring, rule 6), creating contacts
    and identities for unknown ones; None for a reference that cannot be resolved. Also
    returns how many contacts were created."""
    emails = [normalised_email(r.email) for r in refs]
    found: list[int | None] = [None] * len(refs)
    by_pid = _load_identities(conn, provider, (r.provider_id for r in refs if r.provider_id))
    for n, ref in enumerate(refs):
        if ref.provider_id and ref.provider_id in by_pid:
            found[n] = by_pid[ref.provider_id].contact_id
    wanted = sorted({e for n, e in enumerate(emails) if e and found[n] is None})
    by_email = _email_lookup(conn, provider, wanted)
    groups: dict[tuple[str, str], _Row] = {}  # ("p", id) / ("e", email) -> the contact to create
    rows: list[_Row] = []
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
            row = _Row(None, None, None, {}, None)
            rows.append(row)
        if email and row.email is None and ("e", email) not in groups:
            row.email = email
        for key in keys:
            groups.setdefault(key, row)
    _insert_contacts(conn, rows, now_ms)
    links: dict[str, dict[str, Any]] = {}
    for n, ref in enumerate(refs):
        email = emails[n]
        if found[n] is None:
            key = ("p", ref.provider_id) if ref.provider_id else ("e", email or "")
            row = groups.get(key)
            found[n] = row.id if row is not None else None
        if ref.provider_id and ref.provider_id not in by_pid and found[n] is not None:
            links.setdefault(ref.provider_id, {"provider_id": ref.provider_id,
                                               "contact_id": found[n], "email": email,
                                               "archived": False})
    _write_identities(conn, provider, list(links.values()), now_ms, overwrite=False)
    return found, len(rows)


def _email_lookup(conn: Connection, provider: str, emails: Sequence[str]) -> dict[str, int]:
    """email -> contact id: this provider's identities first (live before archived, newest
    first), then the contacts' own emails."""
    i, c = schema.identities, schema.contacts
    out: dict[str, int] = {}
    for chunk in _chunks(emails):
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
