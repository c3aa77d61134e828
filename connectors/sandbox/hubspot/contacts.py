"""Contacts (CRM v3): list with ``after`` paging, get / create / update / archive one, GDPR delete,
merge, plus the property-value validation shared with the batch and search endpoints."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import Any

from connectors.sandbox.server import App, Request, Response

from . import errors
from .schema import Invalid, normalize
from .settings import HubSpotSettings
from .state import Contact, HubSpotState

BASE = "/crm/v3/objects/contacts"
# returned when the caller names no properties (HubSpot's documented default set)
DEFAULT_PROPERTIES = ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname")
ALWAYS = ("createdate", "hs_object_id", "lastmodifieddate")
LIST_MAX = 100


def requested_properties(state: HubSpotState, names: Any) -> list[str]:
    """Known requested properties plus the ones HubSpot always returns; default set when empty."""
    if isinstance(names, str):
        names = [n for n in names.split(",") if n]
    if not names:
        return list(DEFAULT_PROPERTIES)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        errors.fail(400, "Invalid input JSON: 'properties' must be an array of strings")
    known = state.properties
    out = [n for n in dict.fromkeys(names) if n in known]
    out.extend(n for n in ALWAYS if n not in out)
    return out


def query_properties(state: HubSpotState, req: Request) -> list[str]:
    values = req.query.get("properties", [])
    return requested_properties(state, [n for v in values for n in v.split(",") if n])


def check_changes(
    state: HubSpotState, raw: Any, contact: Contact | None
) -> tuple[dict[str, str | None], list[dict[str, Any]], str | None]:
    """Validate a ``properties`` object: (changes, error details, conflicting contact id)."""
    if not isinstance(raw, Mapping):
        errors.fail(400, "Invalid input JSON: 'properties' must be an object")
    changes: dict[str, str | None] = {}
    details: list[dict[str, Any]] = []
    conflict: str | None = None
    for name, value in raw.items():
        prop = state.properties.get(name)
        if prop is None or prop.archived:
            details.append(errors.detail(f'Property "{name}" does not exist', "PROPERTY_DOESNT_EXIST", name))
            continue
        if prop.read_only:
            details.append(
                errors.detail(
                    f'"{name}" is a read only property; its value cannot be set.', "READ_ONLY_VALUE", name
                )
            )
            continue
        try:
            stored = normalize(prop, value)
        except Invalid as e:
            details.append(errors.detail(e.message, e.code, name))
            continue
        if name == "email" and stored is not None:
            owner = state.by_email.get(stored)
            if owner is not None and (contact is None or owner != contact.id):
                conflict = str(owner)
        changes[name] = stored
    return changes, details, conflict


def validation_message(details: list[dict[str, Any]]) -> str:
    return "Property values were not valid: " + "; ".join(d["message"] for d in details)


def conflict_message(existing: str) -> str:
    return f"Contact already exists. Existing ID: {existing}"


def written_json(c: Contact, changes: Mapping[str, Any]) -> dict[str, Any]:
    """What a write returns: the written properties plus the always-returned ones."""
    names = list(changes)
    names.extend(n for n in ALWAYS if n not in changes)
    return c.to_json(names)


def register(app: App, state: HubSpotState, settings: HubSpotSettings) -> None:
    @app.route("GET", BASE, "contacts.list", rate_class="standard")
    def list_contacts(req: Request) -> Response:
        limit = errors.int_arg(req, "limit", 10, 1, LIST_MAX)
        archived = errors.bool_arg(req, "archived")
        names = query_properties(state, req)
        start = 0
        after = req.arg("after")
        if after:
            try:
                start = int(after)
            except ValueError:
                errors.fail(400, f"Invalid value for query parameter 'after': {after!r}")
        with state.lock:
            ids = list(state.contacts)  # insertion order == ascending ids
            i = bisect.bisect_left(ids, start)
            page: list[dict[str, Any]] = []
            next_id: int | None = None
            contacts = state.contacts
            while i < len(ids):
                c = contacts[ids[i]]
                i += 1
                if c.archived != archived:
                    continue
                if len(page) == limit:
                    next_id = c.id
                    break
                page.append(c.to_json(names))
        body: dict[str, Any] = {"results": page}
        if next_id is not None:
            body["paging"] = {"next": {"after": str(next_id), "link": f"{BASE}?after={next_id}"}}
        return Response.json(200, body)

    @app.route("GET", BASE + "/{contact_id}", "contacts.get", rate_class="standard")
    def get_contact(req: Request) -> Response:
        names = query_properties(state, req)
        with state.lock:
            c = _find_or_404(state, req, errors.bool_arg(req, "archived"))
            return Response.json(200, c.to_json(names))

    @app.route("PATCH", BASE + "/{contact_id}", "contacts.update", rate_class="standard")
    def update_contact(req: Request) -> Response:
        body = errors.json_object(req)
        with state.lock:
            c = _find_or_404(state, req, False)
            changes, details, conflict = check_changes(state, body.get("properties"), c)
            if details:
                errors.fail(400, validation_message(details), errors=details)
            if conflict:
                errors.fail(409, conflict_message(conflict), errors.CONFLICT)
            state.apply(c, changes)
            return Response.json(200, c.to_json(None))

    @app.route("POST", BASE, "contacts.create", rate_class="standard")
    def create_contact(req: Request) -> Response:
        body = errors.json_object(req)
        with state.lock:
            changes, details, conflict = check_changes(state, body.get("properties"), None)
            if details:
                errors.fail(400, validation_message(details), errors=details)
            if conflict:
                errors.fail(409, conflict_message(conflict), errors.CONFLICT)
            c = state.create({k: v for k, v in changes.items() if v is not None})
            return Response.json(201, c.to_json(None))

    @app.route("DELETE", BASE + "/{contact_id}", "contacts.archive", rate_class="standard")
    def archive_contact(req: Request) -> Response:
        with state.lock:
            c = state.find(req.path_params["contact_id"])
            if c is not None:
                state.archive(c)
        return Response(204)

    @app.route("POST", BASE + "/gdpr-delete", "contacts.gdpr_delete", rate_class="standard")
    def gdpr_delete(req: Request) -> Response:
        body = errors.json_object(req)
        object_id = body.get("objectId")
        if not isinstance(object_id, str | int) or isinstance(object_id, bool):
            errors.fail(400, "Invalid input JSON: 'objectId' is required")
        with state.lock:
            c = state.find(str(object_id), body.get("idProperty")) or state.find(
                str(object_id), body.get("idProperty"), archived=True
            )
            if c is None:
                errors.not_found(f"Object not found. objectId: {object_id}", context={"id": [str(object_id)]})
            state.gdpr_delete(c)
        return Response(204)

    @app.route("POST", BASE + "/merge", "contacts.merge", rate_class="standard")
    def merge(req: Request) -> Response:
        body = errors.json_object(req)
        primary_id, other_id = body.get("primaryObjectId"), body.get("objectIdToMerge")
        if not isinstance(primary_id, str) or not isinstance(other_id, str):
            errors.fail(
                400, "Invalid input JSON: 'primaryObjectId' and 'objectIdToMerge' are required strings"
            )
        if primary_id == other_id:
            errors.fail(400, "Cannot merge a contact with itself")
        with state.lock:
            primary, other = state.find(primary_id), state.find(other_id)
            if primary is None or other is None:
                missing = primary_id if primary is None else other_id
                errors.not_found(f"Object not found. objectId: {missing}", context={"id": [missing]})
            return Response.json(200, state.merge(primary, other).to_json(None))


def _find_or_404(state: HubSpotState, req: Request, archived: bool) -> Contact:
    key = req.path_params["contact_id"]
    id_property = req.arg("idProperty")
    if id_property not in (None, "", "hs_object_id", "email"):
        errors.fail(400, f"Property '{id_property}' is not a unique identifier property")
    c = state.find(key, id_property, archived)
    if c is None:
        errors.not_found("resource not found", context={"id": [key]})
    return c
