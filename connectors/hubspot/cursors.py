"""The pull cursors of the HubSpot connector: JSON, versioned, owned by this package.

Contacts: ``{"kind": "hubspot.contacts", "v": 1, "mark": <ms>|null, "full_after": <str>|null,
"full_started": <ms>|null}``.

- ``mark`` is the ``lastmodifieddate`` high-water mark delivered so far; the next incremental
  pull searches ``lastmodifieddate >= mark - look_back`` and dedupes by id.
- While a full listing is under way (first run, or ``--full``) ``full_after`` is the list
  cursor to resume from and ``full_started`` the instant the listing began: when the listing
  ends, the mark becomes ``full_started`` (anything modified during the listing is re-read).

Events: ``{"kind": "hubspot.events", "v": 1, "email": Mark, "unified": Mark}`` where a Mark is
``{"at": <ms>|null, "seen": {event_id: ms}}``: events up to ``at`` were delivered; the next pull
asks from ``at - overlap`` and skips the ids in ``seen`` (only ids inside the overlap window
are kept, at most `SEEN_CAP`).

A cursor that does not parse is an `InputError` (not ours, or damaged): ``--full`` repairs it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from connectors.cursor_text import load_cursor
from mapping.errors import InputError

__all__ = ["SEEN_CAP", "ContactCursor", "EventCursor", "Mark"]

SEEN_CAP = 5000
_CONTACTS = "hubspot.contacts"
_EVENTS = "hubspot.events"


_load = load_cursor


def _dump(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _opt_int(obj: Mapping[str, Any], key: str, kind: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"the stored {kind} cursor has a malformed {key!r}: {value!r}")
    return value


@dataclass(frozen=True)
class ContactCursor:
    mark: int | None = None
    full_after: str | None = None
    full_started: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> ContactCursor:
        if text is None:
            return cls()
        obj = _load(text, _CONTACTS)
        after = obj.get("full_after")
        if after is not None and not isinstance(after, str):
            raise InputError(f"the stored {_CONTACTS} cursor has a malformed 'full_after': {after!r}")
        return cls(_opt_int(obj, "mark", _CONTACTS), after, _opt_int(obj, "full_started", _CONTACTS))

    @property
    def in_full_listing(self) -> bool:
        return self.full_started is not None

    def dump(self) -> str:
        return _dump({"kind": _CONTACTS, "v": 1, "mark": self.mark, "full_after": self.full_after,
                      "full_started": self.full_started})  # fmt: skip


@dataclass(frozen=True)
class Mark:
    """A high-water mark (epoch ms) and the event ids delivered inside its overlap window."""

    at: int | None = None
    seen: Mapping[str, int] = field(default_factory=dict)

    def since(self, overlap_ms: int) -> int | None:
        return None if self.at is None else self.at - overlap_ms

    def advanced(self, at: int, delivered: Mapping[str, int], overlap_ms: int) -> Mark:
        """The mark after delivering `delivered` (id -> ts) up to `at`."""
        edge = at - overlap_ms
        keep = {k: v for k, v in {**self.seen, **delivered}.items() if v >= edge}
        if len(keep) > SEEN_CAP:
            keep = dict(sorted(keep.items(), key=lambda kv: kv[1])[-SEEN_CAP:])
        return Mark(max(at, self.at or at), keep)

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "seen": dict(self.seen)}

    @classmethod
    def from_json(cls, obj: object) -> Mark:
        if obj is None:
            return cls()
        if not isinstance(obj, dict) or not isinstance(obj.get("seen", {}), dict):
            raise InputError(f"the stored {_EVENTS} cursor has a malformed mark: {obj!r}")
        seen = obj.get("seen", {})
        if not all(isinstance(k, str) and isinstance(v, int) for k, v in seen.items()):
            raise InputError(f"the stored {_EVENTS} cursor has a malformed 'seen' table")
        return cls(_opt_int(obj, "at", _EVENTS), dict(seen))


@dataclass(frozen=True)
class EventCursor:
    email: Mark = field(default_factory=Mark)
    unified: Mark = field(default_factory=Mark)

    @classmethod
    def parse(cls, text: str | None) -> EventCursor:
        if text is None:
            return cls()
        obj = _load(text, _EVENTS)
        return cls(Mark.from_json(obj.get("email")), Mark.from_json(obj.get("unified")))

    def with_email(self, mark: Mark) -> EventCursor:
        return replace(self, email=mark)

    def with_unified(self, mark: Mark) -> EventCursor:
        return replace(self, unified=mark)

    def dump(self) -> str:
        return _dump({"kind": _EVENTS, "v": 1, "email": self.email.to_json(),
                      "unified": self.unified.to_json()})  # fmt: skip
