"""``explain``: why a contact is (not) in each segment, from the same compiled plan.

The contact is evaluated on the subset path with one extra SQL column per sub-expression of
every segment rule, exclusion and flag, so each node of the tree shows the value the engine
used (traits are expanded under their name; event filters are part of their aggregate's text).
Each segment then shows its raw rule, its exclusion, its flags and weight, the adjustments
made by state (min_dwell, cooldown, groups) and the final verdict. Nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from rich.tree import Tree
from sqlalchemy import Engine

from mapping.errors import InputError
from mapping.project import Project
from mapping.rules import ast as r
from mapping.rules.printer import format_instant, format_rule
from sync.evaluate.compile import type_of
from sync.evaluate.full import ensure_math
from sync.evaluate.plan import Plan, PNode, convert, peval
from sync.evaluate.run import Evaluation, fingerprint
from sync.evaluate.state import ContactState


@dataclass(frozen=True)
class ExplainNode:
    """One sub-expression and its value for the contact (None is unknown / not set)."""

    text: str
    value: Any
    children: tuple[ExplainNode, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"expr": self.text, "value": self.value}
        if self.children:
            out["children"] = [c.to_json() for c in self.children]
        return out


@dataclass(frozen=True)
class SegmentExplanation:
    name: str
    member: bool
    rule: ExplainNode | None
    exclude: ExplainNode | None
    flags: tuple[tuple[ExplainNode, float], ...]
    weight: float | None
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "segment": self.name, "member": self.member,
            "rule": self.rule.to_json() if self.rule else None,
            "exclude": self.exclude.to_json() if self.exclude else None,
            "flags": [{"points": p, **f.to_json()} for f, p in self.flags],
            "weight": self.weight, "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Explanation:
    contact_id: int
    key: str | None
    as_of_ms: int
    segments: tuple[SegmentExplanation, ...]
    fields: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"contact": self.key, "contact_id": self.contact_id, "as_of": format_instant(self.as_of_ms),
                "segments": [s.to_json() for s in self.segments], "fields": self.fields}

    def __rich__(self) -> Tree:
        root = Tree(Text(f"{self.key} at {format_instant(self.as_of_ms)}", style="bold"))
        for seg in self.segments:
            mark = ("✔ member", "green") if seg.member else ("✘ not a member", "red")
            branch = root.add(Text.assemble((seg.name, "bold"), "  ", mark))
            if seg.rule:
                _add(branch.add("rule"), seg.rule)
            if seg.exclude:
                _add(branch.add("exclude"), seg.exclude)
            for flag, points in seg.flags:
                _add(branch.add(f"flag ({points:g} points)"), flag)
            if seg.weight is not None:
                branch.add(f"weight {seg.weight:g}")
            for note in seg.notes:
                branch.add(Text(note, style="yellow"))
        if self.fields:
            fields = root.add("fields")
            for name, value in self.fields.items():
                fields.add(f"{name} = {value!r}")
        return root


def _add(tree: Tree, node: ExplainNode) -> None:
    branch = tree.add(Text.assemble(node.text, "  → ", (repr(node.value), "cyan")))
    for child in node.children:
        _add(branch, child)


def _children(project: Project, e: r.Expr) -> list[r.Expr]:
    if isinstance(e, r.TraitRef):
        return [project.traits[e.name]]
    if isinstance(e, r.And | r.Or):
        kids: list[r.Expr] = list(e.items)
    elif isinstance(e, r.Not):
        kids = [e.item]
    elif isinstance(e, r.Compare | r.Arith):
        kids = [e.left, e.right]
    elif isinstance(e, r.Between):
        kids = [e.expr, e.low, e.high]
    elif isinstance(e, r.StrOp):
        kids = [e.expr, e.arg]
    elif isinstance(e, r.In | r.IsSet | r.DaysSince):
        kids = [e.expr]
    elif isinstance(e, r.Coalesce):
        kids = [e.expr, e.default]
    else:
        kids = []
    return [k for k in kids if not isinstance(k, r.Literal_)]


@dataclass
class _Pending:
    text: str
    node: PNode
    conv: Any
    children: list[_Pending]


def _pending(plan: Plan, e: r.Expr) -> _Pending:
    return _Pending(format_rule(e), plan.split(e), convert(type_of(plan.project, e)),
                    [_pending(plan, k) for k in _children(plan.project, e)])


def _done(p: _Pending, atoms: Any, final: dict[str, bool]) -> ExplainNode:
    return ExplainNode(p.text, p.conv(peval(p.node, atoms, final)),
                       tuple(_done(c, atoms, final) for c in p.children))


def explain(engine: Engine, project: Project, contact_id: int, as_of_ms: int) -> Explanation:
    """Every leaf's value and each segment's verdict for one contact at ``as_of_ms``."""
    trees: dict[str, tuple[_Pending | None, _Pending | None, list[tuple[_Pending, float]]]] = {}

    def extra(plan: Plan) -> None:
        for name, seg in project.segments.items():
            trees[name] = (_pending(plan, seg.rule) if seg.rule is not None else None,
                           _pending(plan, seg.exclude) if seg.exclude is not None else None,
                           [(_pending(plan, f.when), f.points) for f in seg.flags])

    with engine.connect() as conn:
        conn.begin()
        ensure_math(conn)
        ev = Evaluation(conn, project, as_of_ms, fingerprint(conn)[1], extra=extra)
        rows = ev.query.rows(conn, as_of_ms, [contact_id])
        if not rows:
            raise InputError(f"no contact with id {contact_id}")
        st = ev.states(conn.dialect, False).read(conn, [contact_id]).get(contact_id)
        res, d = ev.contact(rows[0], st or ContactState(), as_of_ms, explain=True)
        conn.rollback()
    atoms = rows[0][ev.offset:]
    segments = []
    for name, seg in project.segments.items():
        rule, exclude, flags = trees[name]
        done_flags = tuple((_done(f, atoms, d.final), p) for f, p in flags)
        weight = (d.weights.get(name, sum(p for f, p in done_flags if f.value is True))
                  if seg.flags else None)
        notes = list(d.notes.get(name, []))
        done_exclude = _done(exclude, atoms, d.final) if exclude else None
        if ev.plan.segments[name].pure and done_exclude and done_exclude.value is True:
            notes.append("excluded")
        segments.append(SegmentExplanation(
            name, name in res.segments, _done(rule, atoms, d.final) if rule else None,
            done_exclude, done_flags, weight, tuple(notes)))
    return Explanation(contact_id, res.key, as_of_ms, tuple(segments), res.fields)
