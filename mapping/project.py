"""A loaded, checked configuration: the typed definitions the engine compiles.

``mapping.config.load_project(path)`` produces a :class:`Project`: every rule string of the
TOML parsed into the AST of ``mapping.rules.ast`` and type-checked; durations in ms; segments in
dependency order (a segment comes after every segment it references). The engine
(``sync.evaluate``) only ever sees these objects, never raw TOML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mapping.models import Config
from mapping.rules.ast import EventField, Expr, Prop, Type


@dataclass(frozen=True)
class Flag:
    when: Expr  # BOOL
    points: float


@dataclass(frozen=True)
class SegmentDef:
    name: str
    rule: Expr | None  # BOOL; None when the segment is defined by flags alone
    exclude: Expr | None = None  # BOOL; a contact matching it is never a member
    flags: tuple[Flag, ...] = ()
    min_weight: float | None = None
    priority: int = 0
    min_dwell_ms: int | None = None
    cooldown_ms: int | None = None
    rule_hash: str = ""  # sha256 (hex, 16 chars) of the canonical text of rule+exclude+flags
    description: str = ""


@dataclass(frozen=True)
class PointsDef:
    event: str
    points: float
    where: Expr | None = None


@dataclass(frozen=True)
class ScoreDef:
    name: str
    points: tuple[PointsDef, ...]
    half_life_ms: int | None = None
    window_ms: int | None = None
    cap: float | None = None
    tiers: tuple[tuple[str, float], ...] = ()  # (label, lower bound), ascending bound


@dataclass(frozen=True)
class RfmDef:
    event: str
    monetary: Prop | EventField
    window_ms: int | None = None


@dataclass(frozen=True)
class GroupDef:
    name: str
    kind: Literal["exclusive", "lifecycle"]
    segments: tuple[str, ...]
    resolve_by: Literal["priority", "weight"] = "priority"
    field: str = ""  # output field name (defaults to the group name)


@dataclass(frozen=True)
class Project:
    config: Config
    path: Path | None
    base_dir: Path
    attributes: dict[str, Type]  # "date" attributes are DATETIME (midnight UTC)
    date_attributes: frozenset[str]  # which of them were declared "date"
    events: dict[str, dict[str, Type]]  # event type -> property types
    event_excludes: dict[str, Expr] = field(default_factory=dict)  # outlier filters
    traits: dict[str, Expr] = field(default_factory=dict)
    scores: dict[str, ScoreDef] = field(default_factory=dict)
    rfm: RfmDef | None = None
    segments: dict[str, SegmentDef] = field(default_factory=dict)  # dependency order
    groups: dict[str, GroupDef] = field(default_factory=dict)
    fields: dict[str, Expr] = field(default_factory=dict)  # computed output values
