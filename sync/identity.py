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
bulk, decided in memory and written with ``executemany``. This module holds rules 1-3 and 5
(:func:`upsert_pulled_contacts`); merges (:func:`merge_records`) and event references
(:func:`resolve_refs`) are in :mod:`sync.identity_links` and re-exported here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, bindparam, select, update

from sync.identity_links import (
    CACHE_LIMIT,
    Ident,
    RefCache,
    Row,
    chunks,
    hashed,
    insert_contacts,
    load_identities,
    merge_records,
    normalised_email,
    resolve_refs,
    write_identities,
)
from sync.store import repo, schema

__all__ = [
    "CACHE_LIMIT",
    "ContactOutcome",
    "MatchOrder",
    "PulledContact",
    "RefCache",
    "merge_records",
    "normalised_email",
    "resolve_refs",
    "upsert_pulled_contacts",
]

LOG = logging.getLogger("segsync.identity")
MatchOrder = Literal["email", "external_id"]


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


class _Book:
    """The contacts a page touches: loaded in bulk, edited in memory, written by `flush`."""

    def __init__(self, conn: Connection, provider: str) -> None:
        self.conn = conn
        self.provider = provider
        self.by_id: dict[int, Row] = {}
        self.by_email: dict[str, Row] = {}
        self.by_ext: dict[str, Row] = {}
        self.idents: dict[str, Ident] = {}
        self.touched: dict[int, Row] = {}  # id(row) -> row
        self.new_idents: set[str] = set()
        self.ident_writes: dict[str, tuple[Row, str | None, bool]] = {}
        self.conflicts: list[str] = []

    def load(self, records: Sequence[PulledContact]) -> None:
        self.idents = load_identities(self.conn, self.provider, (r.provider_id for r in records))
        c = schema.contacts
        wanted = (
            (c.c.id, sorted({i.contact_id for i in self.idents.values()})),
            (c.c.email, sorted({r.email for r in records if r.email})),
            (c.c.external_id, sorted({r.external_id for r in records if r.external_id})),
        )
        for column, keys in wanted:
            for chunk in chunks(keys):
                query = select(c.c.id, c.c.email, c.c.external_id, c.c.attributes).where(
                    column.in_(chunk))
                for r in self.conn.execute(query):
                    if r.id not in self.by_id:
                        attrs = dict(r.attributes or {})
                        self._index(Row(r.id, r.email, r.external_id, attrs,
                                         (r.email, r.external_id, repo.canonical_json(attrs))))

    def _index(self, row: Row) -> None:
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

    def _set_key(self, row: Row, kind: Literal["email", "external_id"], value: str) -> None:
        index = self.by_email if kind == "email" else self.by_ext
        old = getattr(row, kind)
        if old is not None:
            index.pop(old, None)
        setattr(row, kind, value)
        index[value] = row
        if row.id is not None:  # written now, in order, so the unique keys never clash
            c = schema.contacts
            self.conn.execute(update(c).where(c.c.id == row.id).values({kind: value}))

    def _match(self, r: PulledContact, order: MatchOrder) -> Row | None:
        by_e = self.by_email.get(r.email) if r.email else None
        by_x = self.by_ext.get(r.external_id) if r.external_id else None
        first, second, key = (by_e, by_x, "email") if order == "email" else (by_x, by_e, "external_id")
        if first is not None:
            return first
        if second is not None and (getattr(second, key) is None or getattr(r, key) is None):
            return second
        return None  # a second-key hit with another first key is someone else (_fill_keys says so)

    def _new(self, r: PulledContact) -> Row:
        email = r.email if r.email and r.email not in self.by_email else None
        ext = r.external_id if r.external_id and r.external_id not in self.by_ext else None
        row = Row(None, email, ext, {}, None)
        self._index(row)
        return row

    def _email_changed(self, row: Row, r: PulledContact, previous: str | None) -> None:
        """The record's email changed and the contact had its old one: follow when free."""
        if not r.email or previous is None or r.email == previous or row.email != previous:
            return
        if r.email not in self.by_email:
            self._set_key(row, "email", r.email)

    def _fill_keys(self, row: Row, r: PulledContact, report: bool) -> None:
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
        insert_contacts(self.conn, new, now_ms)
        if changed:
            c = schema.contacts
            self.conn.execute(
                update(c).where(c.c.id == bindparam("b_id")).values(
                    email=bindparam("b_email"), external_id=bindparam("b_ext"),
                    attributes=bindparam("b_attrs", type_=c.c.attributes.type), updated_at=now_ms),
                [{"b_id": r.id, "b_email": r.email, "b_ext": r.external_id, "b_attrs": r.attributes}
                 for r in changed],
            )
        write_identities(self.conn, self.provider, [
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
