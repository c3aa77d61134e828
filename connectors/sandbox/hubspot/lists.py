"""Lists v3 (ILS) for contacts (``objectTypeId`` "0-1"): create MANUAL / SNAPSHOT / DYNAMIC, get by
id or name, delete, memberships add / remove / add-and-remove (refused on DYNAMIC lists; the
response carries the spec's misspelt ``recordsIdsAdded``), membership pages (``limit`` <= 250,
``after``) by record id or join order, and a record's list memberships."""

from __future__ import annotations

import bisect
from typing import Any

from connectors.sandbox.server import App, Request, Response

from . import errors
from .schema import iso_ms
from .settings import HubSpotSettings
from .state import ContactList, HubSpotState

BASE = "/crm/v3/lists"
PROCESSING_TYPES = ("MANUAL", "SNAPSHOT", "DYNAMIC")
CONTACT_TYPE = "0-1"
PAGE_MAX = 250


def _id_list(raw: Any, what: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(
        isinstance(x, str | int) and not isinstance(x, bool) for x in raw
    ):
        errors.fail(400, f"Invalid input JSON: {what} must be an array of record ids")
    return [str(x) for x in raw]


def register(app: App, state: HubSpotState, settings: HubSpotSettings) -> None:
    def get_list(raw_id: str) -> ContactList:
        try:
            lst = state.lists.get(int(raw_id))
        except ValueError:
            lst = None
        if lst is None:
            errors.not_found(f"List {raw_id} does not exist.", context={"listId": [raw_id]})
        return lst

    def writable(raw_id: str) -> ContactList:
        lst = get_list(raw_id)
        if lst.processing_type == "DYNAMIC":
            errors.fail(
                400,
                f"List {raw_id} has processingType DYNAMIC; its memberships can only change "
                "through its filters. Use a MANUAL or SNAPSHOT list.",
                sub_category="ILS.INVALID_LIST_PROCESSING_TYPE",
            )
        return lst

    @app.route("POST", BASE, "lists.create", rate_class="standard")
    def create(req: Request) -> Response:
        body = errors.json_object(req)
        name, ptype, otype = body.get("name"), body.get("processingType"), body.get("objectTypeId")
        if not isinstance(name, str) or not name.strip():
            errors.fail(400, "'name' is required")
        if ptype not in PROCESSING_TYPES:
            errors.fail(400, f"'processingType' must be one of {list(PROCESSING_TYPES)}")
        if otype != CONTACT_TYPE:
            errors.fail(400, f"'objectTypeId' {otype!r} is not supported; the sandbox serves contacts (0-1)")
        if ptype == "DYNAMIC" and not isinstance(body.get("filterBranch"), dict):
            errors.fail(400, "A DYNAMIC list needs a 'filterBranch'")
        with state.lock:
            if name.lower() in state.list_names:
                errors.fail(
                    400, f"A list named '{name}' already exists.", sub_category="ILS.DUPLICATE_LIST_NAMES"
                )
            lst = state.create_list(name, ptype, otype, body.get("filterBranch"))
            return Response.json(200, {"list": lst.to_json()})

    @app.route(
        "GET", BASE + "/object-type-id/{object_type}/name/{name}", "lists.get_by_name", rate_class="standard"
    )
    def get_by_name(req: Request) -> Response:
        name = req.path_params["name"]
        with state.lock:
            lid = state.list_names.get(name.lower())
            if lid is None or req.path_params["object_type"] != CONTACT_TYPE:
                errors.not_found(f"List with name {name} does not exist.", context={"listName": [name]})
            return Response.json(200, {"list": state.lists[lid].to_json()})

    @app.route(
        "GET",
        BASE + "/records/{object_type}/{record_id}/memberships",
        "lists.record_memberships",
        rate_class="standard",
    )
    def record_memberships(req: Request) -> Response:
        with state.lock:
            c = state.find(req.path_params["record_id"])
            if c is None:
                errors.not_found(f"Record {req.path_params['record_id']} does not exist.")
            results = [
                {
                    "listId": str(lst.list_id),
                    "listVersion": lst.version,
                    "firstAddedTimestamp": iso_ms(lst.members[c.id]),
                    "lastAddedTimestamp": iso_ms(lst.members[c.id]),
                }
                for lst in state.lists.values()
                if c.id in lst.members
            ]
        return Response.json(200, {"results": results, "total": len(results)})

    @app.route("GET", BASE + "/{list_id}", "lists.get", rate_class="standard")
    def get_by_id(req: Request) -> Response:
        with state.lock:
            return Response.json(200, {"list": get_list(req.path_params["list_id"]).to_json()})

    @app.route("DELETE", BASE + "/{list_id}", "lists.delete", rate_class="standard")
    def delete(req: Request) -> Response:
        with state.lock:
            state.delete_list(get_list(req.path_params["list_id"]))
        return Response(204)

    @app.route("PUT", BASE + "/{list_id}/memberships/add", "lists.memberships.add", rate_class="standard")
    def add(req: Request) -> Response:
        ids = _id_list(errors.json_body(req), "the body")
        with state.lock:
            return Response.json(200, state.change_members(writable(req.path_params["list_id"]), ids, []))

    @app.route(
        "PUT", BASE + "/{list_id}/memberships/remove", "lists.memberships.remove", rate_class="standard"
    )
    def remove(req: Request) -> Response:
        ids = _id_list(errors.json_body(req), "the body")
        with state.lock:
            return Response.json(200, state.change_members(writable(req.path_params["list_id"]), [], ids))

    @app.route(
        "PUT",
        BASE + "/{list_id}/memberships/add-and-remove",
        "lists.memberships.add_and_remove",
        rate_class="standard",
    )
    def add_and_remove(req: Request) -> Response:
        body = errors.json_object(req)
        add_ids = _id_list(body.get("recordIdsToAdd"), "'recordIdsToAdd'")
        remove_ids = _id_list(body.get("recordIdsToRemove"), "'recordIdsToRemove'")
        with state.lock:
            lst = writable(req.path_params["list_id"])
            return Response.json(200, state.change_members(lst, add_ids, remove_ids))

    @app.route("DELETE", BASE + "/{list_id}/memberships", "lists.memberships.clear", rate_class="standard")
    def clear(req: Request) -> Response:
        with state.lock:
            lst = writable(req.path_params["list_id"])
            lst.members.clear()
            lst.touched(state.clock())
        return Response(204)

    def page(req: Request, join_order: bool) -> Response:
        limit = errors.int_arg(req, "limit", 100, 1, PAGE_MAX)
        after = req.arg("after")
        with state.lock:
            lst = get_list(req.path_params["list_id"])
            if join_order:
                ordered = sorted(lst.members, key=lambda rid: (lst.members[rid], rid))
                start = _cursor(after)
            else:
                ordered = lst.sorted_members()
                start = bisect.bisect_right(ordered, _cursor(after)) if after else 0
            chunk = ordered[start : start + limit]
            results = [
                {"recordId": str(rid), "membershipTimestamp": iso_ms(lst.members[rid])} for rid in chunk
            ]
            more = start + limit < len(ordered)
            total = len(ordered)
        body: dict[str, Any] = {"results": results, "total": total}
        if more:
            token = str(start + limit) if join_order else str(chunk[-1])
            body["paging"] = {"next": {"after": _encode(token)}}
        return Response.json(200, body)

    @app.route("GET", BASE + "/{list_id}/memberships", "lists.memberships.page", rate_class="standard")
    def memberships(req: Request) -> Response:
        return page(req, join_order=False)

    @app.route(
        "GET",
        BASE + "/{list_id}/memberships/join-order",
        "lists.memberships.join_order",
        rate_class="standard",
    )
    def memberships_join_order(req: Request) -> Response:
        return page(req, join_order=True)


def _encode(token: str) -> str:
    return f"c{token}"


def _decode(raw: str) -> str:
    if not raw.startswith("c") or not raw[1:].isdigit():
        errors.fail(400, f"Invalid paging cursor 'after': {raw!r}")
    return raw[1:]


def _cursor(raw: str | None) -> int:
    return int(_decode(raw)) if raw else 0
