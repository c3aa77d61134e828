"""The typed rule AST: frozen dataclasses shared by the parser, the checker and the SQL compiler.

A rule source string (Python-like syntax, see ``docs/rules.md``) is parsed into these nodes by
``mapping.rules.parser``, type-checked against the declared attributes, events, scores and
segments by ``mapping.rules.checker`` and compiled to SQL by ``sync.evaluate``. The canonical
printer (``mapping.rules.printer``) round-trips: ``parse(print(node)) == node``.

Time semantics (one definition for every path):

* All instants are integer epoch **milliseconds**, UTC. Durations are integer milliseconds.
* Evaluation happens at an explicit ``as_of`` instant. Events with ``ts > as_of`` never count.
* A :class:`Window` is half-open and relative to ``as_of``: ``within T`` selects
  ``as_of - T < ts <= as_of``; ``between (A, B)`` with ``A > B`` selects
  ``as_of - A < ts <= as_of - B``; ``all`` selects ``ts <= as_of``. So an event exactly ``T``
  old has left a ``within T`` window — a member of "opened in the last 7 days" leaves at the
  instant the last open turns 7 days old.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal, TypeAlias


class Type(Enum):
    """Value types of attributes, event properties and expressions."""

    STRING = "string"
    NUMBER = "number"
    BOOL = "bool"
    DATETIME = "datetime"  # epoch ms, UTC; a declared "date" attribute is midnight UTC
    LIST = "list"  # list of strings
    DURATION = "duration"  # ms; only as a literal argument

    def __str__(self) -> str:
        return self.value


# --------------------------------------------------------------------------- leaves


@dataclass(frozen=True)
class Literal_:
    """A constant. ``value`` is str, float/int, bool, None, or a tuple of str (a list literal).

    DATETIME literals hold epoch ms (``date("2024-01-01")`` in source); DURATION literals hold
    ms (``"24h"`` in a duration position).
    """

    value: str | int | float | bool | tuple[str | int | float, ...] | None
    type: Type


@dataclass(frozen=True)
class Attr:
    """A contact attribute, e.g. ``country`` or ``signup_date``."""

    name: str


@dataclass(frozen=True)
class Prop:
    """Inside an event filter: a JSON property of the event, e.g. ``url`` or ``product``."""

    name: str


@dataclass(frozen=True)
class EventField:
    """Inside an event filter or as an aggregate's ``of``: the event's own ``value`` or ``ts``."""

    name: Literal["value", "ts"]


@dataclass(frozen=True)
class Now:
    """The evaluation instant ``as_of`` (a DATETIME)."""


@dataclass(frozen=True)
class Ago:
    """``ago("30d")``: ``as_of - duration`` (a DATETIME)."""

    duration_ms: int


@dataclass(frozen=True)
class Window:
    """Event time window relative to ``as_of``; see the module docstring for the edges.

    ``kind == "all"``: no bounds. ``"within"``: ``start_ms`` set, ``end_ms == 0``.
    ``"between"``: ``start_ms > end_ms >= 0`` (older bound first, both "ago").
    """

    kind: Literal["all", "within", "between"] = "all"
    start_ms: int | None = None
    end_ms: int = 0


ALL_TIME = Window()

AggFunc: TypeAlias = Literal[
    "count", "sum", "avg", "min", "max", "first", "last", "exists", "distinct"
]


@dataclass(frozen=True)
class Agg:
    """An aggregate over one contact's events of one type.

    ``count``/``exists`` ignore ``of``. ``sum/avg/min/max`` aggregate ``of`` (default: the
    event's ``value``). ``first``/``last`` return the DATETIME of the earliest/latest matching
    event. ``distinct`` counts distinct values of ``of`` (a :class:`Prop`). ``where`` is a BOOL
    expression over :class:`Prop` / :class:`EventField`. The event type's global ``exclude``
    filter (outliers) is applied by the compiler before ``where``.

    Empty input: count/distinct -> 0, exists -> false, others -> NULL.
    """

    func: AggFunc
    event: str
    of: Prop | EventField | None = None
    where: Expr | None = None
    window: Window = ALL_TIME


@dataclass(frozen=True)
class Sequence:
    """``sequence(A, not_followed_by=B, gap="48h", within=...)``.

    True when some A event in ``window`` (and matching ``where``) is at least ``gap`` old
    (``a.ts + gap <= as_of``) and no B event (matching ``then_where``) has
    ``a.ts <= b.ts <= a.ts + gap``. With ``latest=True`` only the contact's most recent A
    event (in the window) is considered — "the last cart was abandoned".
    """

    first: str
    then_not: str
    gap_ms: int
    window: Window = ALL_TIME
    where: Expr | None = None
    then_where: Expr | None = None
    latest: bool = False


@dataclass(frozen=True)
class ScoreRef:
    """``score("engagement")``: a declared weighted, optionally decaying, capped score (NUMBER)."""

    name: str


@dataclass(frozen=True)
class TierRef:
    """``tier("engagement")``: the tier label (STRING) of a declared score."""

    name: str


@dataclass(frozen=True)
class TraitRef:
    """A named trait declared in ``[traits]`` (its expression is inlined by the compiler)."""

    name: str


@dataclass(frozen=True)
class Rank:
    """Population rank of a NUMBER expression.

    ``percentile(x)``: 0..100, the share of contacts (with a non-NULL x) whose x is strictly
    lower, times 100, floored (``percentile(x) >= 75`` is the top 25 %).
    ``ntile(x, n)``: 1..n with n the highest values (``ntile(x, 4) == 4`` is the top quarter).
    NULL when x is NULL. Cut-offs come from the last full evaluation.
    """

    kind: Literal["percentile", "ntile"]
    expr: Expr
    n: int = 100


@dataclass(frozen=True)
class Rfm:
    """The built-in RFM preset (``[rfm]`` in the config): ``rfm_r()``, ``rfm_f()``, ``rfm_m()``
    (quintile scores 1–5, 5 best), ``rfm_score()`` (e.g. "545") and ``rfm_segment()`` (the named
    segment, table in ``docs/rules.md``)."""

    part: Literal["r", "f", "m", "score", "segment"]


@dataclass(frozen=True)
class SegmentRef:
    """``segment("loyal")``: membership of another segment (BOOL, its final verdict)."""

    name: str


# --------------------------------------------------------------------------- operators

CompareOp: TypeAlias = Literal["==", "!=", "<", "<=", ">", ">="]
ArithOp: TypeAlias = Literal["+", "-", "*", "/"]
StrOpName: TypeAlias = Literal["contains", "starts_with", "ends_with"]


@dataclass(frozen=True)
class Compare:
    op: CompareOp
    left: Expr
    right: Expr


@dataclass(frozen=True)
class In:
    """``x in ("a", "b")`` / ``x not in (...)``; ``values`` is a list literal."""

    expr: Expr
    values: Literal_
    negate: bool = False


@dataclass(frozen=True)
class StrOp:
    """``contains(x, "s")``: substring for STRING, element membership for LIST.
    ``starts_with`` / ``ends_with`` are STRING only."""

    op: StrOpName
    expr: Expr
    arg: Expr


@dataclass(frozen=True)
class IsSet:
    """``is_set(x)`` / ``is_not_set(x)``: NULL / missing (and "" for strings) is not set."""

    expr: Expr
    negate: bool = False


@dataclass(frozen=True)
class Between:
    """``between(x, lo, hi)`` (also written ``lo <= x <= hi``): inclusive on both ends."""

    expr: Expr
    low: Expr
    high: Expr


@dataclass(frozen=True)
class Arith:
    op: ArithOp
    left: Expr
    right: Expr


@dataclass(frozen=True)
class DaysSince:
    """``days_since(x)``: whole days from DATETIME x to ``as_of`` (NUMBER, floored)."""

    expr: Expr


@dataclass(frozen=True)
class Coalesce:
    """``coalesce(x, default)``: x, or default when x is NULL."""

    expr: Expr
    default: Expr


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    item: Expr


Expr: TypeAlias = (
    Literal_
    | Attr
    | Prop
    | EventField
    | Now
    | Ago
    | Agg
    | Sequence
    | ScoreRef
    | TierRef
    | TraitRef
    | Rank
    | Rfm
    | SegmentRef
    | Compare
    | In
    | StrOp
    | IsSet
    | Between
    | Arith
    | DaysSince
    | Coalesce
    | And
    | Or
    | Not
)

# SQL three-valued logic is the semantics: a comparison with NULL is unknown, and a segment
# rule that is unknown is "not a member". ``not`` of unknown is unknown (so still not a member).
