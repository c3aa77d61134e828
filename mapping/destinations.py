"""Destination mappings: what each segment, group and computed field becomes in HubSpot and
Klaviyo (``[destinations.hubspot]``, ``[destinations.klaviyo]``), and the audit settings.

Every mapping names a *destination field* (a HubSpot property / Klaviyo profile property) or a
*list*, and a *source* in the project (a segment, a group, a ``[fields]`` entry)::

    [destinations.hubspot]
    tags = { field = "segsync_segments" }          # names of all segments the contact is in
    booleans = { is_vip = "vip" }                  # field -> segment
    groups = { lifecycle_stage = "lifecycle" }     # field -> exclusive or lifecycle group
    entered_at = { vip_since = "vip" }             # field -> segment (when the contact entered)
    values = { engagement_score = { source = "engagement", default = 0 } }
    lists = { "VIP customers" = "vip" }            # list name -> segment (added on entry)

    [destinations.hubspot.experiments.subject_test]
    field = "subject_variant"
    variants = ["A", "B"]
    holdout = 0.1

    [[destinations.klaviyo.events]]
    segment = "cart_abandoners"
    on = "enter"
    fields = ["cart_item"]

The shapes are checked here; the references (does segment ``vip`` exist?) are checked against
the whole config by :func:`check_references`, which the loader calls after the shape
validated. ``mapping.targets`` turns a checked mapping into the managed targets and the
``SchemaSpec`` each destination needs. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from mapping.models import Config

# The same shapes as mapping.models' (which imports this module, so it cannot import them).
NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"
DURATION_RE = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d|w)\s*$"
Name = Annotated[str, Field(pattern=NAME_RE, description="an identifier: letters, digits, _")]
Duration = Annotated[
    str, Field(pattern=DURATION_RE, description='a duration: "15m", "24h", "7d", "2w", "30s"')
]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


FIELD_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_ .\-]{0,99}$"
HUBSPOT_FIELD_RE = r"^[a-z][a-z0-9_]{0,99}$"
FieldName = Annotated[
    str,
    Field(pattern=FIELD_NAME_RE, description="a destination field (property) name"),
]
ValueType = Literal["string", "number", "bool", "date", "datetime", "list"]
Scalar = str | int | float | bool


class TagsMapping(Model):
    field: FieldName = Field(
        description="the multi-valued field holding the names of the segments the contact is in "
        "(HubSpot: a multi-checkbox enumeration, written 'a;b'; Klaviyo: a list property)"
    )
    segments: list[Name] | None = Field(
        None, description="only these segments (default: every segment)"
    )
    label: str = Field("Segments", description="the field's label (HubSpot)")


class ValueMapping(Model):
    source: Name = Field(description="a [fields] entry (or a group's output field)")
    default: Scalar | None = Field(
        None, description="written when the computed value is empty (unset when not given)"
    )
    type: ValueType | None = Field(
        None, description="the destination field's type (default: the expression's type)"
    )


class ExperimentMapping(Model):
    field: FieldName = Field(description="the field holding the contact's variant")
    variants: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: ["A", "B"], min_length=1, description="the variant values"
    )
    weights: list[Annotated[float, Field(gt=0)]] | None = Field(
        None, description="relative weight of each variant (default: equal)"
    )
    holdout: float = Field(
        0.0, ge=0.0, lt=1.0, description="share of contacts held out (0 <= holdout < 1)"
    )
    holdout_value: str = Field("holdout", min_length=1, description="the held-out contacts' value")
    segment: Name | None = Field(
        None, description="only members of this segment get a variant (others: unset)"
    )
    salt: str = Field(
        "", description="change it to reshuffle; the assignment is otherwise stable forever"
    )

    @model_validator(mode="after")
    def _weights_match(self) -> ExperimentMapping:
        if self.weights is not None and len(self.weights) != len(self.variants):
            raise ValueError(
                f"weights has {len(self.weights)} entries but there are "
                f"{len(self.variants)} variants"
            )
        if len(set(self.variants)) != len(self.variants) or self.holdout_value in self.variants:
            raise ValueError("variants and holdout_value must all be different")
        return self


class EventMapping(Model):
    segment: Name = Field(description="the segment whose transitions send the event")
    on: Literal["enter", "exit"] = Field("enter", description="entering or leaving the segment")
    name: str | None = Field(
        None,
        min_length=1,
        description='the event (metric) name; default "Entered segment: <segment>" or '
        '"Exited segment: <segment>"',
    )
    fields: list[Name] = Field(
        default_factory=list, description="[fields] entries sent as the event's properties"
    )

    def event_name(self) -> str:
        if self.name:
            return self.name
        return f"{'Entered' if self.on == 'enter' else 'Exited'} segment: {self.segment}"


class DestinationMapping(Model):
    enabled: bool = Field(True, description="false: keep the mapping but do not push")
    tags: TagsMapping | None = Field(None, description="a field listing the contact's segments")
    booleans: dict[FieldName, Name] = Field(
        default_factory=dict, description="field -> segment: true for members, false otherwise"
    )
    groups: dict[FieldName, Name] = Field(
        default_factory=dict,
        description="field -> exclusive or lifecycle group: the winning segment or stage",
    )
    entered_at: dict[FieldName, Name] = Field(
        default_factory=dict,
        description="field -> segment: when the contact entered it (unset for non-members)",
    )
    values: dict[FieldName, Name | ValueMapping] = Field(
        default_factory=dict,
        description='field -> computed value: a [fields] name, or {source = "...", default = ...}',
    )
    lists: dict[Annotated[str, Field(min_length=1, max_length=255)], Name] = Field(
        default_factory=dict,
        description="list name -> segment: members are added on entry and removed on exit",
    )
    experiments: dict[Name, ExperimentMapping] = Field(
        default_factory=dict, description="A/B splits written as a field"
    )
    events: list[EventMapping] = Field(
        default_factory=list, description="segment-transition events"
    )
    property_group: str = Field("segsync", description="HubSpot property group for new fields")

    def field_names(self) -> Iterator[tuple[tuple[str | int, ...], str]]:
        """Every destination field this mapping writes, with its path inside the mapping."""
        if self.tags is not None:
            yield ("tags", "field"), self.tags.field
        for kind in ("booleans", "groups", "entered_at", "values"):
            for name in getattr(self, kind):
                yield (kind, name), name
        for name, exp in self.experiments.items():
            yield ("experiments", name, "field"), exp.field

    @model_validator(mode="after")
    def _unique_fields(self) -> DestinationMapping:
        seen: dict[str, str] = {}
        for path, name in self.field_names():
            where = ".".join(str(p) for p in path)
            if name in seen:
                raise ValueError(f"field {name!r} is written by both {seen[name]} and {where}")
            seen[name] = where
        return self


class HubSpotDestination(DestinationMapping):
    rate_per_10s: int = Field(
        190, ge=1, description="the account's burst limit per 10 s (for cost estimates)"
    )
    daily_quota: int = Field(
        650_000, ge=1, description="the account's daily request quota (for cost estimates)"
    )

    @model_validator(mode="after")
    def _hubspot_names(self) -> HubSpotDestination:
        import re

        for path, name in self.field_names():
            if not re.fullmatch(HUBSPOT_FIELD_RE, name):
                where = ".".join(str(p) for p in path)
                raise ValueError(
                    f"{where}: HubSpot property names are lower-case letters, digits and _ "
                    f"(starting with a letter), not {name!r}"
                )
        if self.events:
            raise ValueError(
                "events: segsync sends segment-transition events to Klaviyo only "
                "(HubSpot custom behavioral events are not supported)"
            )
        return self


class KlaviyoDestination(DestinationMapping):
    pass


class DestinationsConfig(Model):
    hubspot: HubSpotDestination | None = Field(None, description="what HubSpot receives")
    klaviyo: KlaviyoDestination | None = Field(None, description="what Klaviyo receives")
    allow_mass_removal: bool = Field(
        False,
        description="send removals even when they exceed the mass-removal guard "
        "(max(mass_removal_min, mass_removal_share of the members) of a list or tag)",
    )
    mass_removal_min: int = Field(1000, ge=0, description="guard: absolute removal threshold")
    mass_removal_share: float = Field(
        0.10, ge=0.0, le=1.0, description="guard: removal threshold as a share of the members"
    )
    max_attempts: int = Field(
        5, ge=1, description="sends of one change before it goes to the dead-letter state"
    )

    def enabled(self) -> dict[Literal["hubspot", "klaviyo"], DestinationMapping]:
        out: dict[Literal["hubspot", "klaviyo"], DestinationMapping] = {}
        if self.hubspot is not None and self.hubspot.enabled:
            out["hubspot"] = self.hubspot
        if self.klaviyo is not None and self.klaviyo.enabled:
            out["klaviyo"] = self.klaviyo
        return out


class AuditConfig(Model):
    retention: Duration = Field(
        "90d", description="audit entries older than this are deleted on each run"
    )


PathPart = str | int
Reference = tuple[tuple[PathPart, ...], str, str, list[str]]  # path, what, name, candidates


def _references(config: Config) -> Iterator[Reference]:
    segments = list(config.segments)
    groups = list(config.groups)
    outputs = list(config.fields) + [g.field or n for n, g in config.groups.items()]
    for provider in ("hubspot", "klaviyo"):
        dest: DestinationMapping | None = getattr(config.destinations, provider)
        if dest is None:
            continue
        base: tuple[PathPart, ...] = ("destinations", provider)
        if dest.tags is not None:
            for i, seg in enumerate(dest.tags.segments or ()):
                yield (*base, "tags", "segments", i), "segment", seg, segments
        for field, seg in dest.booleans.items():
            yield (*base, "booleans", field), "segment", seg, segments
        for field, grp in dest.groups.items():
            yield (*base, "groups", field), "group", grp, groups
        for field, seg in dest.entered_at.items():
            yield (*base, "entered_at", field), "segment", seg, segments
        for field, value in dest.values.items():
            if isinstance(value, str):
                yield (*base, "values", field), "field", value, outputs
            else:
                yield (*base, "values", field, "source"), "field", value.source, outputs
        for name, seg in dest.lists.items():
            yield (*base, "lists", name), "segment", seg, segments
        for name, exp in dest.experiments.items():
            if exp.segment is not None:
                yield (*base, "experiments", name, "segment"), "segment", exp.segment, segments
        for i, ev in enumerate(dest.events):
            yield (*base, "events", i, "segment"), "segment", ev.segment, segments
            for j, f in enumerate(ev.fields):
                yield (*base, "events", i, "fields", j), "field", f, list(config.fields)


def check_references(config: Config) -> list[tuple[tuple[PathPart, ...], str, list[str]]]:
    """Every mapping that names a segment, group or field the config does not declare:
    ``(toml path, message, candidates for "did you mean")``."""
    return [
        (path, f"unknown {what} {name!r}", candidates)
        for path, what, name, candidates in _references(config)
        if name not in candidates
    ]
