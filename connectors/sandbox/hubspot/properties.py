"""Properties API v3 for contacts: properties (create, get, list, PATCH e.g. to add options,
archive, batch read) and property groups (create, get, list, PATCH). Types and field types are
validated as pairs; options are required for enumerations; a duplicate name is a 409."""

from __future__ import annotations

from typing import Any

from connectors.sandbox.server import App, Request, Response

from . import errors
from .schema import ALLOWED_FIELD_TYPES, FIELD_TYPES, NAME_RE, TYPES, PropertyDef, iso_ms
from .settings import HubSpotSettings
from .state import HubSpotState

BASE = "/crm/v3/properties/{object_type}"
OBJECT_TYPES = ("contacts", "contact", "0-1")


def _object_type(req: Request) -> None:
    ot = req.path_params["object_type"]
    if ot not in OBJECT_TYPES:
        errors.fail(400, f"Unable to infer object type from: {ot}; the sandbox serves contacts only")


def _options(raw: Any, ptype: str, field_type: str) -> list[dict[str, Any]]:
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        errors.fail(400, "'options' must be an array")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, o in enumerate(raw):
        if (
            not isinstance(o, dict)
            or not isinstance(o.get("label"), str)
            or not isinstance(o.get("value"), str)
        ):
            errors.fail(400, f"options[{i}] needs a string 'label' and 'value'")
        if o["value"] in seen:
            errors.fail(400, f"Duplicate option value {o['value']!r}")
        seen.add(o["value"])
        out.append(
            {
                "label": o["label"],
                "value": o["value"],
                "hidden": bool(o.get("hidden", False)),
                "displayOrder": _int(o, "displayOrder", i),
                "description": str(o.get("description", "")),
            }
        )
    if ptype == "enumeration" and not out:
        errors.fail(
            400, "Options are required for enumeration properties", sub_category="PROPERTY_OPTIONS_REQUIRED"
        )
    if ptype == "enumeration" and field_type == "booleancheckbox" and seen != {"true", "false"}:
        errors.fail(400, "A booleancheckbox enumeration needs exactly the options 'true' and 'false'")
    return out


def _int(body: dict[str, Any], key: str, default: int = 0) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        errors.fail(400, f"'{key}' must be an integer")
    return value


def _check_types(ptype: Any, field_type: Any) -> None:
    if ptype not in TYPES:
        errors.fail(400, f"Invalid type {ptype!r}; expected one of {list(TYPES)}")
    if field_type not in FIELD_TYPES:
        errors.fail(400, f"Invalid fieldType {field_type!r}; expected one of {list(FIELD_TYPES)}")
    if field_type not in ALLOWED_FIELD_TYPES[ptype]:
        errors.fail(
            400,
            f"fieldType {field_type!r} is not valid for type {ptype!r}; use one of "
            f"{sorted(ALLOWED_FIELD_TYPES[ptype])}",
        )


def _string(body: dict[str, Any], key: str, required: bool = True) -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        errors.fail(400, f"'{key}' is required and must be a string")
    return value


