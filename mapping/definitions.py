"""Parsed TOML -> checked definitions: every rule parsed, type-checked and ordered.

:func:`build_project` reads the raw TOML data *leniently* (a table with a shape error elsewhere
still has its rules checked), so that rule problems are reported together with shape problems.
It returns the :class:`~mapping.project.Project` only when the validated
:class:`~mapping.models.Config` is given and nothing is wrong.

What is checked beyond each rule's own parse and types: names that clash (an attribute and a
trait of the same name, reserved words), score/RFM/group references to undeclared events,
properties or segments, and reference cycles between segments and traits.
"""

from __future__ import annotations

import hashlib
import keyword
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mapping import models
from mapping.errors import Location, Problem, RuleError
from mapping.project import Flag, GroupDef, PointsDef, Project, RfmDef, ScoreDef, SegmentDef
from mapping.rules import ast as r
from mapping.rules.checker import check_rule, find_cycles, references
from mapping.rules.parser import parse_rule
from mapping.rules.printer import format_rule
from mapping.rules.source import EVENT_FIELDS, RESERVED_NAMES, Schema, Source, did_you_mean
from mapping.tomlpos import PathPart, Span, format_path

TYPES = {"string": r.Type.STRING, "number": r.Type.NUMBER, "bool": r.Type.BOOL,
         "date": r.Type.DATETIME, "datetime": r.Type.DATETIME, "list": r.Type.LIST}
Node = tuple[str, str]  # ("segment" | "trait", name)


@dataclass
class Located:
    """The raw TOML data of one file and the position of each of its paths."""

    file: str
    spans: Mapping[tuple[PathPart, ...], Span]
    data: dict[str, object]

    def location(self, path: tuple[PathPart, ...], value: bool = False) -> Location:
        for n in range(len(path), 0, -1):
            span = self.spans.get(path[:n])
            if span is not None:
                line, col = span.value if value and n == len(path) else span.key
                return Location(self.file, line, col, format_path(path))
        return Location(self.file, None, None, format_path(path) or None)

    def source(self, path: tuple[PathPart, ...], text: str) -> Source:
        span = self.spans.get(path)
        if span is not None and span.chars is not None and len(span.chars) == len(text) + 1:
            return Source(text, self.file, format_path(path), char_map=span.chars)
        loc = self.location(path, value=True)
        return Source(text, self.file, loc.path, loc.line, loc.column)


@dataclass
class _Build:
    where: Located
    schema: Schema = field(default_factory=Schema)
    problems: list[Problem] = field(default_factory=list)
    owner: Node | None = None  # the segment or trait whose rules are being parsed
    graph: dict[Node, set[Node]] = field(default_factory=dict)  # references, even of bad rules
    edges: dict[tuple[Node, Node], tuple[PathPart, ...]] = field(default_factory=dict)  # where made

    def problem(self, path: tuple[PathPart, ...], message: str, hint: str | None = None,
                value: bool = False) -> None:
        self.problems.append(Problem(self.where.location(path, value), message, hint))

    def rule(self, path: tuple[PathPart, ...], text: object, *, expect: r.Type | None = r.Type.BOOL,
             event: str | None = None, what: str = "a rule") -> r.Expr | None:
        """Parse and check one rule string at ``path``; None (and problems) when it is wrong."""
        if not isinstance(text, str):
            return None  # a shape problem, reported by the models
        source = self.where.source(path, text)
        try:
            parsed = parse_rule(source, self.schema, event=event)
        except RuleError as e:
            self.problems += e.problems
            return None
        if self.owner is not None:
            for ref in references(parsed.expr):
                self.graph.setdefault(self.owner, set()).add(ref)
                self.edges.setdefault((self.owner, ref), path)
        found = check_rule(parsed, self.schema, expect=expect, event=event, what=what)
        self.problems += found
        return None if found else parsed.expr

    def tree(self, path: tuple[PathPart, ...], value: object) -> r.Expr | None:
        """A segment rule: a string, or nested ``{all = [...]}`` / ``{any}`` / ``{not}`` tables."""
        if isinstance(value, str):
            return self.rule(path, value, what="a segment rule")
        if not isinstance(value, dict):
            if path[-1] != "rule":  # the top level's type is checked by the models
                self.problem(path, "expected a rule string or an {all/any/not = ...} table", value=True)
            return None
        if len(value) != 1 or next(iter(value)) not in ("all", "any", "not"):
            extra = [k for k in value if k not in ("all", "any", "not")]
            hint = did_you_mean(extra[0], ("all", "any", "not")) if extra else None
            self.problem(path, "a rule table has exactly one key: all, any or not", hint)
            return None
        key, inner = next(iter(value.items()))
        sub = (*path, key)
        if key == "not":
            item = self.tree(sub, inner)
            return None if item is None else r.Not(item)
        if not isinstance(inner, list) or not inner:
            self.problem(sub, f"{key} takes a non-empty array of rules", value=True)
            return None
        items = [self.tree((*sub, n), v) for n, v in enumerate(inner)]
        if any(i is None for i in items):
            return None
        parts = tuple(i for i in items if i is not None)
        return r.And(parts) if key == "all" else r.Or(parts)


