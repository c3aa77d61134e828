"""Legacy marketing-email events: a compact columnar store and ``GET /email/public/v1/events``.

Events are kept in parallel arrays ordered by ``created`` (millions fit in memory), with
per-recipient and per-type position indexes. A page is served newest first; ``offset`` is an
opaque cursor (a position in the index that was scanned), ``hasMore`` says whether another page
exists. GDPR deletion tombstones a recipient's events, so cursors and ids stay stable.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from connectors.sandbox.server import Request, Response

from . import errors

# dataset activity kind -> HubSpot event type (unsubscribes are STATUSCHANGE events)
KIND_TO_TYPE = {
    "email_sent": "SENT",
    "email_delivered": "DELIVERED",
    "email_opened": "OPEN",
    "email_clicked": "CLICK",
    "email_bounced": "BOUNCE",
    "email_unsubscribed": "STATUSCHANGE",
    "sent": "SENT",
    "delivered": "DELIVERED",
    "opened": "OPEN",
    "open": "OPEN",
    "clicked": "CLICK",
    "click": "CLICK",
    "bounced": "BOUNCE",
    "bounce": "BOUNCE",
    "unsubscribed": "STATUSCHANGE",
}
TYPES = (
    "SENT",
    "DELIVERED",
    "OPEN",
    "CLICK",
    "BOUNCE",
    "STATUSCHANGE",
    "PROCESSED",
    "DEFERRED",
    "DROPPED",
    "SPAMREPORT",
)
TYPE_CODE = {t: i for i, t in enumerate(TYPES)}
MAX_LIMIT = 1000


def _group_positions(keys: npt.NDArray[np.int64]) -> dict[int, array[int]]:
    """key -> ascending positions having that key."""
    if not len(keys):
        return {}
    order = np.argsort(keys, kind="stable").astype(np.int64)
    sorted_keys = keys[order]
    bounds = np.flatnonzero(np.diff(sorted_keys)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(keys)]))
    out: dict[int, array[int]] = {}
    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
        positions = array("q")
        positions.frombytes(order[lo:hi].tobytes())
        out[int(sorted_keys[lo])] = positions
    return out


class EmailEventStore:
    """Columns of marketing-email events; callers hold the state lock for writes."""

    def __init__(self) -> None:
        self.created = array("q")
        self.type_code = bytearray()
        self.recipient = array("q")  # index into self.emails
        self.campaign = array("q")
        self.url = array("q")  # index into self.urls, -1 = none
        self.deleted = bytearray()
        self.emails: list[str] = []
        self._email_idx: dict[str, int] = {}
        self.urls: list[str] = []
        self._url_idx: dict[str, int] = {}
        self.by_recipient: dict[int, array[int]] = {}
        self.by_type: dict[int, array[int]] = {}

    def __len__(self) -> int:
        return len(self.created)

    def _intern_email(self, email: str) -> int:
        idx = self._email_idx.get(email)
        if idx is None:
            idx = self._email_idx[email] = len(self.emails)
            self.emails.append(email)
        return idx

    def _intern_url(self, url: str | None) -> int:
        if not url:
            return -1
        idx = self._url_idx.get(url)
        if idx is None:
            idx = self._url_idx[url] = len(self.urls)
            self.urls.append(url)
        return idx

    def copy(self) -> EmailEventStore:
        """An independent copy (``reset`` restores the loaded events from one)."""
        other = EmailEventStore()
        other.created = array("q", self.created)
        other.type_code = bytearray(self.type_code)
        other.recipient = array("q", self.recipient)
        other.campaign = array("q", self.campaign)
        other.url = array("q", self.url)
        other.deleted = bytearray(self.deleted)
        other.emails = list(self.emails)
        other._email_idx = dict(self._email_idx)
        other.urls = list(self.urls)
        other._url_idx = dict(self._url_idx)
        other.by_recipient = {k: array("q", v) for k, v in self.by_recipient.items()}
        other.by_type = {k: array("q", v) for k, v in self.by_type.items()}
        return other

    def load_columns(
        self,
        ts: npt.NDArray[np.int64],
        codes: npt.NDArray[np.uint8],
        recipients: npt.NDArray[np.int64],
        emails: list[str],
        campaigns: npt.NDArray[np.int64],
        url_idx: npt.NDArray[np.int64],
        urls: list[str],
    ) -> int:
        """Bulk-load columns into an empty store: ``recipients`` index ``emails`` (lower-case,
        unique), ``url_idx`` indexes ``urls`` (-1 = none). Sorted by ``ts`` here."""
        if len(self.created):
            raise ValueError("load_columns needs an empty store")
        order = np.argsort(ts, kind="stable")
        recipients = recipients[order].astype(np.int64)
        self.created.frombytes(ts[order].astype(np.int64).tobytes())
        self.type_code = bytearray(codes[order].astype(np.uint8).tobytes())
        self.recipient.frombytes(recipients.tobytes())
        self.campaign.frombytes(campaigns[order].astype(np.int64).tobytes())
        self.url.frombytes(url_idx[order].astype(np.int64).tobytes())
        self.deleted = bytearray(len(ts))
        self.emails = list(emails)
        self._email_idx = {e: i for i, e in enumerate(self.emails)}
        self.urls = list(urls)
        self._url_idx = {u: i for i, u in enumerate(self.urls)}
        self.by_recipient = _group_positions(recipients)
        self.by_type = _group_positions(codes[order].astype(np.int64))
        return len(ts)

    def load(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Bulk-load dicts ``{email, kind|type, ts, campaign_id?, url?}`` (any order); returns count."""
        ts: list[int] = []
        codes: list[int] = []
        recipients: list[int] = []
        campaigns: list[int] = []
        url_idx: list[int] = []
        emails: dict[str, int] = {}
        urls: dict[str, int] = {}
        for e in events:
            kind = str(e.get("type") or e.get("kind") or "").lower()
            etype = KIND_TO_TYPE.get(kind, kind.upper())
            if etype not in TYPE_CODE or not e.get("email"):
                continue
            ts.append(int(e["ts"]))
            codes.append(TYPE_CODE[etype])
            recipients.append(emails.setdefault(str(e["email"]).strip().lower(), len(emails)))
            campaigns.append(int(e.get("campaign_id") or 0))
            url = e.get("url")
            url_idx.append(urls.setdefault(str(url), len(urls)) if url else -1)
        return self.load_columns(
            np.array(ts, dtype=np.int64), np.array(codes, dtype=np.uint8),
            np.array(recipients, dtype=np.int64), list(emails),
            np.array(campaigns, dtype=np.int64), np.array(url_idx, dtype=np.int64), list(urls),
        )  # fmt: skip

    def add(self, ts: int, etype: str, email: str, campaign_id: int = 0, url: str | None = None) -> int:
        """Append one live event (kept in time order); returns its position."""
        if self.created and ts < self.created[-1]:
            ts = self.created[-1]
        return self._append(ts, TYPE_CODE[etype], email.lower(), campaign_id, url)

    def _append(self, ts: int, code: int, email: str, campaign: int, url: str | None) -> int:
        pos = len(self.created)
        rec = self._intern_email(email)
        self.created.append(ts)
        self.type_code.append(code)
        self.recipient.append(rec)
        self.campaign.append(campaign)
        self.url.append(self._intern_url(url))
        self.deleted.append(0)
        self.by_recipient.setdefault(rec, array("q")).append(pos)
        self.by_type.setdefault(code, array("q")).append(pos)
        return pos

    def forget(self, email: str) -> int:
        """Tombstone every event of a recipient (GDPR delete); returns how many."""
        rec = self._email_idx.get(email.lower())
        if rec is None:
            return 0
        positions = self.by_recipient.get(rec, array("q"))
        for p in positions:
            self.deleted[p] = 1
        return len(positions)

    def event_json(self, pos: int, portal_id: int) -> dict[str, Any]:
        etype = TYPES[self.type_code[pos]]
        created = self.created[pos]
        campaign = self.campaign[pos]
        out: dict[str, Any] = {
            "id": f"00000000-0000-4000-8000-{pos:012x}",
            "created": created,
            "type": etype,
            "recipient": self.emails[self.recipient[pos]],
            "portalId": portal_id,
            "appId": 0,
            "appName": "Batch",
            "emailCampaignId": campaign,
            "sentBy": {"id": f"00000000-0000-4000-9000-{campaign:012x}", "created": created},
            "filteredEvent": False,
        }
        if etype in ("OPEN", "CLICK"):
            out["userAgent"] = "Mozilla/5.0 (sandbox)"
            out["browser"] = {"name": "Sandbox Browser", "family": "Sandbox", "type": "Browser"}
            out["location"] = {"country": "United States", "state": "", "city": ""}
            out["deviceType"] = "COMPUTER"
            if etype == "OPEN":
                out["duration"] = 0
        if etype == "CLICK":
            url_idx = self.url[pos]
            out["url"] = self.urls[url_idx] if url_idx >= 0 else None
        elif etype == "BOUNCE":
            out["category"] = "HARD_BOUNCE"
            out["response"] = "550 5.1.1 user unknown"
            out["status"] = "5.1.1"
        elif etype == "STATUSCHANGE":
            out["source"] = "SOURCE_RECIPIENT"
            out["subscriptions"] = [{"id": 1, "status": "UNSUBSCRIBED"}]
            out["portalSubscriptionStatus"] = "UNSUBSCRIBED"
            out["changeType"] = "SUBSCRIPTION_STATUS"
        elif etype == "DELIVERED":
            out["response"] = "250 OK"
        return out

    def query(
        self,
        *,
        recipient: str | None,
        etype: str | None,
        campaign_id: int | None,
        start: int | None,
        end: int | None,
        offset: int | None,
        limit: int,
    ) -> tuple[list[int], int | None]:
        """Matching positions, newest first, and the next offset (None = no more)."""
        base: Any
        code = TYPE_CODE[etype] if etype else None
        if recipient is not None:
            rec = self._email_idx.get(recipient.lower())
            base = self.by_recipient.get(rec, array("q")) if rec is not None else array("q")
            need_type = code is not None
        elif code is not None:
            base = self.by_type.get(code, array("q"))
            need_type = False
        else:
            base = range(len(self.created))
            need_type = False
        created = self.created
        lo = 0 if start is None else bisect.bisect_left(base, start, key=created.__getitem__)
        hi = len(base) if end is None else bisect.bisect_right(base, end, key=created.__getitem__)
        i = hi - 1 if offset is None else min(offset, hi - 1)
        out: list[int] = []
        while i >= lo:
            pos = base[i]
            if (
                not self.deleted[pos]
                and (not need_type or self.type_code[pos] == code)
                and (campaign_id is None or self.campaign[pos] == campaign_id)
            ):
                if len(out) == limit:
                    return out, i
                out.append(pos)
            i -= 1
        return out, None