def register(app: App, state: HubSpotState, settings: HubSpotSettings) -> None:
    def get_prop(name: str) -> PropertyDef:
        prop = state.properties.get(name)
        if prop is None or prop.archived:
            errors.not_found(
                f"Unable to find property {name} for object type contact", context={"propertyName": [name]}
            )
        return prop

    def check_group(name: str) -> None:
        if name not in state.groups:
            errors.fail(
                400, f"Property group {name!r} does not exist", sub_category="PROPERTY_GROUP_NOT_FOUND"
            )

    # ---- groups (registered first: "/groups" must win over "/{name}") ---------------------

    @app.route("GET", BASE + "/groups", "properties.groups.list", rate_class="standard")
    def list_groups(req: Request) -> Response:
        _object_type(req)
        with state.lock:
            return Response.json(200, {"results": [dict(g) for g in state.groups.values()]})

    @app.route("POST", BASE + "/groups", "properties.groups.create", rate_class="standard")
    def create_group(req: Request) -> Response:
        _object_type(req)
        body = errors.json_object(req)
        name, label = _string(body, "name"), _string(body, "label")
        if not NAME_RE.match(name):
            errors.fail(400, f"Invalid group name {name!r}: lower-case letters, digits and _")
        order = _int(body, "displayOrder", -1)
        with state.lock:
            if name in state.groups:
                errors.fail(409, f"Property group named '{name}' already exists.", errors.CONFLICT)
            group = {"name": name, "label": label, "displayOrder": order, "archived": False}
            state.groups[name] = group
            return Response.json(201, dict(group))

    @app.route("GET", BASE + "/groups/{group}", "properties.groups.get", rate_class="standard")
    def get_group(req: Request) -> Response:
        _object_type(req)
        with state.lock:
            group = state.groups.get(req.path_params["group"])
            if group is None:
                errors.not_found(f"Unable to find property group {req.path_params['group']}")
            return Response.json(200, dict(group))

    @app.route("PATCH", BASE + "/groups/{group}", "properties.groups.update", rate_class="standard")
    def update_group(req: Request) -> Response:
        _object_type(req)
        body = errors.json_object(req)
        with state.lock:
            group = state.groups.get(req.path_params["group"])
            if group is None:
                errors.not_found(f"Unable to find property group {req.path_params['group']}")
            if "label" in body:
                group["label"] = _string(body, "label")
            if "displayOrder" in body:
                group["displayOrder"] = _int(body, "displayOrder")
            return Response.json(200, dict(group))

    # ---- properties ------------------------------------------------------------------------

    @app.route("GET", BASE, "properties.list", rate_class="standard")
    def list_properties(req: Request) -> Response:
        _object_type(req)
        archived = errors.bool_arg(req, "archived")
        with state.lock:
            results = [p.to_json() for p in state.properties.values() if p.archived == archived]
        return Response.json(200, {"results": results})

    @app.route("POST", BASE, "properties.create", rate_class="standard")
    def create_property(req: Request) -> Response:
        _object_type(req)
        body = errors.json_object(req)
        name, label = _string(body, "name"), _string(body, "label")
        group = _string(body, "groupName")
        ptype, field_type = body.get("type"), body.get("fieldType")
        _check_types(ptype, field_type)
        if not NAME_RE.match(name) or name.startswith("hs_"):
            errors.fail(400, f"Invalid property name {name!r}: lower-case letters, digits and _, not hs_")
        options = _options(body.get("options"), str(ptype), str(field_type))
        with state.lock:
            check_group(group)
            if name in state.properties:
                errors.fail(
                    409,
                    f"Property named '{name}' already exists.",
                    errors.CONFLICT,
                    context={"propertyName": [name]},
                )
            now = state.clock()
            prop = PropertyDef(
                name,
                label,
                str(ptype),
                str(field_type),
                group,
                description=_string(body, "description", required=False),
                options=options,
                display_order=_int(body, "displayOrder", -1),
                has_unique_value=bool(body.get("hasUniqueValue")),
                hidden=bool(body.get("hidden")),
                form_field=bool(body.get("formField")),
                created_at=now,
                updated_at=now,
            )
            state.properties[name] = prop
            return Response.json(201, prop.to_json())

    @app.route("GET", BASE + "/{name}", "properties.get", rate_class="standard")
    def get_property(req: Request) -> Response:
        _object_type(req)
        with state.lock:
            return Response.json(200, get_prop(req.path_params["name"]).to_json())

    @app.route("PATCH", BASE + "/{name}", "properties.update", rate_class="standard")
    def update_property(req: Request) -> Response:
        _object_type(req)
        body = errors.json_object(req)
        with state.lock:
            prop = get_prop(req.path_params["name"])
            if prop.hubspot_defined and set(body) - {"options", "label", "description", "displayOrder"}:
                errors.fail(400, f"Property {prop.name} is HubSpot-defined; its definition is read-only")
            ptype = body.get("type", prop.type)
            field_type = body.get("fieldType", prop.field_type)
            _check_types(ptype, field_type)
            options = prop.options
            if "options" in body or ptype != prop.type:
                options = _options(body.get("options", prop.options), ptype, field_type)
            if "groupName" in body:
                check_group(_string(body, "groupName"))
                prop.group_name = body["groupName"]
            prop.type, prop.field_type, prop.options = ptype, field_type, options
            if "label" in body:
                prop.label = _string(body, "label")
            if "description" in body:
                prop.description = _string(body, "description", required=False)
            if "displayOrder" in body:
                prop.display_order = _int(body, "displayOrder")
            if "hidden" in body:
                prop.hidden = bool(body["hidden"])
            if "formField" in body:
                prop.form_field = bool(body["formField"])
            prop.updated_at = state.clock()
            return Response.json(200, prop.to_json())

    @app.route("DELETE", BASE + "/{name}", "properties.archive", rate_class="standard")
    def archive_property(req: Request) -> Response:
        _object_type(req)
        with state.lock:
            prop = get_prop(req.path_params["name"])
            if prop.hubspot_defined:
                errors.fail(400, f"Property {prop.name} is HubSpot-defined and cannot be archived")
            prop.archived = True
        return Response(204)

    @app.route("POST", BASE + "/batch/read", "properties.batch.read", rate_class="standard")
    def batch_read(req: Request) -> Response:
        _object_type(req)
        inputs = errors.inputs_of(errors.json_object(req), settings.batch_limit)
        with state.lock:
            now = state.clock()
            names = [i.get("name") if isinstance(i, dict) else None for i in inputs]
            found = [
                state.properties[n].to_json() for n in names if isinstance(n, str) and n in state.properties
            ]
        return Response.json(
            200,
            {"status": "COMPLETE", "results": found, "startedAt": iso_ms(now), "completedAt": iso_ms(now)},
        )
