"""Lists: ``GET/POST /api/lists``, ``GET /api/lists/{id}``, list profiles and membership changes.

Spec ``lists.json``: ``get_lists`` page size 10 (max 10); ``create_list`` 201 (names need not be
unique: Klaviyo allows several lists with one name); ``add_profiles_to_list`` /
``remove_profiles_from_list`` "accept a maximum of 1000 profiles per call" -> 204;
``get_profiles_for_list`` / ``get_profile_ids_for_list`` page size 20 (max 100), filter on
``joined_group_at``; ``additional-fields[list]=profile_count`` on ``get_list``.
"""

from __future__ import annotations

from typing import Any

from connectors.sandbox.klaviyo.app import KlaviyoApp, route
from connectors.sandbox.klaviyo.errors import document, invalid, not_found
from connectors.sandbox.klaviyo.ids import iso
from connectors.sandbox.klaviyo.query import decode_cursor, links, page_size, parse_filter, sort_key, sparse
from connectors.sandbox.klaviyo.resources import data_object, identifiers, keyset, profile_resource, self_link
from connectors.sandbox.klaviyo.state import KlaviyoState, KList
from connectors.sandbox.server import Request, Response

LIST_FILTERS = {
    "name": ({"equals", "any"}, "string"),
    "id": ({"equals", "any"}, "string"),
    "created": ({"greater-than"}, "datetime"),
    "updated": ({"greater-than"}, "datetime"),
}
MEMBER_FILTERS = {
    "email": ({"equals", "any"}, "string"),
    "joined_group_at": ({"greater-than", "greater-or-equal", "less-than", "less-or-equal"}, "datetime"),
}
MAX_MEMBERS_PER_CALL = 1000
OPT_IN = ("double_opt_in", "single_opt_in")


def list_resource(req: Request, lst: KList, count: bool = False) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "name": lst.name,
        "created": iso(lst.created),
        "updated": iso(lst.updated),
        "opt_in_process": lst.opt_in_process,
    }
    if count:
        attrs["profile_count"] = len(lst.members)
    return {
        "type": "list",
        "id": lst.id,
        "attributes": sparse(req, "list", attrs),
        "links": self_link(req, f"/api/lists/{lst.id}/"),
    }


def _cmp(op: str, actual: int, bound: int) -> bool:
    return {
        "greater-than": actual > bound,
        "greater-or-equal": actual >= bound,
        "less-than": actual < bound,
        "less-or-equal": actual <= bound,
    }[op]


def register(app: KlaviyoApp) -> None:
    state = app.state

    @route(app, "GET", "/api/lists", "get_lists")
    def get_lists(req: Request) -> Response:
        conds = parse_filter(req.arg("filter"), LIST_FILTERS)
        field, desc = sort_key(req, ("id", "name", "created", "updated"), "id")
        size = page_size(req, 10, 10)
        after = decode_cursor(req, app.settings.tolerate_cursor_equals)

        def keep(lid: str) -> bool:
            lst = state.lists[lid]
            for c in conds:
                if c.field in ("name", "id"):
                    actual = getattr(lst, c.field)
                    if actual not in (c.value if c.op == "any" else [c.value]):
                        return False
                elif not getattr(lst, c.field) > c.value:
                    return False
            return True

        with state.lock:
            order = sorted((getattr(lst, field), lst.id) for lst in state.lists.values())
            ids, nxt = keyset(order, after, desc, keep, size)
            data = [list_resource(req, state.lists[i]) for i in ids]
        return document(200, {"data": data, "links": links(req, nxt)})

    @route(app, "POST", "/api/lists", "create_list")
    def create_list(req: Request) -> Response:
        attrs = data_object(req, "list").get("attributes", {})
        name = attrs.get("name")
        if not isinstance(name, str) or not name.strip():
            raise invalid(
                "'name' is required and must be a non-empty string.", pointer="/data/attributes/name"
            )
        opt_in = attrs.get("opt_in_process") or "single_opt_in"
        if opt_in not in OPT_IN:
            raise invalid(
                f"'opt_in_process' must be one of {', '.join(OPT_IN)}.",
                pointer="/data/attributes/opt_in_process",
            )
        with state.lock:
            lst = state.create_list(name, opt_in)
            return document(201, {"data": list_resource(req, lst), "links": self_link(req, req.path)})

    @route(app, "GET", "/api/lists/{id}", "get_list")
    def get_list(req: Request) -> Response:
        count = "profile_count" in (req.arg("additional-fields[list]") or "").split(",")
        with state.lock:
            lst = _list(state, req.path_params["id"])
            return document(200, {"data": list_resource(req, lst, count), "links": self_link(req, req.path)})

    def members_page(req: Request) -> tuple[KList, list[str], Any]:
        conds = parse_filter(req.arg("filter"), MEMBER_FILTERS)
        _, desc = sort_key(req, ("joined_group_at",), "joined_group_at")
        size = page_size(req, 20, 100)
        after = decode_cursor(req, app.settings.tolerate_cursor_equals)
        lst = _list(state, req.path_params["id"])

        def keep(pid: str) -> bool:
            for c in conds:
                if c.field == "email":
                    email = (state.profiles[pid].attrs.get("email") or "").lower()
                    wanted = c.value if c.op == "any" else [c.value]
                    if email not in [w.lower() for w in wanted]:
                        return False
                elif not _cmp(c.op, lst.members[pid], c.value):
                    return False
            return True

        order = sorted((joined, pid) for pid, joined in lst.members.items() if pid in state.profiles)
        ids, nxt = keyset(order, after, desc, keep, size)
        return lst, ids, nxt

    @route(app, "GET", "/api/lists/{id}/profiles", "get_profiles_for_list")
    def get_members(req: Request) -> Response:
        with state.lock:
            lst, ids, nxt = members_page(req)
            data = [
                profile_resource(req, state.profiles[p], {"joined_group_at": iso(lst.members[p])})
                for p in ids
            ]
        return document(200, {"data": data, "links": links(req, nxt)})

    @route(app, "GET", "/api/lists/{id}/relationships/profiles", "get_profile_ids_for_list")
    def get_member_ids(req: Request) -> Response:
        with state.lock:
            _, ids, nxt = members_page(req)
        return document(200, {"data": [{"type": "profile", "id": p} for p in ids], "links": links(req, nxt)})

    @route(app, "POST", "/api/lists/{id}/relationships/profiles", "add_profiles_to_list")
    def add_members(req: Request) -> Response:
        ids = identifiers(req, "profile", MAX_MEMBERS_PER_CALL)
        with state.lock:
            lst = _list(state, req.path_params["id"])
            _known(state, ids)
            state.add_members(lst, ids)
        return document(204, None)

    @route(app, "DELETE", "/api/lists/{id}/relationships/profiles", "remove_profiles_from_list")
    def remove_members(req: Request) -> Response:
        ids = identifiers(req, "profile", MAX_MEMBERS_PER_CALL)
        with state.lock:
            lst = _list(state, req.path_params["id"])
            _known(state, ids)
            for pid in ids:
                lst.members.pop(pid, None)
        return document(204, None)


def _list(state: KlaviyoState, lid: str) -> KList:
    lst = state.lists.get(lid)
    if lst is None:
        raise not_found(f"A list with id {lid} does not exist.")
    return lst


def _known(state: KlaviyoState, ids: list[str]) -> None:
    for i, pid in enumerate(ids):
        if pid not in state.profiles:
            raise not_found(f"A profile with id {pid} does not exist.", f"/data/{i}/id")
