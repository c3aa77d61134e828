"""A checked destination mapping -> the managed targets of one destination.

A *target* is one thing segsync owns on every destination record: ``field:<name>`` (a
property) or ``list:<name>`` (a list membership). Each carries what it follows (a segment, a
group, a computed field, an experiment), its destination type and options (for the schema),
and a static *reason* ``"<kind>:<name>@<hash>"`` whose hash changes whenever the rule behind
it changes (segments: the segment's ``rule_hash``). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from mapping.definitions import schema_of
from mapping.destinations import DestinationMapping, EventMapping, ExperimentMapping, Scalar
from mapping.project import Project
from mapping.rules.ast import Type
from mapping.rules.checker import type_of
from mapping.rules.printer import format_rule

TargetKind = Literal["tags", "boolean", "group", "entered_at", "value", "list", "experiment"]
TargetType = Literal["string", "number", "bool", "date", "datetime", "enumeration", "multi", "list"]
_TYPES: dict[Type, TargetType] = {
    Type.STRING: "string", Type.NUMBER: "number", Type.BOOL: "bool",
    Type.DATETIME: "datetime", Type.LIST: "list",
}


@dataclass(frozen=True)
class TargetDef:
    key: str  # "field:<name>" or "list:<name>"
    kind: TargetKind
    source: str  # the segment, group, [fields] entry or experiment it follows
    type: TargetType  # the destination field's type ("list" for a list membership)
    reason: str  # "segment:vip@<rule hash>", "group:tier@<hash>", "field:score@<hash>", ...
    options: tuple[str, ...] = ()  # enumeration / multi options
    segments: tuple[str, ...] = ()  # segments it is about (tags: its scope, group: members)
    label: str = ""
    output: str = ""  # group / value targets: the evaluation output field they read
    default: Scalar | None = None  # value mappings: written when the value is empty
    experiment: ExperimentMapping | None = None

    @property
    def name(self) -> str:
        return self.key.split(":", 1)[1]

    @property
    def is_list(self) -> bool:
        return self.key.startswith("list:")


def _hash(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def segment_reason(project: Project, segment: str) -> str:
    return f"segment:{segment}@{project.segments[segment].rule_hash}"


def _group_output(project: Project, name: str) -> str | None:
    """The group whose output field is ``name``, if any."""
    for gname, group in project.groups.items():
        if (group.field or gname) == name:
            return gname
    return None


def _value_target(project: Project, field: str, source: str, default: Scalar | None,
                  declared: TargetType | None) -> TargetDef:
    group = _group_output(project, source) if source not in project.fields else None
    if group is not None:
        segs = project.groups[group].segments
        reason = f"group:{group}@{_hash(*(project.segments[s].rule_hash for s in segs))}"
        return TargetDef(f"field:{field}", "value", source, declared or "enumeration", reason,
                         options=segs, segments=segs, label=field, output=source, default=default)
    expr = project.fields[source]
    inferred = _TYPES[type_of(expr, schema_of(project))]
    return TargetDef(f"field:{field}", "value", source, declared or inferred,
                     f"field:{source}@{_hash(format_rule(expr))}", label=field, output=source,
                     default=default)


def targets(project: Project, mapping: DestinationMapping) -> tuple[TargetDef, ...]:
    """Every target ``mapping`` manages, in a stable order (fields, then lists)."""
    out: list[TargetDef] = []
    if mapping.tags is not None:
        scope = tuple(mapping.tags.segments or project.segments)
        out.append(TargetDef(
            f"field:{mapping.tags.field}", "tags", "segments", "multi",
            f"tags:{mapping.tags.field}@{_hash(*(segment_reason(project, s) for s in scope))}",
            options=scope, segments=scope, label=mapping.tags.label,
        ))
    for field, seg in mapping.booleans.items():
        out.append(TargetDef(f"field:{field}", "boolean", seg, "bool",
                             segment_reason(project, seg), segments=(seg,), label=field))
    for field, gname in mapping.groups.items():
        segs = project.groups[gname].segments
        reason = f"group:{gname}@{_hash(*(project.segments[s].rule_hash for s in segs))}"
        out.append(TargetDef(f"field:{field}", "group", gname, "enumeration", reason,
                             options=segs, segments=segs, label=field,
                             output=project.groups[gname].field or gname))
    for field, seg in mapping.entered_at.items():
        out.append(TargetDef(f"field:{field}", "entered_at", seg, "datetime",
                             segment_reason(project, seg), segments=(seg,), label=field))
    for field, value in mapping.values.items():
        if isinstance(value, str):
            out.append(_value_target(project, field, value, None, None))
        else:
            out.append(_value_target(project, field, value.source, value.default, value.type))
    for name, exp in mapping.experiments.items():
        options = (*exp.variants, exp.holdout_value)
        reason = f"experiment:{name}@{_hash(exp.model_dump_json())}"
        segs = (exp.segment,) if exp.segment else ()
        out.append(TargetDef(f"field:{exp.field}", "experiment", name, "enumeration", reason,
                             options=options, segments=segs, label=exp.field, experiment=exp))
    for list_name, seg in mapping.lists.items():
        out.append(TargetDef(f"list:{list_name}", "list", seg, "list",
                             segment_reason(project, seg), segments=(seg,), label=list_name))
    return tuple(out)


def events(mapping: DestinationMapping) -> tuple[EventMapping, ...]:
    """The segment-transition events ``mapping`` sends."""
    return tuple(mapping.events)
