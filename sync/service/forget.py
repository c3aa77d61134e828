"""Deletion, privacy and suppressions.

* :func:`remove_contacts` deletes everything segsync holds about contacts: the contact row,
  identities, events, memberships, group stages, computed values, desired and acknowledged
  destination values, queued pushes and inbox items; the audit log keeps its entries but their
  contact key is replaced by its hash.
* :func:`forget` (``segsync forget KEY``, HubSpot ``contact.privacyDeletion``) does that and
  records **suppressions**: sha256 hashes of the contact's normalised email(s), external id and
  provider record ids, so that no later pull, import or webhook brings the person back.
  :func:`is_suppressed` / :func:`suppressed` answer for the ingest paths. A key with no contact
  is still suppressed (a deletion request can arrive before the data).
* Remote deletion (``[service] forget_remote``) is *not* implemented: the connectors have no
  call for it yet. The endpoints it needs are HubSpot ``POST /crm/v3/objects/contacts/gdpr-delete``
  (``{"objectId": id}`` or ``{"objectId": email, "idProperty": "email"}``) and Klaviyo
  ``POST /api/data-privacy-deletion-jobs`` (a ``data-privacy-deletion-job`` naming the profile
  by email, phone number or id). :func:`remote_deletion_notes` says so for each configured
  provider, so the operator can request it by hand.

Keys accepted by :func:`find_contacts`: an email, ``hubspot:<id>``, ``klaviyo:<id>``,
``external_id:<id>``, ``contact:<segsync id>``, or a bare external id.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, and_, delete, or_, select, update

from mapping.errors import InputError
from sync.store import repo, schema
from sync.store.tx import begin_write

__all__ = ["ForgetReport", "find_contacts", "forget", "is_suppressed", "key_hash",
           "remote_deletion_notes", "remove_contacts", "suppress_keys", "suppressed"]

LOG = logging.getLogger("segsync.forget")
KINDS = ("email", "external_id", "hubspot", "klaviyo")
_CHUNK = 900


def key_hash(kind: str, value: str) -> str:
    """sha256 hex of ``kind:value`` (emails normalised first)."""
    if kind == "email":
        value = repo.normalise_email(value)
    return hashlib.sha256(f"{kind}:{value.strip()}".encode()).hexdigest()


def _safe_hash(kind: str, value: str | None) -> str | None:
    if not value or not value.strip():
        return None
    try:
        return key_hash(kind, value)
    except ValueError:
        return None  # not an email: cannot be one later either


def suppressed(conn: Connection, kind: str, values: Iterable[str | None]) -> set[str]:
    """The ``values`` (of one kind: email, external_id, hubspot, klaviyo) that are suppressed."""
    hashes = {h: v for v in values if v and (h := _safe_hash(kind, v))}
    s = schema.suppressions
    found: set[str] = set()
    keys = sorted(hashes)
    for i in range(0, len(keys), _CHUNK):
        rows = conn.execute(select(s.c.key_hash).where(s.c.kind == kind,
                                                       s.c.key_hash.in_(keys[i:i + _CHUNK])))
        found.update(hashes[h] for h in rows.scalars())
    return found


def is_suppressed(conn: Connection, *, email: str | None = None, provider: str | None = None,
                  provider_id: str | None = None, external_id: str | None = None) -> bool:
    """Whether any of the given keys belongs to a forgotten person."""
    checks = [("email", email), ("external_id", external_id)]
    if provider is not None:
        checks.append((provider, provider_id))
    return any(value and suppressed(conn, kind, [value]) for kind, value in checks)


def suppress_keys(conn: Connection, keys: Iterable[tuple[str, str]], reason: str, now_ms: int) -> int:
    """Record suppressions for ``(kind, value)`` pairs; returns how many were new."""
    hashes = {(k, h) for k, v in keys if (h := _safe_hash(k, v))}
    s = schema.suppressions
    new = 0
    for kind, digest in sorted(hashes):
        exists = conn.execute(select(s.c.kind).where(s.c.kind == kind, s.c.key_hash == digest)).first()
        if exists is None:
            conn.execute(s.insert().values(kind=kind, key_hash=digest, reason=reason[:64],
                                           created_at=now_ms))
            new += 1
    return new


def find_contacts(conn: Connection, key: str) -> tuple[list[int], list[tuple[str, str]]]:
    """Contact ids a KEY names, and the ``(kind, value)`` suppression keys the KEY itself is."""
    text = key.strip()
    c, i = schema.contacts, schema.identities
    kind, _, value = text.partition(":")
    if "@" in text and not (kind in ("hubspot", "klaviyo", "external_id") and value):
        try:
            email = repo.normalise_email(text)
        except ValueError as e:
            raise InputError(f"forget: {e}") from None
        ids = set(conn.execute(select(c.c.id).where(c.c.email == email)).scalars())
        ids |= set(conn.execute(select(i.c.contact_id).where(i.c.email == email)).scalars())
        return sorted(ids), [("email", email)]
    if kind in ("hubspot", "klaviyo") and value:
        found = conn.execute(select(i.c.contact_id).where(i.c.provider == kind, i.c.provider_id == value))
        return sorted(set(found.scalars())), [(kind, value)]
    if kind == "contact" and value.isdigit():
        return sorted(set(conn.execute(select(c.c.id).where(c.c.id == int(value))).scalars())), []
    ext = value if kind == "external_id" and value else text
    if not ext:
        raise InputError("forget: give an email, hubspot:<id>, klaviyo:<id> or external_id:<id>")
    return sorted(set(conn.execute(select(c.c.id).where(c.c.external_id == ext)).scalars())), [
        ("external_id", ext)]


@dataclass
class ForgetReport:
    contacts: int = 0
    events: int = 0
    identities: int = 0
    destination_values: int = 0
    queued_pushes: int = 0
    suppressed: int = 0  # new suppression entries
    keys: list[tuple[str, str]] = field(default_factory=list)  # (kind, value) of the person
    notes: list[str] = field(default_factory=list)


def _in(column: ColumnElement[Any], values: Sequence[object]) -> list[ColumnElement[bool]]:
    return [column.in_(values[i:i + _CHUNK]) for i in range(0, len(values), _CHUNK)]


def remove_contacts(conn: Connection, contact_ids: Sequence[int]) -> ForgetReport:
    """Delete every local trace of ``contact_ids`` in the caller's transaction."""
    report = ForgetReport()
    ids = sorted(set(contact_ids))
    if not ids:
        return report
    c, i, e = schema.contacts, schema.identities, schema.events
    keys: list[tuple[str, str]] = []
    records: list[tuple[str, str]] = []
    for cond in _in(c.c.id, ids):
        for email, ext in conn.execute(select(c.c.email, c.c.external_id).where(cond)):
            keys += [("email", email)] if email else []
            keys += [("external_id", ext)] if ext else []
    for cond in _in(i.c.contact_id, ids):
        for provider, pid, email in conn.execute(select(i.c.provider, i.c.provider_id, i.c.email)
                                                 .where(cond)):
            keys.append((provider, pid))
            records.append((provider, pid))
            keys += [("email", email)] if email else []
    report.keys = list(dict.fromkeys(keys))
    by_record = [and_(t.c.destination == d, t.c.record_id == r)
                 for t in (schema.acked_values,) for d, r in records]
    for cond in _in(e.c.contact_id, ids):
        report.events += conn.execute(delete(e).where(cond)).rowcount or 0
    for table in (schema.memberships, schema.group_state, schema.computed_values):
        for cond in _in(table.c.contact_id, ids):
            conn.execute(delete(table).where(cond))
    for cond in _in(schema.desired_values.c.contact_id, ids):
        report.destination_values += conn.execute(delete(schema.desired_values).where(cond)).rowcount or 0
    for n in range(0, len(by_record), 200):
        conn.execute(delete(schema.acked_values).where(or_(*by_record[n:n + 200])))
    o = schema.outbox
    out_records = [and_(o.c.destination == d, o.c.record_id == r) for d, r in records]
    for cond in _in(o.c.contact_id, ids) + [or_(*out_records[n:n + 200])
                                            for n in range(0, len(out_records), 200)]:
        report.queued_pushes += conn.execute(delete(o).where(cond)).rowcount or 0
    for cond in _in(schema.inbox.c.contact_id, ids):
        conn.execute(delete(schema.inbox).where(cond))
    a = schema.audit_log
    for cond in _in(a.c.contact_id, ids):
        for row in conn.execute(select(a.c.contact_key).where(cond).distinct()):
            if row.contact_key and not row.contact_key.startswith("h:"):
                hidden = "h:" + hashlib.sha256(row.contact_key.encode()).hexdigest()[:12]
                conn.execute(update(a).where(cond, a.c.contact_key == row.contact_key)
                             .values(contact_key=hidden))
    for cond in _in(i.c.contact_id, ids):
        report.identities += conn.execute(delete(i).where(cond)).rowcount or 0
    for cond in _in(c.c.id, ids):
        report.contacts += conn.execute(delete(c).where(cond)).rowcount or 0
    return report


