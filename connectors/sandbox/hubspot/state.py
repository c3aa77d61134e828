"""In-memory state of the HubSpot stand-in: contacts, property definitions, lists, email events.

Plain dicts keyed by id, one lock (``state.lock``). The mutating primitives (``create``,
``apply``, ``archive``, ``gdpr_delete``, ``merge``, list membership) expect the caller to hold the
lock, so a batch of 100 updates takes it once. Every write bumps ``lastmodifieddate`` and, when a
listener is registered (the webhook sender), emits :class:`Change` records.

``load_dataset`` takes the commons' synthetic ``Dataset`` (or any object with ``people`` and email
activity); ``load_records`` takes plain dicts. ``reset`` rebuilds from what was loaded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .email_events import EmailEventStore
from .schema import PropertyDef, default_groups, default_properties, iso_ms, parse_instant
from .web_events import WebEvents, WebEventSource

SEED_PROPERTIES = ("email", "firstname", "lastname", "phone", "city", "country", "lifecyclestage")
MERGED_IDS = "hs_merged_object_ids"


def _ids(value: str | None) -> list[str]:
    return [part for part in (value or "").split(";") if part]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Contact:
    __slots__ = ("archived", "archived_ms", "created_ms", "id", "props", "updated_ms")

    def __init__(self, cid: int, props: dict[str, str], created_ms: int, updated_ms: int):
        self.id = cid
        self.props = props
        self.created_ms = created_ms
        self.updated_ms = updated_ms
        self.archived = False
        self.archived_ms = 0

    def to_json(self, names: Iterable[str] | None) -> dict[str, Any]:
        """A ``SimplePublicObject``; ``names`` None = every set property."""
        props: dict[str, str | None]
        if names is None:
            props = dict(self.props)
        else:
            p = self.props
            props = {n: p.get(n) for n in names}
        out: dict[str, Any] = {
            "id": str(self.id),
            "properties": props,
            "createdAt": iso_ms(self.created_ms),
            "updatedAt": iso_ms(self.updated_ms),
            "archived": self.archived,
        }
        if self.archived:
            out["archivedAt"] = iso_ms(self.archived_ms)
        return out


@dataclass
class ContactList:
    list_id: int
    name: str
    processing_type: str
    object_type_id: str
    created_ms: int
    updated_ms: int
    filter_branch: Any = None
    version: int = 1
    members: dict[int, int] = field(default_factory=dict)  # record id -> joined at (ms)
    _sorted: list[int] | None = None

    def sorted_members(self) -> list[int]:
        if self._sorted is None:
            self._sorted = sorted(self.members)
        return self._sorted

    def touched(self, now: int) -> None:
        self._sorted = None
        self.updated_ms = now

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "listId": str(self.list_id),
            "listVersion": self.version,
            "name": self.name,
            "objectTypeId": self.object_type_id,
            "processingType": self.processing_type,
            "processingStatus": "COMPLETE",
            "createdAt": iso_ms(self.created_ms),
            "updatedAt": iso_ms(self.updated_ms),
            "filtersUpdatedAt": iso_ms(self.created_ms),
            "createdById": "1",
            "updatedById": "1",
            "size": len(self.members),
        }
        if self.filter_branch is not None:
            out["filterBranch"] = self.filter_branch
        return out


@dataclass(frozen=True)
class Change:
    """One change notification (HubSpot webhook subscription type + payload extras)."""

    kind: str  # contact.creation | contact.propertyChange | contact.deletion | contact.merge | ...
    object_id: int
    occurred_ms: int
    source: str = "API"
    property_name: str | None = None
    property_value: str | None = None
    extra: Mapping[str, Any] | None = None


class HubSpotState:
    def __init__(self, clock: Callable[[], int] = wall_clock_ms):
        self.lock = threading.RLock()
        self.clock = clock
        self.listeners: list[Callable[[Change], None]] = []
        self._people: list[dict[str, Any]] = []
        self._base_events = EmailEventStore()
        self._base_web = WebEventSource()
        self._clear()

    def _clear(self) -> None:
        now = self.clock()
        self.contacts: dict[int, Contact] = {}
        self.by_email: dict[str, int] = {}
        self.merged_into: dict[int, int] = {}
        self.properties: dict[str, PropertyDef] = default_properties(now)
        self.groups: dict[str, dict[str, Any]] = default_groups()
        self.lists: dict[int, ContactList] = {}
        self.list_names: dict[str, int] = {}
        self.email_events = EmailEventStore()
        self.web_events: WebEvents = self._base_web.bind({})
        self.next_id = 1
        self.next_list_id = 1

    # ---- loading ---------------------------------------------------------------------------

    def load_dataset(self, dataset: Any) -> None:
        """Load the commons ``Dataset`` (``connectors.sandbox.dataset``): people with ``in_hubspot``
        become contacts, their email activity (sent/delivered/opened/clicked/bounced/unsubscribed)
        marketing-email events, their web activity (product views, cart adds, orders) unified
        events (``web_events``). Emails are trimmed and lower-cased as HubSpot stores them, so the
        data set's case/whitespace duplicates collapse into one contact (HubSpot dedupes by email)."""
        from .loader import email_activity, person_record

        self._people = [person_record(p) for p in dataset.people if p.in_hubspot]
        self._base_events = email_activity(dataset)
        self._base_web = WebEventSource.from_dataset(dataset)
        self.reset()

    def load_records(
        self,
        people: Iterable[Mapping[str, Any]],
        email_events: Iterable[Mapping[str, Any]],
        web_events: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        """Plain dicts: people ``{email, firstname, lastname, phone, city, country, lifecyclestage,
        createdate (ms), lastmodifieddate (ms)?}``; events ``{email, kind, ts, campaign_id?, url?}``;
        web events ``{email, kind, ts, properties?, value?}`` (``web_events.WebEventSource``)."""
        self._people = [dict(p) for p in people]
        self._base_events = EmailEventStore()
        self._base_events.load(email_events)
        self._base_web = WebEventSource.from_records(web_events)
        self.reset()

    def reset(self) -> None:
        """Back to exactly what was loaded (no change notifications)."""
        with self.lock:
            self._clear()
            for person in self._people:
                created = int(person.get("createdate") or person.get("created_ms") or self.clock())
                modified = int(person.get("lastmodifieddate") or created)
                props = {
                    k: str(person[k]).strip() for k in SEED_PROPERTIES if person.get(k) not in (None, "")
                }
                props = {k: v for k, v in props.items() if v}
                if "email" in props:
                    props["email"] = props["email"].lower()
                    if props["email"] in self.by_email:
                        continue  # HubSpot dedupes contacts by email
                self._insert(props, created, modified)
            self.email_events = self._base_events.copy()
            self.web_events = self._base_web.bind(self.by_email)

    # ---- contacts (caller holds the lock) --------------------------------------------------

    def _insert(self, props: dict[str, str], created: int, modified: int) -> Contact:
        cid = self.next_id
        self.next_id += 1
        props["hs_object_id"] = str(cid)
        props["createdate"] = iso_ms(created)
        props["lastmodifieddate"] = iso_ms(modified)
        c = Contact(cid, props, created, modified)
        self.contacts[cid] = c
        if "email" in props:
            self.by_email[props["email"]] = cid
        return c

    def find(self, key: str, id_property: str | None = None, archived: bool = False) -> Contact | None:
        """The contact whose ``id_property`` (default: record id) equals ``key``."""
        if id_property in (None, "", "hs_object_id"):
            try:
                cid = int(key)
            except ValueError:
                return None
            cid = self.merged_into.get(cid, cid)
            c = self.contacts.get(cid)
        elif id_property == "email":
            found = self.by_email.get(key.strip().lower())
            c = self.contacts.get(found) if found is not None else None
        else:
            return None
        if c is None or c.archived != archived:
            return None
        return c

    def create(self, props: dict[str, str], source: str = "API") -> Contact:
        now = self.clock()
        created = now
        if "createdate" in props:
            created = parse_instant(props.pop("createdate")) or now
        props = {k: v for k, v in props.items() if v is not None}
        c = self._insert(props, created, now)
        if self.listeners:
            self._emit(Change("contact.creation", c.id, now, source))
        return c

    def apply(self, c: Contact, changes: Mapping[str, str | None], source: str = "API") -> None:
        """Set (or clear, value None) properties of ``c``; always bumps ``lastmodifieddate``."""
        now = self.clock()
        props = c.props
        changed: list[tuple[str, str | None]] = []
        for name, value in changes.items():
            old = props.get(name)
            if value == old:
                continue
            if name == "email":
                if old is not None:
                    self.by_email.pop(old, None)
                if value is not None:
                    self.by_email[value] = c.id
            if name == "createdate" and value is not None:
                c.created_ms = parse_instant(value) or c.created_ms
            if value is None:
                del props[name]
            else:
                props[name] = value
            changed.append((name, value))
        c.updated_ms = now
        props["lastmodifieddate"] = iso_ms(now)
        if self.listeners:
            for name, value in changed:
                self._emit(Change("contact.propertyChange", c.id, now, source, name, value or ""))

    def archive(self, c: Contact) -> None:
        now = self.clock()
        c.archived = True
        c.archived_ms = now
        email = c.props.get("email")
        if email is not None and self.by_email.get(email) == c.id:
            del self.by_email[email]
        if self.listeners:
            self._emit(Change("contact.deletion", c.id, now))

    def gdpr_delete(self, c: Contact) -> None:
        """Permanently delete: the record, its memberships and its email events."""
        now = self.clock()
        email = c.props.get("email")
        if email is not None:
            if self.by_email.get(email) == c.id:
                del self.by_email[email]
            self.email_events.forget(email)
        del self.contacts[c.id]
        for lst in self.lists.values():
            if lst.members.pop(c.id, None) is not None:
                lst.touched(now)
        if self.listeners:
            self._emit(Change("contact.privacyDeletion", c.id, now))

    def merge(self, primary: Contact, other: Contact) -> Contact:
        """Merge ``other`` into ``primary``: missing properties move over; ``other`` disappears;
        ``primary``'s ``hs_merged_object_ids`` lists every id merged into it so far (its own
        earlier ones, ``other``'s id and the ids merged into ``other``), ``;``-joined."""
        now = self.clock()
        moved = {k: v for k, v in other.props.items() if k not in primary.props}
        moved.pop(MERGED_IDS, None)
        merged = [*_ids(primary.props.get(MERGED_IDS)), str(other.id), *_ids(other.props.get(MERGED_IDS))]
        email = other.props.get("email")
        if email is not None and self.by_email.get(email) == other.id:
            del self.by_email[email]
        del self.contacts[other.id]
        for old, into in self.merged_into.items():
            if into == other.id:  # ids merged into `other` now resolve to `primary` too
                self.merged_into[old] = primary.id
        self.merged_into[other.id] = primary.id
        for lst in self.lists.values():
            joined = lst.members.pop(other.id, None)
            if joined is not None:
                lst.members.setdefault(primary.id, joined)
                lst.touched(now)
        moved.pop("hs_object_id", None)
        self.apply(primary, {**moved, MERGED_IDS: ";".join(dict.fromkeys(merged))}, "CRM")
        if self.listeners:
            extra = {
                "primaryObjectId": primary.id,
                "mergedObjectIds": [other.id],
                "newObjectId": primary.id,
                "numberOfPropertiesMoved": len(moved),
            }
            self._emit(Change("contact.merge", primary.id, now, "CRM", extra=extra))
        return primary

    def _emit(self, change: Change) -> None:
        for listener in self.listeners:
            listener(change)

    # ---- lists (caller holds the lock) -----------------------------------------------------

    def create_list(
        self, name: str, processing_type: str, object_type_id: str, filter_branch: Any
    ) -> ContactList:
        now = self.clock()
        lst = ContactList(self.next_list_id, name, processing_type, object_type_id, now, now, filter_branch)
        self.next_list_id += 1
        self.lists[lst.list_id] = lst
        self.list_names[name.lower()] = lst.list_id
        return lst

    def delete_list(self, lst: ContactList) -> None:
        del self.lists[lst.list_id]
        self.list_names.pop(lst.name.lower(), None)

    def change_members(
        self, lst: ContactList, add: Iterable[str], remove: Iterable[str]
    ) -> dict[str, list[str]]:
        """HubSpot's ``MembershipsUpdateResponse`` (note the spec's ``recordsIdsAdded`` spelling)."""
        now = self.clock()
        added: list[str] = []
        removed: list[str] = []
        missing: list[str] = []
        for raw in add:
            c = self.find(raw)
            if c is None:
                missing.append(raw)
            elif c.id not in lst.members:
                lst.members[c.id] = now
                added.append(str(c.id))
        for raw in remove:
            try:
                rid = int(raw)
            except ValueError:
                missing.append(raw)
                continue
            if lst.members.pop(rid, None) is not None:
                removed.append(raw)
            elif rid not in self.contacts:
                missing.append(raw)
        if added or removed:
            lst.touched(now)
        return {"recordIdsMissing": missing, "recordIdsRemoved": removed, "recordsIdsAdded": added}
