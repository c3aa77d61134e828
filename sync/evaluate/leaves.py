"""The contact-level resolver of per-contact leaves (aggregates, scores, ranks, RFM, segments).

Compilation runs twice over the same expressions: in ``collect`` mode every leaf registers
what it needs (trait table columns, ranked expressions) and compiles to NULL; once the trait
tables exist and the rank cut-offs are known, ``final`` mode compiles the real SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from sqlalchemy import FromClause, literal_column

from mapping.errors import RuleError
from mapping.project import Project
from mapping.rules import ast as r
from sync.evaluate.compile import Col, ExprCompiler, Leaf
from sync.evaluate.ranks import (
    Cutoffs,
    RankSpec,
    RfmParts,
    bucket_compare,
    bucket_of,
    bucket_sql,
    rank_spec,
    rfm_score_sql,
    rfm_segment_sql,
)
from sync.evaluate.scores import points_keys, score_sql, tier_sql
from sync.evaluate.traits import TraitTables

_PLACEHOLDER: Col = literal_column("NULL")  # what a leaf compiles to in collect mode


def walk(project: Project, node: r.Expr) -> list[r.Expr]:
    """``node`` and its sub-expressions, with traits inlined (event filters excluded)."""
    out: list[r.Expr] = [node]
    if isinstance(node, r.TraitRef):
        out += walk(project, project.traits[node.name])
    for name in getattr(node, "__dataclass_fields__", {}):
        if name in ("where", "then_where", "values"):
            continue
        value = getattr(node, name)
        items = value if isinstance(value, tuple) and name == "items" else (value,)
        for item in items:
            if isinstance(item, r.Window | r.Type) or not hasattr(item, "__dataclass_fields__"):
                continue
            out += walk(project, item)
    return out


class LeafResolver:
    def __init__(self, project: Project, dialect: str, traits: TraitTables, contacts: FromClause,
                 segment_sql: Callable[[str], Col]) -> None:
        self.project = project
        self.traits = traits
        self.contacts = contacts
        self.segment_sql = segment_sql
        self.mode: Literal["collect", "final"] = "collect"
        self.compiler = ExprCompiler(project, dialect, contacts, self)
        self.ranks: dict[str, RankSpec] = {}
        self.cutoffs: dict[str, Cutoffs] = {}
        self.rfm = RfmParts(project.rfm) if project.rfm is not None else None
        # whole-population path: scores and ranked values materialised once per contact
        self.scores_used: set[str] = set()
        self.score_cols: dict[str, Col] = {}
        self.rank_x: dict[str, Col] = {}

    def x(self, spec: RankSpec) -> Col:
        """The ranked value of ``spec`` (a materialised column when there is one)."""
        return self.rank_x[spec.key] if spec.key in self.rank_x else spec.build()

    def leaf(self, node: Leaf) -> Col:
        collect = self.mode == "collect"
        if isinstance(node, r.Agg):
            if collect:
                self.traits.register_agg(node)
                return _PLACEHOLDER
            return self.traits.agg(node)
        if isinstance(node, r.Sequence):
            if collect:
                self.traits.register_sequence(node)
                return _PLACEHOLDER
            return self.traits.sequence(node, self.contacts)
        if isinstance(node, r.ScoreRef | r.TierRef):
            return self._score(node)
        if isinstance(node, r.Rank):
            return self._rank(node)
        if isinstance(node, r.Rfm):
            return self._rfm(node)
        if collect:
            return _PLACEHOLDER
        return self.segment_sql(node.name)

    def rank_compare(self, node: r.Rank, op: str, value: float) -> Col | None:
        if self.mode == "collect":
            return None
        spec = rank_spec(node, lambda: self.compiler.sql(node.expr))
        return bucket_compare(self.x(spec), self.cutoffs[spec.key], node.n,
                              -1 if node.kind == "percentile" else 0, op, value)

    def rank_value(self, node: r.Rank) -> tuple[Col, Callable[[Any], int | None]]:
        """The ranked value's SQL and the Python function that ranks it (for output values)."""
        spec = rank_spec(node, lambda: self.compiler.sql(node.expr))
        cut = self.cutoffs[spec.key]
        offset = -1 if node.kind == "percentile" else 0
        return self.x(spec), lambda x: bucket_of(x, cut, node.n, offset)

    def _score(self, node: r.ScoreRef | r.TierRef) -> Col:
        score = self.project.scores[node.name]
        if self.mode == "collect":
            self.scores_used.add(node.name)
            for key in points_keys(score):
                self.traits.register_points(key)
            return _PLACEHOLDER
        value = self.score_cols.get(node.name)
        if value is None:
            value = score_sql(score, self.traits.points, self.traits.dialect)
        return value if isinstance(node, r.ScoreRef) else tier_sql(score, value)

    def _rank(self, node: r.Rank) -> Col:
        spec = rank_spec(node, lambda: self.compiler.sql(node.expr))
        if self.mode == "collect":
            if any(isinstance(n, r.Rank | r.Rfm | r.SegmentRef) for n in walk(self.project, node.expr)):
                raise RuleError(f"{node.kind}() of an expression that uses ranks, RFM or segments "
                                "is not supported")
            self.ranks[spec.key] = spec
            self.compiler.sql(node.expr)
            return _PLACEHOLDER
        return bucket_sql(self.x(spec), self.cutoffs[spec.key], node.n,
                          offset=-1 if node.kind == "percentile" else 0)

    def _rfm(self, node: r.Rfm) -> Col:
        if self.rfm is None:
            raise RuleError("rfm_*() needs an [rfm] section")
        specs = self.rfm.specs(self.traits.agg, self.traits.dialect)
        if self.mode == "collect":
            for agg in self.rfm.aggs():
                self.traits.register_agg(agg)
            self.ranks.update({s.key: s for s in specs.values()})
            return _PLACEHOLDER
        parts = {p: bucket_sql(self.x(s), self.cutoffs[s.key], 5) for p, s in specs.items()}
        if node.part in parts:
            return parts[node.part]
        return rfm_score_sql(parts) if node.part == "score" else rfm_segment_sql(parts)