def _table(data: object, *keys: str) -> dict[str, object]:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else {}


def _schema(data: dict[str, object]) -> Schema:
    """Declared names from the raw data; a declaration with a bad type is kept with an unknown
    type (None) so that rules using it raise no second problem."""
    attributes = {k: TYPES.get(v) if isinstance(v, str) else None
                  for k, v in _table(data, "attributes").items()}
    events = {
        name: {p: TYPES.get(t) if isinstance(t, str) and t != "date" else None
               for p, t in _table(cfg, "properties").items()}
        for name, cfg in _table(data, "events").items()
    }
    scores = {name: tuple(_table(cfg, "tiers")) for name, cfg in _table(data, "scores").items()}
    return Schema(
        attributes=attributes,
        events=events,
        traits=dict.fromkeys(_table(data, "traits")),
        scores=scores,
        segments=frozenset(_table(data, "segments")),
        rfm=isinstance(data.get("rfm"), dict),
    )


def _check_names(b: _Build, data: dict[str, object]) -> None:
    def bad(name: str, extra: frozenset[str] = frozenset()) -> bool:
        return keyword.iskeyword(name) or name in RESERVED_NAMES or name in extra

    for name in _table(data, "attributes"):
        if bad(name, EVENT_FIELDS):
            b.problem(("attributes", name), f"{name!r} is a reserved word and cannot name an attribute")
    for name in _table(data, "traits"):
        if bad(name, EVENT_FIELDS):
            b.problem(("traits", name), f"{name!r} is a reserved word and cannot name a trait")
        elif name in b.schema.attributes:
            b.problem(("traits", name), f"trait {name!r} has the name of an attribute", "rename one")
    for event, cfg in _table(data, "events").items():
        for prop in _table(cfg, "properties"):
            if bad(prop, EVENT_FIELDS):
                b.problem(("events", event, "properties", prop),
                          f"{prop!r} is a reserved word and cannot name a property")


def _event_ref(b: _Build, path: tuple[PathPart, ...], name: object) -> bool:
    if isinstance(name, str) and name not in b.schema.events:
        b.problem(path, f"unknown event type {name!r}", did_you_mean(name, b.schema.events), value=True)
        return False
    return isinstance(name, str)


@dataclass
class _Parsed:
    """Every parsed rule by kind (None where the rule had a problem)."""

    traits: dict[str, r.Expr | None] = field(default_factory=dict)
    excludes: dict[str, r.Expr | None] = field(default_factory=dict)  # event type -> filter
    points: dict[tuple[str, int], r.Expr | None] = field(default_factory=dict)  # (score, row)
    segments: dict[str, dict[str, r.Expr | None]] = field(default_factory=dict)  # rule/exclude/flagN
    fields: dict[str, r.Expr | None] = field(default_factory=dict)


