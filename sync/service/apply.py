"""What an inbox item does to the store (inside the worker's transaction).

HubSpot contact events (``contact.*``), with ``objectId`` the HubSpot record id:

* ``propertyChange`` of a linked record: the property is read like a pull reads it
  (:class:`sync.pull_map.SourceMap`: attribute map, typing, owned attributes cleared by an
  empty value) and stored through :func:`sync.identity.upsert_pulled_contacts`, so identity
  rules hold (an ``email`` change follows rule 3). For a record segsync has not seen, only an
  ``email`` change is applied (it matches or creates the contact by email); any other property
  waits for the next pull (``unknown_record``): creating a key-less contact now would split a
  person present in both providers.
* ``creation``: nothing to apply (the body carries no properties); the pull brings the record.
* ``deletion``: the identity is archived; a contact left without any live identity is removed
  locally (no suppression: HubSpot can restore it for 90 days). ``restore`` un-archives.
* ``privacyDeletion``: the person is forgotten and suppressed (:mod:`sync.service.forget`), and
  a deletion request is queued for each other provider of ``[service] forget_remote``
  (:mod:`sync.remote_delete`; never back to HubSpot).
* ``merge``: :func:`sync.identity.merge_records` follows the surviving record.

Klaviyo items are events: stored like pulled ones (same source and event id, so a later pull
does not duplicate them), event type by ``[events.T] aliases.klaviyo`` of the metric name.
``/events`` items are stored with source ``api`` under their client id or content hash.

An item touching a suppressed key does nothing (``suppressed``). Each handler returns an
:class:`Applied`: the outcome word and the contacts whose evaluation may have changed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from connectors.hubspot.webhook_payload import HubSpotWebhookEvent, parse_event
from connectors.klaviyo.webhook_payload import item_event
from connectors.records import Contact
from mapping.project import Project
from sync import identity
from sync.pull_map import SourceMap, Tally
from sync.service import forget
from sync.store import repo, schema

__all__ = ["Applied", "Applier"]

LOG = logging.getLogger("segsync.service.apply")


@dataclass(frozen=True)
class Applied:
    outcome: str  # applied | duplicate | ignored | unknown_record | suppressed | forgotten | ...
    contact_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class _Ident:
    contact_id: int
    email: str | None
    archived: bool


def _identity(conn: Connection, provider: str, provider_id: str) -> _Ident | None:
    i = schema.identities
    row = conn.execute(select(i.c.contact_id, i.c.email, i.c.archived).where(
        i.c.provider == provider, i.c.provider_id == provider_id)).first()
    return None if row is None else _Ident(int(row.contact_id), row.email, bool(row.archived))


def _identities(conn: Connection, provider: str, provider_ids: Sequence[str]) -> dict[str, _Ident]:
    """:func:`_identity` of many records in a few statements."""
    i = schema.identities
    found: dict[str, _Ident] = {}
    for start in range(0, len(provider_ids), 900):
        rows = conn.execute(select(i.c.provider_id, i.c.contact_id, i.c.email, i.c.archived).where(
            i.c.provider == provider, i.c.provider_id.in_(provider_ids[start:start + 900])))
        for row in rows:
            found[row.provider_id] = _Ident(int(row.contact_id), row.email, bool(row.archived))
    return found


class Applier:
    def __init__(self, project: Project, type_ids: Mapping[str, int],
                 forget_remote: tuple[str, ...] = ()) -> None:
        self.project = project
        self.type_ids = dict(type_ids)
        self.match = project.config.identity.match
        self.maps = {p: SourceMap.build(project, p) for p in ("hubspot", "klaviyo")}
        self.forget_remote = forget_remote
        self.tally = Tally()

    def apply(self, conn: Connection, source: str, payload: Mapping[str, Any], now_ms: int) -> Applied:
        if source == "hubspot":
            return self._hubspot(conn, parse_event(payload), now_ms)
        if source == "klaviyo":
            return self._klaviyo(conn, payload, now_ms)
        if source == "api":
            return self._api(conn, payload, now_ms)
        return Applied("ignored")

    # ---------------------------------------------------------------------------- HubSpot

    def _hubspot(self, conn: Connection, ev: HubSpotWebhookEvent, now_ms: int) -> Applied:
        oid = ev.object_id
        if forget.is_suppressed(conn, provider="hubspot", provider_id=oid):
            return Applied("suppressed")
        kind = ev.subscription_type
        if kind == "contact.propertyChange":
            return self._property(conn, ev, now_ms)
        if kind == "contact.privacyDeletion":
            return self._privacy(conn, oid, now_ms)
        if kind == "contact.merge":
            return self._merge(conn, ev, now_ms)
        ident = _identity(conn, "hubspot", oid)
        if kind in ("contact.deletion", "contact.restore"):
            if ident is None:
                return Applied("unknown_record")
            deleted = kind == "contact.deletion"
            repo.upsert_identity(conn, "hubspot", oid, ident.contact_id, now_ms, email=ident.email,
                                 archived=deleted)
            if deleted and not self._live_identities(conn, ident.contact_id):
                forget.remove_contacts(conn, [ident.contact_id])
                return Applied("deleted")
            return Applied("archived" if deleted else "restored", (ident.contact_id,))
        return Applied("unknown_record" if ident is None else "ignored")

    def _live_identities(self, conn: Connection, contact_id: int) -> int:
        i = schema.identities
        rows = conn.execute(select(i.c.provider_id).where(i.c.contact_id == contact_id,
                                                          i.c.archived.is_(False)))
        return len(rows.all())

    def _property(self, conn: Connection, ev: HubSpotWebhookEvent, now_ms: int) -> Applied:
        name = ev.property_name or ""
        smap = self.maps["hubspot"]
        reads = any(spec.field == name for spec in smap.attributes.values())
        ident = _identity(conn, "hubspot", ev.object_id)
        if name == "email":
            email = identity.normalised_email(ev.property_value)
            if email and forget.is_suppressed(conn, email=email):
                return Applied("suppressed")
        elif ident is None:
            return Applied("unknown_record")
        elif not reads:
            return Applied("ignored")
        else:
            email = ident.email
        record = Contact(provider="hubspot", provider_id=ev.object_id, email=email,
                         properties={name: ev.property_value} if reads else {},
                         archived=ident.archived if ident else False)
        pulled = smap.contact(record, self.tally)
        identity.upsert_pulled_contacts(conn, "hubspot", [pulled], now_ms, match=self.match)
        after = _identity(conn, "hubspot", ev.object_id)
        return Applied("applied", (after.contact_id,) if after else ())

    def property_changes(self, conn: Connection, payloads: Sequence[Mapping[str, Any]],
                         now_ms: int) -> list[Applied]:
        """A run of ``contact.propertyChange`` items at once: the same outcomes as applying
        them one by one (in order), with a few bulk statements instead of ~10 per item."""
        events = [parse_event(p) for p in payloads]
        smap = self.maps["hubspot"]
        fields = {spec.field for spec in smap.attributes.values()}
        oids = list(dict.fromkeys(ev.object_id for ev in events))
        gone = forget.suppressed(conn, "hubspot", oids)
        emails = [identity.normalised_email(ev.property_value) for ev in events
                  if ev.property_name == "email"]
        gone_emails = forget.suppressed(conn, "email", emails)
        idents = _identities(conn, "hubspot", oids)
        merged: dict[str, tuple[str | None, dict[str, Any], bool]] = {}
        outcomes: list[tuple[str, str | None]] = []
        for ev in events:
            name, oid = ev.property_name or "", ev.object_id
            ident = idents.get(oid)
            email = ident.email if ident else None
            if oid in gone:
                outcomes.append(("suppressed", None))
                continue
            if name == "email":
                email = identity.normalised_email(ev.property_value)
                if email in gone_emails:
                    outcomes.append(("suppressed", None))
                    continue
            elif ident is None and oid not in merged:
                outcomes.append(("unknown_record", None))
                continue
            elif name not in fields:
                outcomes.append(("ignored", None))
                continue
            before = merged.get(oid, (email, {}, ident.archived if ident else False))
            props = dict(before[1])
            if name in fields:
                props[name] = ev.property_value
            merged[oid] = (email if name == "email" else before[0], props, before[2])
            outcomes.append(("applied", oid))
        records = [smap.contact(Contact(provider="hubspot", provider_id=oid, email=email,
                                        properties=props, archived=archived), self.tally)
                   for oid, (email, props, archived) in merged.items()]
        if records:
            identity.upsert_pulled_contacts(conn, "hubspot", records, now_ms, match=self.match)
        after = _identities(conn, "hubspot", list(merged))
        return [Applied(word, (after[oid].contact_id,) if oid and oid in after else ())
                for word, oid in outcomes]

    def _privacy(self, conn: Connection, oid: str, now_ms: int) -> Applied:
        ident = _identity(conn, "hubspot", oid)
        ids = [ident.contact_id] if ident else []
        report = forget.forget_in(conn, ids, [("hubspot", oid)], reason="hubspot privacy deletion",
                                  now_ms=now_ms, remote=[p for p in self.forget_remote if p != "hubspot"],
                                  trigger="webhook")
        for note in report.notes:
            LOG.warning("privacy deletion of hubspot record %s: %s", oid, note)
        return Applied("forgotten")

    def _merge(self, conn: Connection, ev: HubSpotWebhookEvent, now_ms: int) -> Applied:
        surviving = ev.new_object_id or ev.primary_object_id or ev.object_id
        merged = [m for m in (*ev.merged_object_ids, ev.primary_object_id, ev.object_id)
                  if m and m != surviving]
        if any(forget.is_suppressed(conn, provider="hubspot", provider_id=m) for m in merged):
            return Applied("suppressed")
        if _identity(conn, "hubspot", surviving) is None:
            known = next((ident for m in merged if (ident := _identity(conn, "hubspot", m))), None)
            if known is None:
                return Applied("unknown_record")
            repo.upsert_identity(conn, "hubspot", surviving, known.contact_id, now_ms, email=known.email)
        identity.merge_records(conn, "hubspot", surviving, merged, now_ms)
        after = _identity(conn, "hubspot", surviving)
        return Applied("merged", (after.contact_id,) if after else ())

    # ---------------------------------------------------------------------------- events

    def _store_event(self, conn: Connection, row: repo.EventRow) -> Applied:
        inserted = repo.insert_events(conn, [row])
        return Applied("applied", (row.contact_id,)) if inserted else Applied("duplicate")

    def _klaviyo(self, conn: Connection, raw: Mapping[str, Any], now_ms: int) -> Applied:
        event = item_event(raw)
        smap = self.maps["klaviyo"]
        event_type = smap.event_type(event)
        if event_type is None or event_type not in self.type_ids:
            return Applied("ignored")
        ref = event.contact
        if forget.is_suppressed(conn, provider="klaviyo", provider_id=ref.provider_id, email=ref.email):
            return Applied("suppressed")
        ids, _ = identity.resolve_refs(conn, "klaviyo", [ref], now_ms)
        if ids[0] is None:
            return Applied("unknown_record")
        props = smap.event_properties(event_type, event, self.tally)
        return self._store_event(conn, repo.EventRow(
            ids[0], self.type_ids[event_type], event.ts, event.value,
            repo.canonical_json(props) if props else None, "klaviyo", event.provider_event_id))

    def _api(self, conn: Connection, item: Mapping[str, Any], now_ms: int) -> Applied:
        email, ext = item.get("email"), item.get("external_id")
        if forget.is_suppressed(conn, email=email, external_id=ext):
            return Applied("suppressed")
        event_type = str(item["type"])
        if event_type not in self.type_ids:
            return Applied("ignored")  # the event type was removed from the config since
        contact_id = repo.contact_ids(conn, [(email, ext)], now_ms, match_first=self.match)[0]
        if contact_id is None:
            return Applied("unknown_record")
        props = item.get("properties") or None
        return self._store_event(conn, repo.EventRow(
            contact_id, self.type_ids[event_type], int(item["ts"]), item.get("value"),
            repo.canonical_json(props) if props else None, "api", str(item["event_id"])))
