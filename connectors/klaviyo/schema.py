"""``ensure_schema`` for Klaviyo: lists by name; profile properties need nothing.

Klaviyo profile properties are free-form (a PATCH creates them), so a `FieldSpec` creates
nothing. A field named like one of Klaviyo's own profile fields is written to that field
(`bulk.PROFILE_FIELDS`); one that must be text but is declared otherwise is reported, and
``location``/``properties``/``created``/``updated`` cannot be written at all.

Lists: Klaviyo lets several lists share a name (QUIRKS.md), so a name may resolve to many
ids. The oldest (``created``, then id) is used and the others are reported as a problem;
a missing list is created (not in a dry run). ``create_list`` is not idempotent (a resent
create makes a second list), so it is never retried blindly: after a failed create the
name is looked up again, and a list that did appear is taken; otherwise the failure is
reported and the next run creates it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from connectors.base import SchemaReport, SchemaSpec
from connectors.errors import AmbiguousWrite, RetryableError
from connectors.klaviyo.bulk import PROFILE_FIELDS
from connectors.klaviyo.calls import KlaviyoCalls
from connectors.klaviyo.wire import document, parse_instant, resources, string_field

__all__ = ["ensure_schema", "find_lists"]

_RESERVED = ("location", "properties", "created", "updated", "id")
_NAMES_PER_QUERY = 20  # names per any(name, [...]) filter, to keep URLs short


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def find_lists(calls: KlaviyoCalls, names: Iterable[str]) -> dict[str, list[tuple[int, str]]]:
    """name -> [(created ms, list id), ...] oldest first, for the lists named in `names`."""
    wanted = sorted(set(names))
    found: dict[str, list[tuple[int, str]]] = {}
    for start in range(0, len(wanted), _NAMES_PER_QUERY):
        chunk = wanted[start : start + _NAMES_PER_QUERY]
        filt = f"any(name,[{','.join(_quoted(n) for n in chunk)}])"

        def fetch(cursor: str | None, filt: str = filt) -> dict[str, Any]:
            body = calls.lists.get_lists(filter=filt, page_cursor=cursor)
            resources(body, "get_lists")
            return body  # type: ignore[no-any-return]

        for doc in calls.pages("get_lists", fetch):
            for item in doc["data"]:
                name = string_field(item, "attributes.name", "get_lists")
                created = parse_instant(item["attributes"].get("created"), f"get_lists {item['id']}")
                if name in chunk:
                    found.setdefault(name, []).append((created, item["id"]))
    for entries in found.values():
        entries.sort()
    return found


def _create(calls: KlaviyoCalls, name: str) -> str:
    body = {"data": {"type": "list", "attributes": {"name": name}}}

    def create() -> str:
        doc = document(calls.lists.create_list(body), "create_list")
        return string_field(doc, "data.id", "create_list")

    return calls.call("create_list", create)


def ensure_schema(calls: KlaviyoCalls, spec: SchemaSpec, dry_run: bool) -> SchemaReport:
    problems = [f"field {f.name!r} names a Klaviyo profile member segsync cannot write"
                for f in spec.fields if f.name in _RESERVED]  # fmt: skip
    problems += [
        f"field {f.name!r} is Klaviyo's own text field {f.name}; it cannot hold type {f.type}"
        for f in spec.fields
        if f.name in PROFILE_FIELDS and f.type not in ("string", "enumeration")
    ]
    found = find_lists(calls, spec.lists)
    list_ids: dict[str, str] = {}
    created: list[str] = []
    for name in spec.lists:
        entries = found.get(name)
        if entries:
            list_ids[name] = entries[0][1]
            if len(entries) > 1:
                others = ", ".join(i for _, i in entries[1:])
                problems.append(
                    f"{len(entries)} Klaviyo lists are named {name!r}; using the oldest "
                    f"({entries[0][1]}), not {others}"
                )
            continue
        if dry_run:
            created.append(name)
            continue
        try:
            list_ids[name] = _create(calls, name)
            created.append(name)
        except (RetryableError, AmbiguousWrite) as e:
            again = find_lists(calls, [name]).get(name)
            if again:
                list_ids[name] = again[0][1]
                created.append(name)
            else:
                problems.append(f"list {name!r} could not be created ({e}); the next run tries again")
    return SchemaReport(created_lists=tuple(created), list_ids=list_ids, problems=tuple(problems))