def _rules(b: _Build, data: dict[str, object]) -> _Parsed:
    """Parse and check every rule of the raw data."""
    parsed_traits: dict[str, r.Expr | None] = {}
    for name, text in _table(data, "traits").items():
        b.owner = ("trait", name)
        b.graph.setdefault(b.owner, set())
        parsed_traits[name] = b.rule(("traits", name), text, expect=None)
    b.owner = None
    b.schema = Schema(b.schema.attributes, b.schema.events, parsed_traits, b.schema.scores,
                      b.schema.segments, b.schema.rfm)
    excludes: dict[str, r.Expr | None] = {}
    for event, cfg in _table(data, "events").items():
        if isinstance(cfg, dict) and "exclude" in cfg:
            excludes[event] = b.rule(("events", event, "exclude"), cfg["exclude"], event=event,
                                     what="an event filter")
    points: dict[tuple[str, int], r.Expr | None] = {}
    for score, cfg in _table(data, "scores").items():
        rows = cfg.get("points") if isinstance(cfg, dict) else None
        for n, row in enumerate(rows if isinstance(rows, list) else []):
            row = row if isinstance(row, dict) else {}
            at: tuple[PathPart, ...] = ("scores", score, "points", n)
            if _event_ref(b, (*at, "event"), row.get("event")) and "where" in row:
                points[(score, n)] = b.rule((*at, "where"), row["where"], event=str(row["event"]),
                                            what="an event filter")
    segments: dict[str, dict[str, r.Expr | None]] = {}
    for name, cfg in _table(data, "segments").items():
        if not isinstance(cfg, dict):
            continue
        seg: dict[str, r.Expr | None] = {}
        base: tuple[PathPart, ...] = ("segments", name)
        b.owner = ("segment", name)
        b.graph.setdefault(b.owner, set())
        if cfg.get("rule") is not None:
            seg["rule"] = b.tree((*base, "rule"), cfg["rule"])
        if "exclude" in cfg:
            seg["exclude"] = b.rule((*base, "exclude"), cfg["exclude"], what="an exclusion")
        flags = cfg.get("flags")
        for n, flag in enumerate(flags if isinstance(flags, list) else []):
            if isinstance(flag, dict) and "when" in flag:
                seg[f"flag{n}"] = b.rule((*base, "flags", n, "when"), flag["when"], what="a flag")
        segments[name] = seg
    b.owner = None
    fields = {
        name: b.rule(("fields", name), text, expect=None) for name, text in _table(data, "fields").items()
    }
    _check_rfm(b, data)
    _check_groups(b, data)
    return _Parsed(parsed_traits, excludes, points, segments, fields)


def _check_rfm(b: _Build, data: dict[str, object]) -> None:
    rfm = _table(data, "rfm")
    if not rfm or not _event_ref(b, ("rfm", "event"), rfm.get("event")):
        return
    monetary = rfm.get("monetary", "value")
    props = b.schema.events.get(str(rfm["event"]), {})
    if isinstance(monetary, str) and monetary != "value":
        if monetary not in props:
            b.problem(("rfm", "monetary"), f"unknown property {monetary!r} of event {rfm['event']!r}",
                      did_you_mean(monetary, [*props, "value"]), value=True)
        elif props[monetary] not in (r.Type.NUMBER, None):
            b.problem(("rfm", "monetary"), f"monetary must be a number property; {monetary!r} is "
                      f"a {props[monetary]}", value=True)


def _check_groups(b: _Build, data: dict[str, object]) -> None:
    field_names = set(_table(data, "fields"))
    outputs: dict[object, str] = {}
    for group, cfg in _table(data, "groups").items():
        members = cfg.get("segments") if isinstance(cfg, dict) else None
        for n, seg in enumerate(members if isinstance(members, list) else []):
            if isinstance(seg, str) and seg not in b.schema.segments:
                b.problem(("groups", group, "segments", n), f"unknown segment {seg!r}",
                          did_you_mean(seg, b.schema.segments), value=True)
        out = cfg.get("field", group) if isinstance(cfg, dict) else group
        if out in field_names or out in outputs:
            other = "[fields]" if out in field_names else f"group {outputs[out]!r}"
            b.problem(("groups", group), f"group {group!r} writes output field {out!r}, "
                      f"which {other} also writes", "set field = \"...\" to another name")
        outputs.setdefault(out, group)


def _cycle_problems(b: _Build, graph: dict[Node, set[Node]]) -> None:
    for cycle in find_cycles(graph):
        path = b.edges.get((cycle[0], cycle[1]), ())
        text = " -> ".join(f"{k} {n!r}" for k, n in cycle)
        b.problems.append(Problem(b.where.location(path, value=True), f"reference cycle: {text}"))


def _order(graph: dict[Node, set[Node]], names: list[str]) -> list[str]:
    """Segments in declaration order, each after every segment it depends on (via traits too)."""
    done: list[str] = []
    seen: set[Node] = set()

    def visit(node: Node) -> None:
        if node in seen:
            return
        seen.add(node)
        for dep in sorted(graph.get(node, ())):
            visit(dep)
        if node[0] == "segment":
            done.append(node[1])

    for name in names:
        visit(("segment", name))
    return done


