"""``POST /crm/v3/objects/contacts/search``: filter groups (ORed; filters inside a group ANDed),
one sort, ``limit`` <= 200, ``after`` offset paging, ``total``, free-text ``query``, and the
10,000-result ceiling (an ``after`` at or past it is a 400, as HubSpot answers).

Typed comparison follows the property type (number, datetime/date as epoch ms, bool, case-folded
string). Multi-checkbox values match per option. Operators that test absence (NEQ, NOT_IN,
NOT_CONTAINS_TOKEN, NOT_HAS_PROPERTY) match records without a value.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import Any

from connectors.sandbox.server import App, Request, Response

from . import errors
from .contacts import BASE, requested_properties
from .schema import PropertyDef, typed
from .settings import HubSpotSettings
from .state import Contact, HubSpotState

MAX_LIMIT = 200
MAX_RESULTS = 10_000
MAX_GROUPS = 5
MAX_FILTERS_PER_GROUP = 10
MAX_FILTERS = 25
MAX_QUERY = 3000
OPERATORS = frozenset(
    {
        "EQ",
        "NEQ",
        "GT",
        "GTE",
        "LT",
        "LTE",
        "BETWEEN",
        "IN",
        "NOT_IN",
        "HAS_PROPERTY",
        "NOT_HAS_PROPERTY",
        "CONTAINS_TOKEN",
        "NOT_CONTAINS_TOKEN",
    }
)
NEGATIVE = frozenset({"NEQ", "NOT_IN", "NOT_CONTAINS_TOKEN", "NOT_HAS_PROPERTY"})
QUERY_PROPERTIES = ("firstname", "lastname", "email", "phone", "company")
TOKEN_SPLIT = re.compile(r"[^\w]+")

Predicate = Callable[[Contact], bool]


def _raw(c: Contact, name: str) -> Any:
    """The comparable stored value (the instant columns come straight from the record)."""
    if name == "lastmodifieddate":
        return c.updated_ms
    if name == "createdate":
        return c.created_ms
    if name == "hs_object_id":
        return float(c.id)
    return c.props.get(name)


def _scalar(prop: PropertyDef, value: Any, op: str) -> Any:
    if isinstance(value, bool):
        value = "true" if value else "false"
    if not isinstance(value, str | int | float):
        errors.fail(400, f"Filter on '{prop.name}' with operator {op} needs a value")
    out = typed(prop, str(value))
    if out is None:
        errors.fail(400, f"{value!r} is not a valid value for property '{prop.name}' ({prop.type})")
    return out


def _compile_filter(state: HubSpotState, f: Any) -> Predicate:
    if not isinstance(f, dict):
        errors.fail(400, "Invalid input JSON: each filter must be an object")
    name, op = f.get("propertyName"), f.get("operator")
    if op not in OPERATORS:
        errors.fail(400, f"Unknown filter operator {op!r}; expected one of {sorted(OPERATORS)}")
    prop = state.properties.get(name) if isinstance(name, str) else None
    if prop is None or not isinstance(name, str):
        errors.fail(
            400,
            f"There was a problem with the request: property '{name}' does not exist",
            sub_category="PROPERTY_DOESNT_EXIST",
        )
    pname = prop.name
    multi = prop.type == "enumeration" and prop.field_type == "checkbox"
    instant = pname in ("lastmodifieddate", "createdate", "hs_object_id")

    def values_of(c: Contact) -> list[Any] | None:
        raw = _raw(c, pname)
        if raw is None or raw == "":
            return None
        if instant:
            return [raw]
        if multi:
            return [t.lower() for t in raw.split(";") if t]
        value = typed(prop, raw)
        return None if value is None else [value]

    if op == "HAS_PROPERTY":
        return lambda c: values_of(c) is not None
    if op == "NOT_HAS_PROPERTY":
        return lambda c: values_of(c) is None
    if op in ("IN", "NOT_IN"):
        raw_values = f.get("values")
        if not isinstance(raw_values, list) or not raw_values:
            errors.fail(400, f"Filter on '{name}' with operator {op} needs a non-empty 'values' array")
        wanted = {_scalar(prop, v, op) for v in raw_values}
        if op == "IN":
            return lambda c: any(v in wanted for v in values_of(c) or ())
        return lambda c: not any(v in wanted for v in values_of(c) or ())
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        token = str(f.get("value", "")).lower()
        if not token:
            errors.fail(400, f"Filter on '{name}' with operator {op} needs a value")

        def contains(c: Contact) -> bool:
            raw = _raw(c, pname)
            if not isinstance(raw, str):
                return False
            text = raw.lower()
            parts = [text, *TOKEN_SPLIT.split(text)]
            if "*" in token:
                return any(fnmatch.fnmatchcase(p, token) for p in parts)
            return token in parts

        return contains if op == "CONTAINS_TOKEN" else (lambda c: not contains(c))
    value = _scalar(prop, f.get("value"), op)
    if op == "BETWEEN":
        high = _scalar(prop, f.get("highValue"), op)
        return lambda c: any(value <= v <= high for v in values_of(c) or ())
    compare: dict[str, Callable[[Any], bool]] = {
        "EQ": lambda v: v == value,
        "NEQ": lambda v: v == value,
        "GT": lambda v: v > value,
        "GTE": lambda v: v >= value,
        "LT": lambda v: v < value,
        "LTE": lambda v: v <= value,
    }
    test = compare[op]

    def check(c: Contact) -> bool:
        try:
            return any(test(v) for v in values_of(c) or ())
        except TypeError:  # e.g. a number filter value against a string stored value
            return False

    if op == "NEQ":
        return lambda c: not check(c)
    return check


def compile_request(state: HubSpotState, body: dict[str, Any]) -> Predicate:
    groups = body.get("filterGroups") or []
    if not isinstance(groups, list):
        errors.fail(400, "Invalid input JSON: 'filterGroups' must be an array")
    if len(groups) > MAX_GROUPS:
        errors.fail(400, f"Too many filter groups: {len(groups)} (the maximum is {MAX_GROUPS})")
    total = 0
    compiled: list[list[Predicate]] = []
    for g in groups:
        filters = g.get("filters") if isinstance(g, dict) else None
        if not isinstance(filters, list):
            errors.fail(400, "Invalid input JSON: each filter group needs a 'filters' array")
        if len(filters) > MAX_FILTERS_PER_GROUP:
            errors.fail(400, f"Too many filters in a group: {len(filters)} (maximum {MAX_FILTERS_PER_GROUP})")
        total += len(filters)
        compiled.append([_compile_filter(state, f) for f in filters])
    if total > MAX_FILTERS:
        errors.fail(400, f"Too many filters: {total} (the maximum is {MAX_FILTERS})")
    query = body.get("query")
    text: Predicate | None = None
    if query:
        if not isinstance(query, str) or len(query) > MAX_QUERY:
            errors.fail(400, f"'query' must be a string of at most {MAX_QUERY} characters")
        needle = query.lower()
        text = lambda c: any(needle in (c.props.get(p) or "").lower() for p in QUERY_PROPERTIES)  # noqa: E731
    if not compiled:
        return text or (lambda c: True)

    def matches(c: Contact) -> bool:
        if text is not None and not text(c):
            return False
        return any(all(p(c) for p in group) for group in compiled)

    return matches


def _sort_key(state: HubSpotState, body: dict[str, Any]) -> tuple[Callable[[Contact], Any], bool]:
    sorts = body.get("sorts") or []
    if not isinstance(sorts, list):
        errors.fail(400, "Invalid input JSON: 'sorts' must be an array")
    if len(sorts) > 1:
        errors.fail(400, "Only one sort is supported")
    if not sorts:
        return (lambda c: c.id), False
    s = sorts[0]
    if isinstance(s, str):  # HubSpot also takes "propertyName" / "-propertyName"
        s = {"propertyName": s.lstrip("-"), "direction": "DESCENDING" if s.startswith("-") else "ASCENDING"}
    if not isinstance(s, dict):
        errors.fail(400, "Invalid input JSON: a sort must be an object")
    name, direction = s.get("propertyName"), s.get("direction", "ASCENDING")
    prop = state.properties.get(name) if isinstance(name, str) else None
    if prop is None or direction not in ("ASCENDING", "DESCENDING"):
        errors.fail(400, f"Invalid sort {s!r}: unknown property or direction")
    descending = direction == "DESCENDING"

    def key(c: Contact) -> Any:
        raw = _raw(c, prop.name)
        value = raw if isinstance(raw, int | float) or raw is None else typed(prop, raw)
        missing = value is None
        # records without a value sort last either way; ties by id ascending
        return (missing != descending, value if not missing else 0, c.id if not descending else -c.id)

    return key, descending


def register(app: App, state: HubSpotState, settings: HubSpotSettings) -> None:
    @app.route("POST", BASE + "/search", "contacts.search", rate_class="search")
    def search(req: Request) -> Response:
        body = errors.json_object(req)
        limit = body.get("limit", 10)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_LIMIT:
            errors.fail(400, f"'limit' must be an integer between 0 and {MAX_LIMIT}")
        after_raw = body.get("after") or 0
        try:
            after = int(after_raw)
        except (TypeError, ValueError):
            errors.fail(400, f"'after' must be a numeric offset, got {after_raw!r}")
        if after >= MAX_RESULTS:
            errors.fail(
                400,
                f"Search results are limited to {MAX_RESULTS} per query; 'after' must be "
                f"below {MAX_RESULTS}. Narrow the filters to page further.",
            )
        names = requested_properties(state, body.get("properties"))
        predicate = compile_request(state, body)
        key, descending = _sort_key(state, body)
        with state.lock:
            found = [c for c in state.contacts.values() if not c.archived and predicate(c)]
            found.sort(key=key, reverse=descending)
            end = min(after + limit, MAX_RESULTS)
            page = [c.to_json(names) for c in found[after:end]]
        out: dict[str, Any] = {"total": len(found), "results": page}
        if end < len(found):
            out["paging"] = {"next": {"after": str(end), "link": f"?after={end}"}}
        return Response.json(200, out)
