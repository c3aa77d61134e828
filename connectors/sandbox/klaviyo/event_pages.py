"""Events as pre-rendered JSON bytes: each event object is serialised once and a page is a join.

Events are immutable, so an event's JSON:API object (for one base URL — its links are absolute)
is rendered on first use and kept for good, keyed by its sequence number (stable when an older
event is inserted before it). The bytes are exactly ``json.dumps(event_resource(...),
separators=(",", ":"))`` of `events.event_resource`; a test holds the two together.

Profiles change, so an ``include=profile`` fragment is kept with a snapshot of everything it was
rendered from (``updated``, ``last_event``, shallow copies of the attribute dicts) and rendered
again when the profile no longer equals it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from connectors.sandbox.klaviyo.ids import iso, ulid
from connectors.sandbox.klaviyo.state import KlaviyoState, Profile

__all__ = ["EventBytes", "page_body"]

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_Snapshot = tuple[int, int | None, dict[str, Any], dict[str, Any] | None, dict[str, Any]]


def _uuid(ms: int, seq: int) -> str:
    h = f"{((ms << 64) | seq) & ((1 << 128) - 1):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _snapshot(p: Profile) -> _Snapshot:
    loc = None if p.location is None else dict(p.location)
    return p.updated, p.last_event, dict(p.attrs), loc, dict(p.properties)


class EventBytes:
    """Rendered event objects and profile fragments of one sandbox (callers hold its lock)."""

    def __init__(self, state: KlaviyoState) -> None:
        self.state = state
        # (base URL, fields[event]) -> seq -> event object
        self._events: dict[tuple[str, str | None], dict[int, bytes]] = {}
        self._profiles: dict[tuple[str, str | None], dict[int, tuple[_Snapshot, bytes]]] = {}

    def event(self, base: str, pos: int, fields: str | None = None) -> bytes:
        """The event object at ``pos``; ``fields`` is the request's ``fields[event]``."""
        log = self.state.events
        cache = self._events.get((base, fields))
        if cache is None:
            cache = self._events[(base, fields)] = {}
        seq = log.seq[pos]
        out = cache.get(seq)
        if out is None:
            keep = None if not fields else {f.split(".")[0] for f in fields.split(",")}
            out = cache[seq] = self._render(_dumps(base)[1:-1], pos, keep)
        return out

    def _render(self, base: str, pos: int, keep: set[str] | None) -> bytes:
        state, log = self.state, self.state.events
        ms, seq = log.ms[pos], log.seq[pos]
        eid = ulid(ms, seq)
        pid = _dumps(state.by_index[log.profile[pos]])
        mid = _dumps(state.metric_by_index[log.metric[pos]])
        link = f"{base}/api/events/{eid}/"
        parts = []
        if keep is None or "timestamp" in keep:
            parts.append(f'"timestamp":{ms // 1000}')
        if keep is None or "event_properties" in keep:
            parts.append(f'"event_properties":{_dumps(log.properties(pos))}')
        if keep is None or "datetime" in keep:
            parts.append(f'"datetime":"{iso(ms)}"')
        if keep is None or "uuid" in keep:
            parts.append(f'"uuid":"{_uuid(ms, seq)}"')
        shown = ",".join(parts)
        return (
            f'{{"type":"event","id":"{eid}","attributes":{{{shown}}},"relationships":{{'
            f'"profile":{{"data":{{"type":"profile","id":{pid}}},"links":{{'
            f'"self":"{link}relationships/profile/","related":"{link}profile/"}}}},'
            f'"metric":{{"data":{{"type":"metric","id":{mid}}},"links":{{'
            f'"self":"{link}relationships/metric/","related":"{link}metric/"}}}}}},'
            f'"links":{{"self":"{link}"}}}}'
        ).encode()

    def profile(
        self, base: str, fields: str | None, p: Profile, render: Callable[[Profile], dict[str, Any]]
    ) -> bytes:
        """``render(p)`` as JSON bytes, reused while the profile is unchanged."""
        cache = self._profiles.get((base, fields))
        if cache is None:
            cache = self._profiles[(base, fields)] = {}
        hit = cache.get(p.index)
        snap = _snapshot(p)
        if hit is not None and hit[0] == snap:
            return hit[1]
        out = _dumps(render(p)).encode()
        cache[p.index] = (snap, out)
        return out


def page_body(data: list[bytes], links: dict[str, str], included: list[bytes] | None) -> bytes:
    """A collection document ``{"data": [...], "links": {...}, "included": [...]}`` as bytes."""
    parts = [b'{"data":[', b",".join(data), b'],"links":', _dumps(links).encode()]
    if included is not None:
        parts += [b',"included":[', b",".join(included), b"]"]
    parts.append(b"}")
    return b"".join(parts)