def _hash(seg: models.SegmentConfig, rule: r.Expr | None, exclude: r.Expr | None,
          flags: tuple[Flag, ...], traits: Mapping[str, r.Expr | None], graph: dict[Node, set[Node]],
          name: str) -> str:
    """sha256 (16 hex) of the canonical text of rule, exclude, flags and the traits they use."""
    parts = [
        f"rule:{format_rule(rule) if rule else ''}",
        f"exclude:{format_rule(exclude) if exclude else ''}",
        f"min_weight:{seg.min_weight}",
    ]
    parts += [f"flag:{f.points}:{format_rule(f.when)}" for f in flags]
    used: set[str] = set()
    todo = [("segment", name)]
    while todo:
        for kind, dep in graph.get(todo.pop(), ()):
            if kind == "trait" and dep not in used:
                used.add(dep)
                todo.append(("trait", dep))
    parts += [f"trait:{t}:{format_rule(e)}" for t in sorted(used) if (e := traits.get(t)) is not None]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def build_project(
    data: dict[str, object], config: models.Config | None, where: Located, path: Path | None,
    base_dir: Path,
) -> tuple[Project | None, list[Problem]]:
    """Check every rule of ``data``; the Project when ``config`` is valid and all is well."""
    b = _Build(where, _schema(data))
    _check_names(b, data)
    parsed = _rules(b, data)
    graph = b.graph
    _cycle_problems(b, graph)
    if config is None or b.problems:
        return None, b.problems
    return _project(config, parsed, graph, path, base_dir), []


def _ms(duration: str | None) -> int | None:
    return None if duration is None else models.parse_duration(duration)


def _present(exprs: Mapping[str, r.Expr | None]) -> dict[str, r.Expr]:
    return {k: v for k, v in exprs.items() if v is not None}


def _project(config: models.Config, parsed: _Parsed, graph: dict[Node, set[Node]],
             path: Path | None, base_dir: Path) -> Project:
    """The Project of a configuration with no problems (so every parsed rule is present)."""
    traits = _present(parsed.traits)
    segments: dict[str, SegmentDef] = {}
    for name in _order(graph, list(config.segments)):
        seg, exprs = config.segments[name], _present(parsed.segments[name])
        flags = tuple(Flag(exprs[f"flag{n}"], f.points) for n, f in enumerate(seg.flags))
        rule, exclude = exprs.get("rule"), exprs.get("exclude")
        segments[name] = SegmentDef(
            name, rule, exclude, flags, seg.min_weight, seg.priority, _ms(seg.min_dwell),
            _ms(seg.cooldown), _hash(seg, rule, exclude, flags, traits, graph, name), seg.description,
        )
    scores = {
        name: ScoreDef(
            name,
            tuple(PointsDef(p.event, p.points, parsed.points.get((name, n))) for n, p in enumerate(s.points)),
            _ms(s.half_life), _ms(s.window), s.cap, tuple(sorted(s.tiers.items(), key=lambda t: t[1])),
        )
        for name, s in config.scores.items()
    }
    rfm = None
    if config.rfm is not None:
        money: r.Prop | r.EventField = (
            r.EventField("value") if config.rfm.monetary == "value" else r.Prop(config.rfm.monetary)
        )
        rfm = RfmDef(config.rfm.event, money, _ms(config.rfm.window))
    groups = {
        name: GroupDef(name, g.kind, tuple(g.segments), g.resolve_by, g.field or name)
        for name, g in config.groups.items()
    }
    return Project(
        config=config, path=path, base_dir=base_dir,
        attributes={k: TYPES[v] for k, v in config.attributes.items()},
        date_attributes=frozenset(k for k, v in config.attributes.items() if v == "date"),
        events={k: {p: TYPES[t] for p, t in e.properties.items()} for k, e in config.events.items()},
        event_excludes=_present(parsed.excludes), traits=traits, scores=scores, rfm=rfm,
        segments=segments, groups=groups, fields=_present(parsed.fields),
    )


def schema_of(project: Project) -> Schema:
    """The names a rule may use in ``project`` (to parse a rule outside the config file)."""
    return Schema(
        attributes=project.attributes, events=project.events, traits=project.traits,
        scores={name: tuple(label for label, _ in s.tiers) for name, s in project.scores.items()},
        segments=frozenset(project.segments), rfm=project.rfm is not None,
    )


def parse_checked(project: Project, text: str, *, expect: r.Type | None = r.Type.BOOL,
                  event: str | None = None, name: str = "<rule>") -> r.Expr:
    """Parse and type-check one rule against ``project``; :class:`RuleError` with every problem."""
    schema = schema_of(project)
    parsed = parse_rule(Source(text, name), schema, event=event)
    problems = check_rule(parsed, schema, expect=expect, event=event)
    if problems:
        raise RuleError(problems=problems)
    return parsed.expr