def handle_events(store: EmailEventStore, portal_id: int, req: Request) -> Response:
    """``GET /email/public/v1/events``: recipient, eventType, campaignId, start/endTimestamp,
    offset, limit (<= 1000) -> ``{"events", "hasMore", "offset"}``."""
    limit = errors.int_arg(req, "limit", 100, 1, MAX_LIMIT)
    etype = req.arg("eventType")
    if etype is not None:
        etype = etype.upper()
        if etype not in TYPE_CODE:
            errors.fail(400, f"Invalid eventType {etype!r}; expected one of {list(TYPES)}")
    start = _ms_arg(req, "startTimestamp")
    end = _ms_arg(req, "endTimestamp")
    campaign = _ms_arg(req, "campaignId")
    offset = _ms_arg(req, "offset")
    positions, next_offset = store.query(
        recipient=req.arg("recipient"),
        etype=etype,
        campaign_id=campaign,
        start=start,
        end=end,
        offset=offset,
        limit=limit,
    )
    body: dict[str, Any] = {
        "events": [store.event_json(p, portal_id) for p in positions],
        "hasMore": next_offset is not None,
    }
    if next_offset is not None:
        body["offset"] = str(next_offset)
    return Response.json(200, body)


def _ms_arg(req: Request, name: str) -> int | None:
    raw = req.arg(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        errors.fail(400, f"Invalid value for query parameter '{name}': {raw!r} is not an integer")
