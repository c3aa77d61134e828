"""Events: ``GET /api/events``, ``GET /api/events/{id}``, ``POST /api/events``,
``POST /api/event-bulk-create-jobs``.

Spec ``get_events``: filters ``equals`` on ``metric_id``/``profile_id``, ``greater-or-equal``,
``greater-than``, ``less-or-equal``, ``less-than`` on ``datetime`` and ``timestamp`` (seconds);
``include=metric,profile``; ``sort`` ``datetime``/``timestamp`` (``-`` descending); ``page[size]``
200 default / 1000 max. Creating an event creates its metric (by name) and its profile (by
identifiers) when new; ``unique_id`` repeats are ignored. Both POSTs answer 202 without a body.
"""

from __future__ import annotations

import json
import math
import uuid
from bisect import bisect_left, bisect_right
from functools import partial
from typing import Any

from connectors.sandbox.klaviyo.app import KlaviyoApp, route
from connectors.sandbox.klaviyo.errors import MEDIA_TYPE, api_error, document, invalid, not_found
from connectors.sandbox.klaviyo.event_pages import EventBytes, page_body
from connectors.sandbox.klaviyo.ids import decode_ulid, iso, parse_instant, ulid
from connectors.sandbox.klaviyo.metrics import metric_resource
from connectors.sandbox.klaviyo.query import (
    base_url,
    decode_cursor,
    includes,
    links,
    page_size,
    parse_filter,
    sort_key,
    sparse,
)
from connectors.sandbox.klaviyo.resources import data_object, profile_resource, self_link
from connectors.sandbox.klaviyo.state import KlaviyoState, Profile, Rejected, validate_attributes
from connectors.sandbox.server import Request, Response

_RANGE_OPS = {"greater-or-equal", "greater-than", "less-or-equal", "less-than"}
FILTERS = {
    "metric_id": ({"equals"}, "string"),
    "profile_id": ({"equals"}, "string"),
    "datetime": (_RANGE_OPS, "datetime"),
    "timestamp": (_RANGE_OPS, "number"),
}
MAX_BULK_EVENTS = 1000
MAX_BYTES = 5 * 1024 * 1024
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def event_resource(req: Request, state: KlaviyoState, pos: int) -> dict[str, Any]:
    log = state.events
    ms, seq = log.ms[pos], log.seq[pos]
    eid = ulid(ms, seq)
    pid = state.by_index[log.profile[pos]]
    mid = state.metric_by_index[log.metric[pos]]
    base = self_link(req, f"/api/events/{eid}/")["self"]
    return {
        "type": "event",
        "id": eid,
        "attributes": sparse(req, "event", {
            "timestamp": ms // 1000,
            "event_properties": log.properties(pos),
            "datetime": iso(ms),
            "uuid": str(uuid.UUID(int=(ms << 64) | seq)),
        }),
        "relationships": {
            "profile": {
                "data": {"type": "profile", "id": pid},
                "links": {"self": base + "relationships/profile/", "related": base + "profile/"},
            },
            "metric": {
                "data": {"type": "metric", "id": mid},
                "links": {"self": base + "relationships/metric/", "related": base + "metric/"},
            },
        },
        "links": {"self": base},
    }


def _included(
    req: Request, state: KlaviyoState, positions: list[int], names: set[str], cache: EventBytes
) -> list[bytes]:
    out: list[bytes] = []
    if "metric" in names:
        for mi in dict.fromkeys(state.events.metric[p] for p in positions):
            out.append(_dumps(metric_resource(req, state.metrics[state.metric_by_index[mi]])).encode())
    if "profile" in names:
        base, fields = base_url(req), req.arg("fields[profile]")
        render = partial(profile_resource, req)
        column = state.events.profile
        for pi in dict.fromkeys(column[p] for p in positions):
            out.append(cache.profile(base, fields, state.profiles[state.by_index[pi]], render))
    return out


def _document(body: bytes) -> Response:
    return Response(200, body, {"Content-Type": MEDIA_TYPE})