def forget_in(conn: Connection, contact_ids: Sequence[int], extra_keys: Sequence[tuple[str, str]],
              *, reason: str, now_ms: int) -> ForgetReport:
    """Remove ``contact_ids`` and suppress their keys and ``extra_keys`` (caller's transaction)."""
    report = remove_contacts(conn, contact_ids)
    report.keys = list(dict.fromkeys([*report.keys, *extra_keys]))
    report.suppressed = suppress_keys(conn, report.keys, reason, now_ms)
    LOG.info("forgot %d contact(s) (%s); %d new suppression(s)", report.contacts, reason,
             report.suppressed)
    return report


def forget(engine: Engine, key: str, *, now_ms: int, reason: str = "forget") -> ForgetReport:
    """``segsync forget KEY``: remove the person KEY names and suppress them, in one transaction."""
    with begin_write(engine) as conn:
        ids, own = find_contacts(conn, key)
        return forget_in(conn, ids, own, reason=reason, now_ms=now_ms)


def remote_deletion_notes(providers: Iterable[str], report: ForgetReport) -> list[str]:
    """What could not be requested in the providers (the connectors lack the calls)."""
    endpoints = {"hubspot": "POST /crm/v3/objects/contacts/gdpr-delete",
                 "klaviyo": "POST /api/data-privacy-deletion-jobs"}
    notes = []
    for provider in providers:
        ids = [v for k, v in report.keys if k == provider]
        shown = f" (record {', '.join(ids)})" if ids else ""
        notes.append(f"{provider}: deletion not requested{shown}: the {provider} connector has no "
                     f"privacy-deletion call yet ({endpoints.get(provider, '?')}); request it there")
    return notes
