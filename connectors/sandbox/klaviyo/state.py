"""The Klaviyo account the stand-in serves: profiles, metrics, events, lists, import jobs.

All mutation goes through :class:`KlaviyoState` methods under ``state.lock``; HTTP handlers,
the bulk-import worker, the live-activity generator and inspection share one instance. Rule
violations raise :class:`Rejected` (status, code, detail, pointer), which handlers turn into
JSON:API errors and the import worker into import-error records.
"""

from __future__ import annotations

import re
import threading
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.sandbox.klaviyo.eventlog import EventLog
from connectors.sandbox.klaviyo.ids import ShortIds, iso, ulid
from connectors.sandbox.klaviyo.settings import KlaviyoSettings

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
PHONE_RE = re.compile(r"^\+[1-9]\d{6,14}$")
STRING_FIELDS = (
    "email",
    "phone_number",
    "external_id",
    "first_name",
    "last_name",
    "organization",
    "locale",
    "title",
    "image",
)
LOCATION_FIELDS = (
    "address1",
    "address2",
    "city",
    "country",
    "latitude",
    "longitude",
    "region",
    "zip",
    "timezone",
    "ip",
)
IDENTIFIERS = ("email", "phone_number", "external_id")


class Rejected(Exception):
    """A request or import row that Klaviyo would refuse."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        pointer: str = "/data/attributes",
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.pointer, self.meta = status, code, detail, pointer, meta


@dataclass(slots=True)
class Profile:
    id: str
    index: int  # small integer used by the event log
    created: int
    updated: int
    attrs: dict[str, Any] = field(default_factory=dict)  # STRING_FIELDS present on the profile
    location: dict[str, Any] | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    last_event: int | None = None

    def attributes(self) -> dict[str, Any]:
        out: dict[str, Any] = {f: self.attrs.get(f) for f in STRING_FIELDS}
        out.update(
            created=iso(self.created),
            updated=iso(self.updated),
            last_event_date=iso(self.last_event) if self.last_event is not None else None,
            location=_location(self.location),
            properties=self.properties,
        )
        return out


def _location(loc: dict[str, Any] | None) -> dict[str, Any]:
    """All location fields, null when unset; latitude/longitude are left out when unset because the
    spec types them ``nullable`` + ``oneOf`` (string | number), which OAS 3.0 validators reject as null."""
    out = {f: (loc or {}).get(f) for f in LOCATION_FIELDS}
    for f in ("latitude", "longitude"):
        if out[f] is None:
            del out[f]
    return out


@dataclass(slots=True)
class Metric:
    id: str
    index: int
    name: str
    created: int
    service: str = "API"  # integration name; "Klaviyo" for email metrics


@dataclass(slots=True)
class KList:
    id: str
    name: str
    created: int
    updated: int
    opt_in_process: str = "single_opt_in"
    members: dict[str, int] = field(default_factory=dict)  # profile id -> joined ms


@dataclass(slots=True)
class ImportJob:
    id: str
    created: int
    rows: list[Any]  # the submitted profile objects, dropped once processed
    list_ids: list[str]
    status: str = "queued"
    total: int = 0
    completed: int = 0
    failed: int = 0
    started: int | None = None
    completed_at: int | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    profile_ids: list[str] = field(default_factory=list)
    transient: frozenset[int] = frozenset()  # rows that fail with a temporary error (fault ``partial``)


@dataclass(slots=True)
class DeletionJob:
    """A data-privacy deletion request as received (``POST /api/data-privacy-deletion-jobs``)."""

    id: str
    at: int
    by: str  # id | email | phone_number
    value: str
    deleted: list[str]  # the profile ids it deleted (none when nothing matched)
    events: int  # events deleted with them


EventListener = Callable[[str, "KlaviyoState", int], None]  # (event id, state, position)


class KlaviyoState:
    def __init__(self, settings: KlaviyoSettings | None = None) -> None:
        self.settings = settings or KlaviyoSettings()
        self.lock = threading.RLock()
        self.listeners: list[EventListener] = []
        self.reset()

    def reset(self) -> None:
        """Forget everything (inspection's reset hook); listeners stay registered."""
        with self.lock:
            self.profiles: dict[str, Profile] = {}
            self.by_index: list[str] = []
            self.by_ident: dict[str, dict[str, str]] = {f: {} for f in IDENTIFIERS}
            self.order_id: list[tuple[str, str]] = []  # (id, id): same shape as the other orders
            self.order_created: list[tuple[int, str]] = []
            self.order_updated: list[tuple[int, str]] = []
            self.metrics: dict[str, Metric] = {}
            self.metric_by_name: dict[str, str] = {}
            self.metric_by_index: list[str] = []
            self.events = EventLog()
            self.unique_ids: set[tuple[int, int, str]] = set()
            self.lists: dict[str, KList] = {}
            self.jobs: dict[str, ImportJob] = {}
            self.deletion_jobs: list[DeletionJob] = []
            self._short = ShortIds(self.settings.seed)
            self._seq = 0
            self.dataset: Any = None  # the synthetic Dataset loaded last (live activity draws on it)

    # ---- time and ids -------------------------------------------------------------------
    def now_ms(self) -> int:
        return int(self.settings.clock() * 1000)

    def new_id(self, ms: int | None = None) -> str:
        self._seq += 1
        return ulid(self.now_ms() if ms is None else ms, self._seq)

    # ---- profiles -----------------------------------------------------------------------
    def find(self, field_name: str, value: str) -> Profile | None:
        key = value.lower() if field_name == "email" else value
        pid = self.by_ident[field_name].get(key)
        return self.profiles.get(pid) if pid else None

    def match(self, attrs: Mapping[str, Any]) -> Profile | None:
        """The profile one of the identifiers in ``attrs`` names (email first)."""
        for f in IDENTIFIERS:
            v = attrs.get(f)
            if isinstance(v, str) and v:
                p = self.find(f, v)
                if p is not None:
                    return p
        return None

    def create_profile(
        self, attrs: Mapping[str, Any], *, ms: int | None = None, pid: str | None = None
    ) -> Profile:
        """Create from JSON:API attributes; :class:`Rejected` 409 when an identifier is taken."""
        clean = validate_attributes(attrs, creating=True)
        dup = self.match(clean)
        if dup is not None:
            raise duplicate(dup.id)
        now = self.now_ms() if ms is None else ms
        p = Profile(pid or self.new_id(now), len(self.by_index), now, now)
        self.by_index.append(p.id)
        self.profiles[p.id] = p
        self._assign(p, clean, None)
        insort(self.order_id, (p.id, p.id))
        insort(self.order_created, (p.created, p.id))
        insort(self.order_updated, (p.updated, p.id))
        return p

    def update_profile(
        self, p: Profile, attrs: Mapping[str, Any], patch: Mapping[str, Any] | None = None
    ) -> Profile:
        clean = validate_attributes(attrs, creating=False)
        for f in IDENTIFIERS:
            v = clean.get(f)
            if isinstance(v, str) and v:
                other = self.find(f, v)
                if other is not None and other.id != p.id:
                    raise duplicate(other.id)
        patch_ops = validate_patch(patch)
        self._assign(p, clean, patch_ops)
        self.touch(p)
        return p

    def touch(self, p: Profile, ms: int | None = None) -> None:
        now = max(self.now_ms() if ms is None else ms, p.updated)
        i = bisect_left(self.order_updated, (p.updated, p.id))
        if i < len(self.order_updated) and self.order_updated[i] == (p.updated, p.id):
            del self.order_updated[i]
        p.updated = now
        insort(self.order_updated, (p.updated, p.id))

    def _assign(self, p: Profile, clean: dict[str, Any], patch: dict[str, list[Any]] | None) -> None:
        for f in STRING_FIELDS:
            if f not in clean:
                continue
            old, new = p.attrs.get(f), clean[f]
            if f in IDENTIFIERS and old:
                self.by_ident[f].pop(old.lower() if f == "email" else old, None)
            if new is None or new == "":
                p.attrs.pop(f, None)
            else:
                p.attrs[f] = new
                if f in IDENTIFIERS:
                    self.by_ident[f][new.lower() if f == "email" else new] = p.id
        if "location" in clean:
            loc = clean["location"]
            p.location = None if loc is None else {**(p.location or {}), **loc}
        if clean.get("properties") is not None:
            p.properties.update(clean["properties"])
        for key in (patch or {}).get("unset", []):
            p.properties.pop(key, None)
        for key, values in (patch or {}).get("append", []):
            cur = p.properties.get(key)
            cur = [] if cur is None else (list(cur) if isinstance(cur, list) else [cur])
            p.properties[key] = cur + values
        for key, values in (patch or {}).get("unappend", []):
            cur = p.properties.get(key)
            if isinstance(cur, list):
                p.properties[key] = [v for v in cur if v not in values]

    def delete_profile(self, p: Profile) -> int:
        """Delete a profile for good: identifiers, orders, list memberships and its events
        (its ``by_index`` slot stays, so other profiles' event rows keep their meaning).
        Returns how many events went with it."""
        for f in IDENTIFIERS:
            v = p.attrs.get(f)
            if v:
                key = v.lower() if f == "email" else v
                if self.by_ident[f].get(key) == p.id:
                    del self.by_ident[f][key]
        for order, key in ((self.order_id, (p.id, p.id)), (self.order_created, (p.created, p.id)),
                           (self.order_updated, (p.updated, p.id))):
            i = bisect_left(order, key)
            if i < len(order) and order[i] == key:
                del order[i]
        for lst in self.lists.values():
            lst.members.pop(p.id, None)
        self.unique_ids = {k for k in self.unique_ids if k[1] != p.index}
        del self.profiles[p.id]
        return self.events.remove_profile(p.index)

    # ---- metrics and events -------------------------------------------------------------
    def metric(self, name: str, service: str = "API", ms: int | None = None) -> Metric:
        """The metric named ``name``, created on first use (as creating an event does)."""
        mid = self.metric_by_name.get(name)
        if mid is not None:
            return self.metrics[mid]
        m = Metric(
            self._short.new(), len(self.metric_by_index), name, self.now_ms() if ms is None else ms, service
        )
        self.metrics[m.id] = m
        self.metric_by_name[name] = m.id
        self.metric_by_index.append(m.id)
        return m

    def add_event(
        self,
        metric: Metric,
        profile: Profile,
        ms: int,
        properties: Mapping[str, Any],
        value: float | None = None,
        unique_id: str | None = None,
    ) -> str | None:
        """Record one event and tell the listeners; ``None`` when ``unique_id`` repeats one."""
        if unique_id is not None:
            key = (metric.index, profile.index, unique_id)
            if key in self.unique_ids:
                return None
            self.unique_ids.add(key)
        pos, seq = self.events.add(ms, metric.index, profile.index, value, self.events.intern(properties))
        if profile.last_event is None or ms > profile.last_event:
            profile.last_event = ms
        eid = ulid(ms, seq)
        for listener in self.listeners:
            listener(eid, self, pos)
        return eid

    # ---- lists --------------------------------------------------------------------------
    def create_list(self, name: str, opt_in: str = "single_opt_in", ms: int | None = None) -> KList:
        now = self.now_ms() if ms is None else ms
        lst = KList(self._short.new(), name, now, now, opt_in)
        self.lists[lst.id] = lst
        return lst

    def add_members(self, lst: KList, profile_ids: Iterable[str], ms: int | None = None) -> None:
        now = self.now_ms() if ms is None else ms
        for pid in profile_ids:
            lst.members.setdefault(pid, now)

    # ---- bulk loading (dataset) ---------------------------------------------------------
    def load_dataset(self, dataset: Any) -> None:
        from connectors.sandbox.klaviyo.loader import load_dataset

        load_dataset(self, dataset)


def duplicate(pid: str) -> Rejected:
    return Rejected(
        409,
        "duplicate_profile",
        "A profile already exists with one of these identifiers.",
        meta={"duplicate_profile_id": pid},
    )


def validate_attributes(attrs: Any, *, creating: bool) -> dict[str, Any]:
    """Checked copy of profile attributes (the fields Klaviyo accepts); :class:`Rejected` 400."""
    if not isinstance(attrs, Mapping):
        raise Rejected(400, "invalid", "'attributes' must be an object.")
    out: dict[str, Any] = {}
    for f in STRING_FIELDS:
        if f not in attrs:
            continue
        v = attrs[f]
        if v is not None and not isinstance(v, str):
            raise Rejected(400, "invalid", f"'{f}' must be a string.", f"/data/attributes/{f}")
        out[f] = v.strip() if isinstance(v, str) else v
    if out.get("email") and not EMAIL_RE.match(out["email"]):
        raise Rejected(400, "invalid", "Invalid email address", "/data/attributes/email")
    if out.get("phone_number") and not PHONE_RE.match(out["phone_number"]):
        raise Rejected(
            400,
            "invalid",
            "Invalid phone number format (Example of a valid format: +13239169023)",
            "/data/attributes/phone_number",
        )
    if creating and not any(out.get(f) for f in IDENTIFIERS) and not attrs.get("anonymous_id"):
        raise Rejected(400, "invalid", "One of `email`, `phone_number`, or `external_id` is required.")
    if "location" in attrs:
        loc = attrs["location"]
        if loc is not None and (not isinstance(loc, Mapping) or set(loc) - set(LOCATION_FIELDS)):
            raise Rejected(
                400,
                "invalid",
                f"'location' must be an object with {', '.join(LOCATION_FIELDS)}.",
                "/data/attributes/location",
            )
        out["location"] = dict(loc) if loc is not None else None
    if "properties" in attrs:
        props = attrs["properties"]
        if props is not None and not isinstance(props, Mapping):
            raise Rejected(400, "invalid", "'properties' must be an object.", "/data/attributes/properties")
        out["properties"] = dict(props) if props is not None else None
    return out


def validate_patch(meta_patch: Any) -> dict[str, list[Any]]:
    """``meta.patch_properties`` as ``{"unset": [key], "append"/"unappend": [(key, values)]}``."""
    if meta_patch is None:
        return {}
    if not isinstance(meta_patch, Mapping) or set(meta_patch) - {"append", "unappend", "unset"}:
        raise Rejected(
            400,
            "invalid",
            "'patch_properties' accepts only 'append', 'unappend' and 'unset'.",
            "/data/meta/patch_properties",
        )
    out: dict[str, list[Any]] = {}
    unset = meta_patch.get("unset")
    if unset is not None:
        keys = [unset] if isinstance(unset, str) else unset
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise Rejected(
                400,
                "invalid",
                "'unset' must be a string or an array of strings.",
                "/data/meta/patch_properties/unset",
            )
        out["unset"] = keys
    for op in ("append", "unappend"):
        spec = meta_patch.get(op)
        if spec is None:
            continue
        if not isinstance(spec, Mapping):
            raise Rejected(
                400,
                "invalid",
                f"'{op}' must be an object of property -> value(s).",
                f"/data/meta/patch_properties/{op}",
            )
        out[op] = [(k, list(v) if isinstance(v, list) else [v]) for k, v in spec.items()]
    return out