def register(app: KlaviyoApp) -> None:
    state = app.state
    cache = EventBytes(state)

    @route(app, "GET", "/api/events", "get_events")
    def get_events(req: Request) -> Response:
        conds = parse_filter(req.arg("filter"), FILTERS)
        names = includes(req, {"metric", "profile", "attributions"})
        field, desc = sort_key(req, ("datetime", "timestamp"), "datetime")
        del field  # both orders are the same order
        size = page_size(req, 200, 1000)
        after = decode_cursor(req, app.settings.tolerate_cursor_equals)
        if after is not None and not (
            isinstance(after, list) and len(after) == 2 and all(isinstance(x, int) for x in after)
        ):
            raise invalid("Invalid page cursor.", parameter="page[cursor]")
        with state.lock:
            log = state.events
            lo, hi = 0, len(log)
            metric = profile = None
            for c in conds:
                if c.field in ("metric_id", "profile_id"):
                    obj = (
                        state.metrics.get(c.value) if c.field == "metric_id" else state.profiles.get(c.value)
                    )
                    if obj is None:
                        lo = hi = 0
                        continue
                    if c.field == "metric_id":
                        metric = obj.index
                    else:
                        profile = obj.index
                    continue
                bound = c.value if c.field == "datetime" else math.floor(c.value * 1000)
                if c.op in ("greater-or-equal", "greater-than"):
                    pos = (
                        bisect_left(log.ms, bound)
                        if c.op == "greater-or-equal"
                        else bisect_right(log.ms, bound)
                    )
                    lo = max(lo, pos)
                else:
                    pos = (
                        bisect_right(log.ms, bound) if c.op == "less-or-equal" else bisect_left(log.ms, bound)
                    )
                    hi = min(hi, pos)
            if after is not None:
                if desc:
                    hi = min(hi, log.position_before(after[0], after[1]) + 1)
                else:
                    lo = max(lo, log.position_after(after[0], after[1]))
            positions: list[int] = []
            more = False
            for pos in log.scan(lo, max(lo, hi), metric=metric, profile=profile, descending=desc):
                if len(positions) == size:
                    more = True
                    break
                positions.append(pos)
            nxt = [log.ms[positions[-1]], log.seq[positions[-1]]] if more else None
            base = base_url(req)
            fields = req.arg("fields[event]")
            data = [cache.event(base, p, fields) for p in positions]
            extra = _included(req, state, positions, names, cache) if names - {"attributions"} else None
            body = page_body(data, links(req, nxt), extra)
        return _document(body)

    @route(app, "GET", "/api/events/{id}", "get_event")
    def get_event(req: Request) -> Response:
        eid = req.path_params["id"]
        names = includes(req, {"metric", "profile", "attributions"})
        with state.lock:
            key = decode_ulid(eid)
            pos = state.events.find(*key) if key else None
            if pos is None:
                raise not_found(f"An event with id {eid} does not exist.")
            parts = [b'{"data":', cache.event(base_url(req), pos, req.arg("fields[event]")), b',"links":']
            parts.append(_dumps(self_link(req, req.path)).encode())
            if names - {"attributions"}:
                parts += [b',"included":[', b",".join(_included(req, state, [pos], names, cache)), b"]"]
        return _document(b"".join([*parts, b"}"]))

    @route(app, "POST", "/api/events", "create_event")
    def create_event(req: Request) -> Response:
        data = data_object(req, "event")
        with state.lock:
            record_event(state, data.get("attributes", {}), None, "/data/attributes")
        return document(202, None)

    @route(app, "POST", "/api/event-bulk-create-jobs", "bulk_create_events")
    def bulk_create(req: Request) -> Response:
        if len(req.body) > MAX_BYTES:
            raise api_error(
                413, "request_too_large", "The maximum allowed payload size is 5MB.", pointer="/data"
            )
        data = data_object(req, "event-bulk-create-job")
        groups = ((data.get("attributes") or {}).get("events-bulk-create") or {}).get("data")
        if not isinstance(groups, list):
            raise invalid(
                "'events-bulk-create.data' must be an array.", pointer="/data/attributes/events-bulk-create"
            )
        work: list[tuple[Any, Any, str]] = []
        for gi, group in enumerate(groups):
            ptr = f"/data/attributes/events-bulk-create/data/{gi}/attributes"
            attrs = group.get("attributes") if isinstance(group, dict) else None
            evs = ((attrs or {}).get("events") or {}).get("data")
            if not isinstance(attrs, dict) or not isinstance(evs, list):
                raise invalid("Each entry needs 'profile' and 'events'.", pointer=ptr)
            work.extend(
                (ev.get("attributes") if isinstance(ev, dict) else None, attrs.get("profile"), ptr)
                for ev in evs
            )
        if len(work) > MAX_BULK_EVENTS:
            raise invalid(
                f"A request accepts up to {MAX_BULK_EVENTS} events; got {len(work)}.", pointer="/data"
            )
        with state.lock:
            checked = [_checked(state, ev, prof, ptr) for ev, prof, ptr in work]
            for args in checked:
                _store(state, *args)
        return document(202, None)


