"""The pull cursors of the Klaviyo connector: JSON, versioned, owned by this package.

Profiles: ``{"kind": "klaviyo.profiles", "v": 1, "updated": <ms>, "seen": {id: updated_ms}}``.
``updated`` is the high-water mark of profile ``updated`` delivered so far; the next pull asks
for ``greater-than(updated, mark - overlap)`` (Klaviyo has no ``greater-or-equal`` on
``updated``) and skips a profile whose ``(id, updated)`` is in ``seen`` — the versions already
delivered inside the overlap window. A profile changed again has a new ``updated`` and is
delivered again.

Events: ``{"kind": "klaviyo.events", "v": 1, "metrics": {metric_id: {"datetime": <ms>,
"seen": {event_id: ms}}}}``, one mark per metric; the next pull asks for
``greater-or-equal(datetime, mark - overlap)`` and skips the event ids in ``seen``.

``seen`` keeps only entries inside the overlap window, at most `SEEN_CAP` of them (the newest);
anything dropped is simply delivered again and deduped by id downstream. A cursor that does
not parse is an `InputError` (the stored state is not ours, or damaged): ``--full`` repairs it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.cursor_text import load_cursor
from mapping.errors import InputError

__all__ = ["SEEN_CAP", "EventCursor", "Mark", "ProfileCursor"]

SEEN_CAP = 2000
_PROFILES = "klaviyo.profiles"
_EVENTS = "klaviyo.events"


_load = load_cursor


def _dump(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Mark:
    """A high-water mark (epoch ms) and the ids delivered inside its overlap window."""

    at: int | None = None
    seen: Mapping[str, int] = field(default_factory=dict)

    def since(self, overlap_ms: int) -> int | None:
        """Where the next pull starts (None = from the beginning)."""
        return None if self.at is None else self.at - overlap_ms

    def delivered(self, item_id: str, ms: int) -> bool:
        return self.seen.get(item_id) == ms

    def advance(self, items: Iterable[tuple[str, int]], overlap_ms: int) -> Mark:
        """The mark after delivering `items` ``(id, ms)``."""
        seen = dict(self.seen)
        at = self.at
        for item_id, ms in items:
            seen[item_id] = ms
            at = ms if at is None else max(at, ms)
        if at is None:
            return self
        floor = at - overlap_ms
        kept = sorted(((ms, i) for i, ms in seen.items() if ms >= floor), reverse=True)[:SEEN_CAP]
        return Mark(at, {i: ms for ms, i in kept})

    def to_json(self, key: str) -> dict[str, Any]:
        return {key: self.at, "seen": dict(self.seen)}

    @classmethod
    def from_json(cls, obj: object, key: str, kind: str) -> Mark:
        if not isinstance(obj, dict):
            raise InputError(f"the stored {kind} cursor has a malformed entry: {obj!r}")
        at, seen = obj.get(key), obj.get("seen", {})
        ok_at = at is None or (isinstance(at, int) and not isinstance(at, bool))
        ok_seen = isinstance(seen, dict) and all(isinstance(v, int) for v in seen.values())
        if not (ok_at and ok_seen):
            raise InputError(f"the stored {kind} cursor has a malformed entry: {obj!r}")
        return cls(at, seen)


@dataclass(frozen=True)
class ProfileCursor:
    mark: Mark = field(default_factory=Mark)

    def encode(self) -> str:
        return _dump({"kind": _PROFILES, "v": 1, **self.mark.to_json("updated")})

    @classmethod
    def decode(cls, text: str | None) -> ProfileCursor:
        if not text:
            return cls()
        return cls(Mark.from_json(_load(text, _PROFILES), "updated", _PROFILES))


@dataclass(frozen=True)
class EventCursor:
    metrics: Mapping[str, Mark] = field(default_factory=dict)

    def mark(self, metric_id: str) -> Mark:
        return self.metrics.get(metric_id) or Mark()

    def with_mark(self, metric_id: str, mark: Mark) -> EventCursor:
        return EventCursor({**self.metrics, metric_id: mark})

    def encode(self) -> str:
        metrics = {mid: m.to_json("datetime") for mid, m in self.metrics.items()}
        return _dump({"kind": _EVENTS, "v": 1, "metrics": metrics})

    @classmethod
    def decode(cls, text: str | None) -> EventCursor:
        if not text:
            return cls()
        obj = _load(text, _EVENTS)
        metrics = obj.get("metrics")
        if not isinstance(metrics, dict):
            raise InputError(f"the stored {_EVENTS} cursor has no 'metrics' object")
        return cls({str(mid): Mark.from_json(m, "datetime", _EVENTS) for mid, m in metrics.items()})
