"""Population ranks (``percentile``, ``ntile``) and the RFM preset.

Definition (``mapping.rules.ast.Rank``): over the contacts whose ranked value x is not NULL
(N of them), a value v has ``lower(v)`` = the number of those x strictly below v;
``ntile(v, n) = floor(n * lower(v) / N) + 1`` (1..n, ties share a bucket) and
``percentile(v) = floor(100 * lower(v) / N)`` (0..99, i.e. ``ntile(v, 100) - 1``).

Both are computed through *cut-offs*: with the population sorted ascending (s[0..N-1]),
``ntile(v, n) >= k`` exactly when ``v > s[L_k - 1]`` where ``L_k = ceil((k - 1) * N / n)``.
A full evaluation computes the n - 1 cut-offs of every ranked expression with one window query,
stores them in ``rank_cutoffs`` (keyed by a hash of the expression and n; row ``k = 0`` holds the
population size) and compiles the rank into a ``CASE`` over them. The subset path (real time,
explain) compiles the same ``CASE`` from the cut-offs stored by the last full evaluation, so a
single contact is ranked against the population as of that evaluation; when none were stored
yet it computes them from the population on the spot. An empty population ranks as NULL.

RFM (``[rfm]``): R = ``ntile(-days_since(last order), 5)`` (recent is 5), F = ``ntile(order
count, 5)``, M = ``ntile(order amount sum, 5)``, each over the contacts with at least one order
(NULL for the others); ``rfm_score()`` is the three digits, e.g. ``"545"``; ``rfm_segment()``
names the cell of R and FM = round-half-up((F + M) / 2) in :data:`RFM_SEGMENTS`.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    Float,
    FromClause,
    Integer,
    String,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    not_,
    null,
    select,
)

from mapping.project import RfmDef
from mapping.rules import ast as r
from sync.evaluate.compile import DAY_MS, Col, as_of_param, floor
from sync.store.schema import rank_cutoffs

# (R, FM) -> name. Rows R = 1..5, columns FM = 1..5 (5 best). The usual RF grid.
_GRID = (
    ("Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"),  # R = 1
    ("Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"),  # R = 2
    ("About to Sleep", "About to Sleep", "Need Attention", "Loyal Customers", "Loyal Customers"),
    ("Promising", "Potential Loyalists", "Potential Loyalists", "Loyal Customers", "Loyal Customers"),
    ("New Customers", "Potential Loyalists", "Potential Loyalists", "Champions", "Champions"),
)
VERSION_KEY = "~version"  # the rank_cutoffs row holding the plan version (see bump_version)
RFM_SEGMENTS: dict[tuple[int, int], str] = {
    (rr + 1, fm + 1): name for rr, row in enumerate(_GRID) for fm, name in enumerate(row)
}


def rfm_segment_name(r_score: int, f_score: int, m_score: int) -> str:
    """The named RFM segment of a score triple (the table in ``docs/rules.md``)."""
    return RFM_SEGMENTS[(r_score, (f_score + m_score + 1) // 2)]


@dataclass(frozen=True)
class RankSpec:
    """One ranked expression: its storage key, bucket count and contact-level SQL builder."""

    key: str
    n: int
    build: Callable[[], Col]


def rank_key(what: str, n: int) -> str:
    return hashlib.sha256(f"{what}|{n}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Cutoffs:
    population: int
    values: dict[int, float]  # k (2..n) -> ntile >= k when x > value


def compute_cutoffs(conn: Connection, source: FromClause, x: Col, n: int, as_of_ms: int,
                    total: int | None = None) -> Cutoffs:
    """Cut-offs of ``x`` over every contact of ``source`` (one count, unless ``total``, the
    number of contacts with a value, is given, and one window query; on SQLite the values
    sorted in Python)."""
    params = {"as_of": as_of_ms}
    if total is None:
        total = conn.execute(select(func.count()).select_from(source).where(x.is_not(None)),
                             params).scalar_one()
    if not total:
        return Cutoffs(0, {})
    wanted = {k: math.ceil((k - 1) * total / n) for k in range(2, n + 1)}
    if conn.dialect.name == "sqlite":  # its window sort + row_number costs ~40 % more than this
        result = conn.execute(select(cast(x, Float)).select_from(source).where(x.is_not(None)), params)
        values = sorted(float(v) for (v,) in result.cursor.fetchall())
        result.close()
        if len(values) == total:
            return Cutoffs(int(total), {k: values[rn - 1] for k, rn in wanted.items()})
    ranked = (select(cast(x, Float).label("x"), func.row_number().over(order_by=x).label("rn"))
              .select_from(source).where(x.is_not(None)).subquery())
    rows = conn.execute(select(ranked.c.rn, ranked.c.x).where(ranked.c.rn.in_(sorted(set(wanted.values())))),
                        params).all()
    at = {int(rn): float(v) for rn, v in rows}
    return Cutoffs(int(total), {k: at[rn] for k, rn in wanted.items()})


def store_cutoffs(conn: Connection, key: str, cut: Cutoffs, as_of_ms: int) -> None:
    conn.execute(delete(rank_cutoffs).where(rank_cutoffs.c.rank_key == key))
    rows: list[dict[str, Any]] = [
        {"rank_key": key, "k": 0, "cutoff": None, "population": cut.population, "computed_at": as_of_ms}
    ]
    rows += [{"rank_key": key, "k": k, "cutoff": v, "population": cut.population,
              "computed_at": as_of_ms} for k, v in cut.values.items()]
    conn.execute(insert(rank_cutoffs), rows)


def bump_version(conn: Connection, as_of_ms: int) -> None:
    """Renew the store's plan version (a random token in the ``population`` of row
    :data:`VERSION_KEY`): compiled subset plans cached by any process are dropped on their next
    use. Every persisted full evaluation calls it, since it rewrites the cut-offs."""
    conn.execute(delete(rank_cutoffs).where(rank_cutoffs.c.rank_key == VERSION_KEY))
    conn.execute(insert(rank_cutoffs).values(rank_key=VERSION_KEY, k=0, cutoff=None,
                                             population=secrets.randbits(62), computed_at=as_of_ms))


def load_cutoffs(conn: Connection, key: str) -> Cutoffs | None:
    rows = conn.execute(select(rank_cutoffs.c.k, rank_cutoffs.c.cutoff, rank_cutoffs.c.population)
                        .where(rank_cutoffs.c.rank_key == key)).all()
    if not rows:
        return None
    return Cutoffs(int(rows[0].population),
                   {int(k): float(c) for k, c, _ in rows if k > 0 and c is not None})


def bucket_sql(x: Col, cut: Cutoffs, n: int, offset: int = 0) -> Col:
    """``ntile(x, n) + offset`` as a CASE over the cut-offs (NULL when x or the population is)."""
    if cut.population == 0:
        return cast(null(), Integer)

    def search(lo: int, hi: int) -> Col:  # x > cut-off of lo is known; a binary search
        if lo == hi:
            return literal(lo + offset, Integer)
        mid = (lo + hi + 1) // 2
        return case((x > cut.values[mid], search(mid, hi)), else_=search(lo, mid - 1))

    return case((x.is_(None), cast(null(), Integer)), else_=search(1, n))


def bucket_compare(x: Col, cut: Cutoffs, n: int, offset: int, op: str, value: float) -> Col:
    """``ntile(x, n) + offset  op  value`` with one comparison of x (unknown when x is NULL)."""
    if cut.population == 0:
        return cast(null(), Boolean)

    def at_least(k: int) -> Col:  # bucket >= k
        if k <= 1:
            return x == x  # true, or unknown when x is NULL
        return x != x if k > n else x > cut.values[k]

    v = value - offset
    if op == ">=":
        return at_least(math.ceil(v))
    if op == ">":
        return at_least(math.floor(v) + 1)
    if op == "<=":
        return not_(at_least(math.floor(v) + 1))
    if op == "<":
        return not_(at_least(math.ceil(v)))
    equal = and_(at_least(int(v)), not_(at_least(int(v) + 1))) if v.is_integer() else x != x
    return equal if op == "==" else not_(equal)


def bucket_of(x: float | None, cut: Cutoffs, n: int, offset: int) -> int | None:
    """The Python twin of :func:`bucket_sql` (for output values)."""
    if x is None or cut.population == 0:
        return None
    return 1 + offset + bisect.bisect_left([cut.values[k] for k in range(2, n + 1)], float(x))


def rank_spec(node: r.Rank, build: Callable[[], Col]) -> RankSpec:
    return RankSpec(rank_key(repr(node.expr), node.n), node.n, build)


class RfmParts:
    """The RFM aggregates (as AST leaves) and the ranked expressions built from them."""

    def __init__(self, rfm: RfmDef) -> None:
        window = r.Window("within", rfm.window_ms) if rfm.window_ms is not None else r.ALL_TIME
        self.last = r.Agg("last", rfm.event, window=window)
        self.count = r.Agg("count", rfm.event, window=window)
        self.total = r.Agg("sum", rfm.event, of=rfm.monetary, window=window)
        self.ident = repr(rfm)

    def aggs(self) -> tuple[r.Agg, ...]:
        return (self.last, self.count, self.total)

    def specs(self, leaf: Callable[[r.Agg], Col], dialect: str) -> dict[str, RankSpec]:
        def r_expr() -> Col:
            last = leaf(self.last)
            return -floor(dialect, cast(as_of_param() - last, Float) / DAY_MS)

        def f_expr() -> Col:
            count = leaf(self.count)
            return case((count > 0, cast(count, Float)))

        def m_expr() -> Col:
            return case((leaf(self.count) > 0, func.coalesce(leaf(self.total), 0.0)))

        builds = {"r": r_expr, "f": f_expr, "m": m_expr}
        return {part: RankSpec(rank_key(f"rfm:{part}:{self.ident}", 5), 5, b) for part, b in builds.items()}


def rfm_score_sql(parts: dict[str, Col]) -> Col:
    return cast(parts["r"], String) + cast(parts["f"], String) + cast(parts["m"], String)


def rfm_segment_sql(parts: dict[str, Col]) -> Col:
    cell = parts["r"] * 10 + (parts["f"] + parts["m"] + 1) // 2
    return case({rr * 10 + fm: literal(name, String) for (rr, fm), name in RFM_SEGMENTS.items()},
                value=cell)