def record_event(state: KlaviyoState, attrs: Any, profile_obj: Any, ptr: str) -> str | None:
    """Validate and store one event from JSON:API attributes; returns its id."""
    return _store(state, *_checked(state, attrs, profile_obj, ptr))


def _checked(state: KlaviyoState, attrs: Any, profile_obj: Any, ptr: str) -> tuple[Any, ...]:
    if not isinstance(attrs, dict):
        raise invalid("'attributes' must be an object.", pointer=ptr)
    props = attrs.get("properties")
    if not isinstance(props, dict):
        raise invalid("'properties' is required and must be an object.", pointer=ptr + "/properties")
    name = (((attrs.get("metric") or {}).get("data") or {}).get("attributes") or {}).get("name")
    if not isinstance(name, str) or not name.strip():
        raise invalid("'metric.data.attributes.name' is required.", pointer=ptr + "/metric")
    prof = ((profile_obj if profile_obj is not None else attrs.get("profile")) or {}).get("data")
    if not isinstance(prof, dict):
        raise invalid("'profile.data' is required.", pointer=ptr + "/profile")
    try:
        ms = state.now_ms() if attrs.get("time") in (None, "") else parse_instant(str(attrs["time"]))
    except ValueError:
        raise invalid(f"Invalid 'time': {attrs.get('time')!r}.", pointer=ptr + "/time") from None
    ms -= ms % 1000  # "The time is truncated to the second."
    value = attrs.get("value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise invalid("'value' must be a number.", pointer=ptr + "/value")
    unique_id = attrs.get("unique_id")
    pattrs = prof.get("attributes") or {}
    try:
        validate_attributes(pattrs, creating=prof.get("id") is None)
    except Rejected as r:
        raise invalid(r.detail, pointer=ptr + "/profile" + r.pointer) from None
    return name.strip(), prof.get("id"), pattrs, ms, props, value, unique_id


def _store(
    state: KlaviyoState,
    name: str,
    pid: Any,
    pattrs: dict[str, Any],
    ms: int,
    props: dict[str, Any],
    value: Any,
    unique_id: Any,
) -> str | None:
    profile: Profile | None
    if pid is not None:
        profile = state.profiles.get(pid)
        if profile is None:
            raise not_found(f"A profile with id {pid} does not exist.", "/data/attributes/profile/data/id")
    else:
        profile = state.match(pattrs)
        if profile is None:
            profile = state.create_profile(pattrs)
    if pattrs:
        state.update_profile(
            profile,
            {k: v for k, v in pattrs.items() if k in ("first_name", "last_name", "properties", "location")},
        )
    metric = state.metric(name)
    return state.add_event(
        metric,
        profile,
        ms,
        props,
        None if value is None else float(value),
        None if unique_id is None else str(unique_id),
    )
