"""Unified events (``GET /events/v3/events``, Enterprise only): the data set's web activity.

What is served (see ``connectors/hubspot/QUIRKS.md`` for what is verified):

* product views as HubSpot's standard page view ``e_visited_page`` (``hs_url``,
  ``hs_page_title``); cart adds and orders as custom behavioural events
  ``pe<portalId>_added_to_cart`` / ``pe<portalId>_order_placed`` carrying the data set's
  properties (every value a string, lists ``;``-joined, ``value`` when the activity has one);
* each event belongs to a contact (``objectType`` ``contact``); the events of a merged contact
  are served as the survivor's; a GDPR-deleted contact's events are gone;
* query: ``objectType`` (``contact``, ``contacts`` or ``0-1``; another type has no events),
  ``objectId`` (needs ``objectType``), ``eventType``, ``occurredAfter`` / ``occurredBefore``
  (ISO-8601 or epoch ms, both exclusive), ``limit`` (default 10, at most 1000), ``after`` (the
  opaque ``paging.next.after`` of the previous page); oldest first;
* ``HubSpotSettings.unified_events = False`` (an account without Enterprise) answers 403.

Events are columns sorted by time (``WebEvents``); the loaded ones are keyed by email and bound
to contact ids when the state is reset (:meth:`WebEventSource.bind`), live ones are appended.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from connectors.sandbox.server import App, Request, Response

from . import errors
from .schema import iso_ms, parse_instant
from .settings import HubSpotSettings

if TYPE_CHECKING:
    from .state import HubSpotState

KINDS = ("product_viewed", "added_to_cart", "order_placed")
CONTACT_TYPES = frozenset({"contact", "contacts", "0-1"})
MAX_LIMIT = 1000
FORBIDDEN = ("This account does not have access to the events API: it requires a Marketing, Sales, "
             "Service, Content or Data Hub Enterprise subscription")  # fmt: skip
Props = Callable[[int], Mapping[str, Any]]
I64 = npt.NDArray[np.int64]


def event_type(kind: int, portal_id: int) -> str:
    return "e_visited_page" if kind == 0 else f"pe{portal_id}_{KINDS[kind]}"


def hubspot_properties(kind: int, props: Mapping[str, Any], value: float = 0.0) -> dict[str, str]:
    if kind == 0:
        return {"hs_url": str(props.get("url", "")), "hs_page_title": str(props.get("product", ""))}
    out = {k: ";".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in props.items()}
    if value:
        out["value"] = f"{value:.15g}"  # 19.0 -> "19", no rounding
    return out


class WebEvents:
    """Web events bound to contact ids, ``ts``-sorted; live events are appended."""

    def __init__(self, ts: I64, kind: npt.NDArray[np.uint8], contact: I64, props: Props):
        self.ts, self.kind, self.contact = ts, kind, contact
        self._props = props
        self._live: list[dict[str, str]] = []

    def __len__(self) -> int:
        return len(self.ts)

    def properties(self, pos: int) -> dict[str, str]:
        base = len(self.ts) - len(self._live)
        if pos >= base:
            return self._live[pos - base]
        return dict(self._props(pos))

    def add(self, ts: int, kind: str, contact_id: int, props: Mapping[str, Any], value: float = 0.0) -> int:
        """Append one live event (kept in time order); returns its position (its id)."""
        code = KINDS.index(kind)
        ts = max(ts, int(self.ts[-1])) if len(self.ts) else ts
        self.ts = np.append(self.ts, np.int64(ts))
        self.kind = np.append(self.kind, np.uint8(code))
        self.contact = np.append(self.contact, np.int64(contact_id))
        self._live.append(hubspot_properties(code, props, value))
        return len(self.ts) - 1


class WebEventSource:
    """Loaded web events keyed by email (lower-case), bound to contacts by :meth:`bind`."""

    def __init__(self, ts: I64 | None = None, kind: npt.NDArray[np.uint8] | None = None,
                 email: I64 | None = None, emails: list[str] | None = None,
                 props: Callable[[int], dict[str, str]] | None = None):
        self.ts = ts if ts is not None else np.zeros(0, np.int64)
        self.kind = kind if kind is not None else np.zeros(0, np.uint8)
        self.email = email if email is not None else np.zeros(0, np.int64)
        self.emails = emails or []
        self._props = props or (lambda _pos: {})

    @classmethod
    def from_dataset(cls, dataset: Any) -> WebEventSource:
        """The web activity of the people held in HubSpot (a person without an email is an
        anonymous visitor: no contact, no event)."""
        acts = dataset.activities
        rows = acts.select(kinds=list(KINDS))
        index: dict[str, int] = {}
        person_email = np.array([index.setdefault(p.email.strip().lower(), len(index))
                                 if p.in_hubspot and p.email.strip() else -1 for p in dataset.people] or [-1],
                                dtype=np.int64)  # fmt: skip
        rows = rows[person_email[acts.person[rows]] >= 0]
        codes = np.array([KINDS.index(k) if k in KINDS else 0 for k in _kind_names()], dtype=np.uint8)

        def props(pos: int) -> dict[str, str]:
            a = acts[int(rows[pos])]
            return hubspot_properties(KINDS.index(a.kind), a.properties, a.value)

        return cls(acts.ts[rows].astype(np.int64), codes[acts.kind[rows]], person_email[acts.person[rows]],
                   list(index), props)  # fmt: skip

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> WebEventSource:
        """Plain dicts ``{email, kind (product_viewed | added_to_cart | order_placed), ts,
        properties?, value?}``."""
        rows = sorted((r for r in records if r.get("email") and r.get("kind") in KINDS),
                      key=lambda r: int(r["ts"]))
        index: dict[str, int] = {}
        email = [index.setdefault(str(r["email"]).strip().lower(), len(index)) for r in rows]
        props = [hubspot_properties(KINDS.index(r["kind"]), r.get("properties") or {},
                                    float(r.get("value") or 0)) for r in rows]  # fmt: skip
        return cls(np.array([int(r["ts"]) for r in rows], dtype=np.int64),
                   np.array([KINDS.index(r["kind"]) for r in rows], dtype=np.uint8),
                   np.array(email, dtype=np.int64), list(index), props.__getitem__)  # fmt: skip

    def bind(self, by_email: Mapping[str, int]) -> WebEvents:
        """The events of the emails that are contacts, with their contact ids."""
        ids = np.array([by_email.get(e, -1) for e in self.emails] or [-1], dtype=np.int64)
        contact = ids[self.email] if len(self.email) else np.zeros(0, np.int64)
        keep = np.flatnonzero(contact >= 0)
        source = self._props
        return WebEvents(self.ts[keep], self.kind[keep], contact[keep], lambda pos: source(int(keep[pos])))


def _kind_names() -> tuple[str, ...]:
    from connectors.sandbox.dataset import KINDS as ALL

    return ALL


def _cursor(raw: str | None) -> int:
    if not raw:
        return 0
    try:
        return int(base64.urlsafe_b64decode(raw.encode()).decode())
    except (ValueError, binascii.Error):
        errors.fail(400, f"Invalid value for query parameter 'after': {raw!r}")


def _instant(req: Request, name: str) -> int | None:
    raw = req.arg(name)
    if raw is None or raw == "":
        return None
    ms = parse_instant(raw)
    if ms is None:
        errors.fail(400, f"Invalid value for query parameter '{name}': {raw!r} is not a date-time")
    return ms


def page(state: HubSpotState, settings: HubSpotSettings, req: Request) -> dict[str, Any]:
    """One page of ``GET /events/v3/events`` (the caller holds the state lock)."""
    limit = errors.int_arg(req, "limit", 10, 1, MAX_LIMIT)
    object_type, object_id = req.arg("objectType"), req.arg("objectId")
    if object_id and not object_type:
        errors.fail(400, "objectType is required when objectId is given")
    after, before = _instant(req, "occurredAfter"), _instant(req, "occurredBefore")
    start = _cursor(req.arg("after"))
    events, portal = state.web_events, settings.webhooks.portal_id
    if object_type and object_type.lower() not in CONTACT_TYPES:
        return {"results": []}
    lo = 0 if after is None else int(np.searchsorted(events.ts, after, "right"))
    hi = len(events) if before is None else int(np.searchsorted(events.ts, before, "left"))
    lo = max(lo, start)
    mask = np.ones(max(hi - lo, 0), dtype=bool)
    name = req.arg("eventType")
    if name:
        codes = [k for k in range(len(KINDS)) if event_type(k, portal) == name]
        mask &= np.isin(events.kind[lo:hi], codes)
    survivor = state.merged_into  # merged id -> surviving id
    if object_id:
        try:
            wanted = int(object_id)
        except ValueError:
            errors.fail(400, f"Invalid value for query parameter 'objectId': {object_id!r}")
        wanted = survivor.get(wanted, wanted)  # a merged id stands for its survivor, as in the CRM
        mask &= np.isin(events.contact[lo:hi], [wanted, *(k for k, v in survivor.items() if v == wanted)])
    results: list[dict[str, Any]] = []
    for pos in (lo + np.flatnonzero(mask)).tolist():
        cid = int(events.contact[pos])
        cid = survivor.get(cid, cid)
        if cid not in state.contacts:
            continue  # GDPR-deleted
        if len(results) == limit:
            token = base64.urlsafe_b64encode(str(pos).encode()).decode()
            return {"results": results, "paging": {"next": {"after": token}}}
        results.append({"id": str(pos), "eventType": event_type(int(events.kind[pos]), portal),
                        "objectType": "contact", "objectId": str(cid),
                        "occurredAt": iso_ms(int(events.ts[pos])), "properties": events.properties(pos)})
    return {"results": results}


def register(app: App, state: HubSpotState, settings: HubSpotSettings) -> None:
    @app.route("GET", "/events/v3/events", "events.unified", rate_class="standard")
    def unified_events(req: Request) -> Response:
        if not settings.unified_events:
            errors.fail(403, FORBIDDEN, "MISSING_SCOPES")
        with state.lock:
            return Response.json(200, page(state, settings, req))
