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
* Remote deletion (``[service] forget_remote``): :func:`forget_in` also queues, in the same
  transaction, a privacy-deletion request for each configured provider (except the one the
  deletion came from: a HubSpot privacy-deletion webhook is not sent back to HubSpot), naming
  the person by the provider's record id when known, else by email
  (:mod:`sync.remote_delete`, which sends them: HubSpot ``gdpr-delete``, Klaviyo
  ``data-privacy-deletion-jobs``). A provider for which neither is known gets a note instead.

Keys accepted by :func:`find_contacts`: an email, ``hubspot:<id>``, ``klaviyo:<id>``,
``external_id:<id>``, ``contact:<segsync id>``, or a bare external id.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection, Engine, and_, delete, or_, select, update

from mapping.errors import InputError
from sync.store import repo, schema
from sync.store.tx import begin_write

if TYPE_CHECKING:
    from sync.remote_delete import Target

__all__ = ["ForgetReport", "find_contacts", "forget", "hide_key", "is_suppressed", "key_hash",
           "remove_contacts", "suppress_keys", "suppressed"]

LOG = logging.getLogger("segsync.forget")
KINDS = ("email", "external_id", "hubspot", "klaviyo")
_CHUNK = 900


def key_hash(kind: str, value: str) -> str:
    """sha256 hex of ``kind:value`` (emails normalised first)."""
    if kind == "email":
        value = repo.normalise_email(value)
    return hashlib.sha256(f"{kind}:{value.strip()}".encode()).hexdigest()


def hide_key(key: str) -> str:
    """The audit log's stand-in for a forgotten contact key: ``h:`` + a sha256 prefix."""
    return "h:" + hashlib.sha256(key.encode()).hexdigest()[:12]


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
    contact_key: str | None = None  # the (first) removed contact's email or external id
    remote: list[tuple[int, Target]] = field(default_factory=list)  # queued deletion requests
    notes: list[str] = field(default_factory=list)  # providers that could not be asked


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
        for email, ext in conn.execute(select(c.c.email, c.c.external_id).where(cond).order_by(c.c.id)):
            keys += [("email", email)] if email else []
            keys += [("external_id", ext)] if ext else []
            report.contact_key = report.contact_key or email or ext
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
                conn.execute(update(a).where(cond, a.c.contact_key == row.contact_key)
                             .values(contact_key=hide_key(row.contact_key)))
    for cond in _in(i.c.contact_id, ids):
        report.identities += conn.execute(delete(i).where(cond)).rowcount or 0
    for cond in _in(c.c.id, ids):
        report.contacts += conn.execute(delete(c).where(cond)).rowcount or 0
    return report


def forget_in(conn: Connection, contact_ids: Sequence[int], extra_keys: Sequence[tuple[str, str]],
              *, reason: str, now_ms: int, remote: Sequence[str] = (),
              trigger: str = "manual") -> ForgetReport:
    """Remove ``contact_ids``, suppress their keys and ``extra_keys``, and queue a deletion
    request in each provider of ``remote`` (all in the caller's transaction)."""
    from sync import remote_delete

    report = remove_contacts(conn, contact_ids)
    report.keys = list(dict.fromkeys([*report.keys, *extra_keys]))
    report.suppressed = suppress_keys(conn, report.keys, reason, now_ms)
    if remote:
        wanted, unknown = remote_delete.targets(report.keys, remote)
        plain = report.contact_key or next(  # a key with no contact: the key itself
            (v if k in ("email", "external_id") else f"{k}:{v}" for k, v in report.keys), None)
        ids = remote_delete.enqueue(conn, wanted, reason=reason, trigger=trigger,
                                    contact_key=hide_key(plain) if plain else None, now_ms=now_ms)
        report.remote = list(zip(ids, wanted, strict=True))
        report.notes = [f"{p}: deletion not requested: no {p} record id and no email is known "
                        "for this person; request it there" for p in unknown]
    LOG.info("forgot %d contact(s) (%s); %d new suppression(s); %d deletion request(s) queued",
             report.contacts, reason, report.suppressed, len(report.remote))
    return report


def forget(engine: Engine, key: str, *, now_ms: int, reason: str = "forget",
           remote: Sequence[str] = ()) -> ForgetReport:
    """``segsync forget KEY``: remove the person KEY names, suppress them and queue the deletion
    requests of ``remote``, in one transaction (sending them is :mod:`sync.remote_delete`'s)."""
    with begin_write(engine) as conn:
        ids, own = find_contacts(conn, key)
        return forget_in(conn, ids, own, reason=reason, now_ms=now_ms, remote=remote)
