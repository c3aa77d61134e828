"""Making HubSpot hold what segsync writes: a property group, typed contact properties, their
enumeration options, and MANUAL lists.

Field types map to HubSpot (type, fieldType):

=============  ==================================  ============================================
segsync        created as                          an existing property is accepted when
=============  ==================================  ============================================
string         string / text                       type string
number         number / number                     type number
bool           bool / booleancheckbox              type bool, or enumeration/booleancheckbox
date           date / date                         type date
datetime       datetime / date                     type datetime
enumeration    enumeration / select (+ options)    enumeration with select or radio
multi          enumeration / checkbox (+ options)  enumeration with checkbox
list           string / textarea (``a;b``)         type string
=============  ==================================  ============================================

An existing property of another shape is reported in ``SchemaReport.problems`` and left alone
(never coerced). Options a field needs that an enumeration lacks are added with one PATCH per
property. Lists are looked up by name first and created MANUAL when missing; an existing
DYNAMIC list is a problem (its memberships cannot be written). ``dry_run`` reads everything
and reports what it would create or add, without writing.

Creating a group, property or list is not idempotent: a lost response (`AmbiguousWrite`) or
a 409 is resolved by reading the object back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from connectors.base import FieldSpec, SchemaReport, SchemaSpec
from connectors.classify import CallKind
from connectors.errors import AmbiguousWrite, PermanentError
from connectors.hubspot.calls import HubSpotCalls

__all__ = ["CONTACT_TYPE", "SchemaManager", "hubspot_shape"]

CONTACT_TYPE = "0-1"
OBJECT = "contacts"
T = TypeVar("T")

_SHAPES: dict[str, tuple[str, str]] = {
    "string": ("string", "text"),
    "number": ("number", "number"),
    "bool": ("bool", "booleancheckbox"),
    "date": ("date", "date"),
    "datetime": ("datetime", "date"),
    "enumeration": ("enumeration", "select"),
    "multi": ("enumeration", "checkbox"),
    "list": ("string", "textarea"),
}


def hubspot_shape(spec: FieldSpec) -> tuple[str, str]:
    """(type, fieldType) a new property for `spec` is created with."""
    return _SHAPES[spec.type]


def _accepts(spec: FieldSpec, ptype: str, field_type: str) -> bool:
    if spec.type == "bool":
        return ptype == "bool" or (ptype == "enumeration" and field_type == "booleancheckbox")
    if spec.type == "enumeration":
        return ptype == "enumeration" and field_type in ("select", "radio")
    if spec.type == "multi":
        return ptype == "enumeration" and field_type == "checkbox"
    return ptype == _SHAPES[spec.type][0]


class SchemaManager:
    def __init__(self, calls: HubSpotCalls) -> None:
        self.calls = calls
        self.list_ids: dict[str, str] = {}  # list name -> ILS list id, filled as lists are seen

    def _read(self, fn: Callable[[], T], what: str, expected: tuple[int, ...] = ()) -> T:
        return self.calls.sdk(fn, kind=CallKind.READ, what=what, expected=expected)

    def _create(self, fn: Callable[[], T], read_back: Callable[[], T | None], what: str) -> T:
        """A non-idempotent create; an ambiguous outcome or a 409 is settled by reading back."""
        try:
            return self.calls.sdk(fn, kind=CallKind.WRITE, what=what)
        except AmbiguousWrite:
            found = read_back()
            if found is None:  # not applied after all: one more attempt is safe now
                return self.calls.sdk(fn, kind=CallKind.WRITE, what=what)
            return found
        except PermanentError as exc:
            found = read_back() if exc.status in (400, 409) else None  # e.g. "already exists"
            if found is None:
                raise
            return found

    # ---- the group and the properties ------------------------------------------------------

    def _ensure_group(self, name: str, dry_run: bool) -> None:
        from hubspot.crm.properties import PropertyGroupCreate

        api = self.calls.client.crm.properties.groups_api
        groups = self._read(lambda: api.get_all(OBJECT), "property groups")
        if any(g.name == name for g in groups.results or []) or dry_run:
            return

        def read_back() -> Any:
            found = self._read(lambda: api.get_all(OBJECT), "property groups")
            return next((g for g in found.results or [] if g.name == name), None)

        group = PropertyGroupCreate(name=name, label=name, display_order=-1)
        self._create(lambda: api.create(OBJECT, group), read_back, "create property group")

    def _properties(self) -> dict[str, Any]:
        api = self.calls.client.crm.properties.core_api
        found = self._read(lambda: api.get_all(OBJECT), "contact properties")
        return {p.name: p for p in found.results or []}

    def _options(self, values: tuple[str, ...], start: int = 0) -> list[Any]:
        from hubspot.crm.properties import OptionInput

        return [
            OptionInput(label=v, value=v, display_order=start + i, hidden=False) for i, v in enumerate(values)
        ]

    def _create_property(self, spec: FieldSpec, group: str) -> None:
        from hubspot.crm.properties import PropertyCreate

        ptype, field_type = hubspot_shape(spec)
        options: list[Any] | None = None
        if spec.type in ("enumeration", "multi"):
            options = self._options(spec.options)
        elif spec.type == "bool":
            options = self._options(("true", "false"))
            options[0].label, options[1].label = "Yes", "No"
        body = PropertyCreate(
            name=spec.name, label=spec.label or spec.name, type=ptype, field_type=field_type,
            group_name=group, options=options,
        )  # fmt: skip
        api = self.calls.client.crm.properties.core_api
        self._create(lambda: api.create(OBJECT, body), lambda: self._properties().get(spec.name),
                     f"create property {spec.name}")  # fmt: skip

    def _add_options(self, existing: Any, missing: tuple[str, ...]) -> None:
        from hubspot.crm.properties import OptionInput, PropertyUpdate

        kept = [OptionInput(label=o.label, value=o.value, display_order=o.display_order, hidden=o.hidden,
                            description=o.description) for o in existing.options or []]  # fmt: skip
        added = self._options(missing, start=len(kept))
        api = self.calls.client.crm.properties.core_api
        update = PropertyUpdate(options=kept + added)
        self.calls.sdk(lambda: api.update(OBJECT, existing.name, update), kind=CallKind.IDEMPOTENT_WRITE,
                       what=f"add options to {existing.name}")  # fmt: skip

    # ---- lists -----------------------------------------------------------------------------

    def find_list(self, name: str) -> Any | None:
        """The list named `name` (case-insensitive, as HubSpot names are unique), or None."""
        api = self.calls.client.crm.lists.lists_api
        try:
            found = self._read(lambda: api.get_by_name(name, CONTACT_TYPE), "get list by name", (404,))
        except PermanentError as exc:
            if exc.status == 404:
                return None
            raise
        lst = getattr(found, "list", None)
        if lst is not None:
            self.list_ids[name] = str(lst.list_id)
        return lst

    def _create_list(self, name: str) -> Any:
        from hubspot.crm.lists import ListCreateRequest

        api = self.calls.client.crm.lists.lists_api
        body = ListCreateRequest(name=name, object_type_id=CONTACT_TYPE, processing_type="MANUAL")
        created = self._create(lambda: api.create(body).list, lambda: self.find_list(name), "create list")
        self.list_ids[name] = str(created.list_id)
        return created

    # ---- the whole schema ------------------------------------------------------------------

    def ensure(self, spec: SchemaSpec, *, dry_run: bool = False) -> SchemaReport:
        problems: list[str] = []
        created: list[str] = []
        added: dict[str, tuple[str, ...]] = {}
        if spec.fields:
            self._ensure_group(spec.group, dry_run)
            existing = self._properties()
            for field in spec.fields:
                prop = existing.get(field.name)
                if prop is None:
                    created.append(field.name)
                    if not dry_run:
                        self._create_property(field, spec.group)
                    continue
                if getattr(prop, "archived", False) or not _accepts(field, prop.type, prop.field_type):
                    want = "/".join(hubspot_shape(field))
                    problems.append(
                        f"HubSpot property {field.name!r} exists with type {prop.type}/{prop.field_type}, "
                        f"but segsync writes it as {field.type} ({want}); change it in HubSpot or map "
                        "the field to another property (segsync never converts it)"
                    )
                    continue
                if field.type in ("enumeration", "multi"):
                    have = {str(o.value) for o in prop.options or []}
                    missing = tuple(v for v in field.options if v not in have)
                    if missing:
                        added[field.name] = missing
                        if not dry_run:
                            self._add_options(prop, missing)
        created_lists: list[str] = []
        for name in spec.lists:
            lst = self.find_list(name)
            if lst is None:
                created_lists.append(name)
                if not dry_run:
                    self._create_list(name)
            elif lst.processing_type not in ("MANUAL", "SNAPSHOT"):
                problems.append(
                    f"HubSpot list {name!r} is {lst.processing_type}; segsync can only write the members of "
                    "MANUAL or SNAPSHOT lists (rename it or choose another list name)"
                )
                self.list_ids.pop(name, None)
        ids = {n: self.list_ids[n] for n in spec.lists if n in self.list_ids}
        return SchemaReport(tuple(created), added, tuple(created_lists), ids, tuple(problems))
