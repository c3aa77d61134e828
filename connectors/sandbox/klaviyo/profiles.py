"""Profiles: ``GET/POST /api/profiles``, ``GET/PATCH /api/profiles/{id}``, ``POST /api/profile-import``.

Spec ``profiles.json`` (operations ``get_profiles``, ``get_profile``, ``create_profile``,
``update_profile``, ``create_or_update_profile``): page size 20 default / 100 max; filters
``equals``/``any`` on identifiers and ``greater-than``/``less-than`` on ``created``/``updated``;
sort on ``id``, ``created``, ``updated``, ``email``. PATCH: a field set to ``null`` is cleared,
an absent field is left alone; ``meta.patch_properties`` unset/append/unappend.
"""

from __future__ import annotations

from typing import Any

from connectors.sandbox.klaviyo.app import KlaviyoApp, route
from connectors.sandbox.klaviyo.errors import document, invalid, not_found
from connectors.sandbox.klaviyo.query import (
    Condition,
    decode_cursor,
    links,
    page_size,
    parse_filter,
    sort_key,
)
from connectors.sandbox.klaviyo.resources import data_object, keyset, profile_resource
from connectors.sandbox.klaviyo.state import IDENTIFIERS, KlaviyoState, Profile, Rejected
from connectors.sandbox.server import Request, Response

FILTERS = {
    **{f: ({"equals", "any"}, "string") for f in ("id", *IDENTIFIERS)},
    **{f: ({"greater-than", "less-than"}, "datetime") for f in ("created", "updated")},
}
SORTS = ("id", "created", "updated", "email")


def matches(p: Profile, conds: list[Condition]) -> bool:
    for c in conds:
        if c.field in ("created", "updated"):
            v = p.created if c.field == "created" else p.updated
            if not (v > c.value if c.op == "greater-than" else v < c.value):
                return False
            continue
        actual = p.id if c.field == "id" else p.attrs.get(c.field)
        wanted = c.value if c.op == "any" else [c.value]
        if c.field == "email":
            actual = actual.lower() if actual else actual
            wanted = [w.lower() for w in wanted if isinstance(w, str)]
        if actual not in wanted:
            return False
    return True


def order_for(state: KlaviyoState, field: str, conds: list[Condition]) -> list[tuple[Any, str]]:
    """The sorted (value, id) sequence to page through, narrowed by identifier filters."""
    exact = next((c for c in conds if c.field in ("id", *IDENTIFIERS)), None)
    if exact is not None:
        values = exact.value if exact.op == "any" else [exact.value]
        found = [state.profiles.get(v) if exact.field == "id" else state.find(exact.field, v) for v in values]
        return sorted({_key(p, field) for p in found if p is not None})
    if field == "email":
        return sorted(_key(p, field) for p in state.profiles.values())
    if field == "id":
        return state.order_id
    return state.order_created if field == "created" else state.order_updated


def _key(p: Profile, field: str) -> tuple[Any, str]:
    if field == "email":
        return (p.attrs.get("email") or "", p.id)
    return (p.id if field == "id" else p.created if field == "created" else p.updated, p.id)


def register(app: KlaviyoApp) -> None:
    state = app.state

    @route(app, "GET", "/api/profiles", "get_profiles")
    def get_profiles(req: Request) -> Response:
        conds = parse_filter(req.arg("filter"), FILTERS)
        field, desc = sort_key(req, SORTS, "id")
        size = page_size(req, 20, 100)
        after = decode_cursor(req, app.settings.tolerate_cursor_equals)
        with state.lock:
            order = order_for(state, field, conds)
            ids, nxt = keyset(order, after, desc, lambda pid: matches(state.profiles[pid], conds), size)
            data = [profile_resource(req, state.profiles[pid]) for pid in ids]
        return document(200, {"data": data, "links": links(req, nxt)})

    @route(app, "GET", "/api/profiles/{id}", "get_profile")
    def get_profile(req: Request) -> Response:
        with state.lock:
            p = _profile(state, req.path_params["id"])
            return document(200, {"data": profile_resource(req, p), "links": {"self": _self(req, p)}})

    @route(app, "POST", "/api/profiles", "create_profile")
    def create_profile(req: Request) -> Response:
        data = data_object(req, "profile")
        with state.lock:
            p = state.create_profile(data.get("attributes", {}))
            return document(201, {"data": profile_resource(req, p), "links": {"self": _self(req, p)}})

    @route(app, "PATCH", "/api/profiles/{id}", "update_profile")
    def update_profile(req: Request) -> Response:
        data = data_object(req, "profile")
        pid = req.path_params["id"]
        if data.get("id") != pid:
            raise invalid("'id' in the body must match the profile id in the URL.", pointer="/data/id")
        meta = data.get("meta") or {}
        if not isinstance(meta, dict):
            raise invalid("'meta' must be an object.", pointer="/data/meta")
        with state.lock:
            p = _profile(state, pid)
            state.update_profile(p, data.get("attributes", {}), meta.get("patch_properties"))
            return document(200, {"data": profile_resource(req, p), "links": {"self": _self(req, p)}})

    @route(app, "POST", "/api/profile-import", "create_or_update_profile")
    def create_or_update(req: Request) -> Response:
        data = data_object(req, "profile")
        attrs = data.get("attributes", {})
        meta = data.get("meta") or {}
        with state.lock:
            patch = meta.get("patch_properties") if isinstance(meta, dict) else None
            p, created = upsert(state, data.get("id"), attrs, patch)
            body = {"data": profile_resource(req, p), "links": {"self": _self(req, p)}}
            return document(201 if created else 200, body)


def upsert(state: KlaviyoState, pid: Any, attrs: Any, patch: Any) -> tuple[Profile, bool]:
    """Create-or-update by id, else by identifiers (``profile-import`` and bulk import rows)."""
    if pid is not None:
        if not isinstance(pid, str) or pid not in state.profiles:
            raise Rejected(404, "not_found", f"A profile with id {pid} does not exist.", "/data/")
        return state.update_profile(state.profiles[pid], attrs, patch), False
    existing = state.match(attrs) if isinstance(attrs, dict) else None
    if existing is not None:
        return state.update_profile(existing, attrs, patch), False
    p = state.create_profile(attrs)
    if patch:
        state.update_profile(p, {}, patch)
    return p, True


def _profile(state: KlaviyoState, pid: str) -> Profile:
    p = state.profiles.get(pid)
    if p is None:
        raise not_found(f"A profile with id {pid} does not exist.")
    return p


def _self(req: Request, p: Profile) -> str:
    return str(profile_resource(req, p)["links"]["self"])
