"""Scores: weighted points per event type, optional half-life decay and cap; tiers.

``score = min(cap, sum over point rules of points * sum over matching events of w(event))``
with ``w = 0.5 ** ((as_of - ts) / half_life)`` (1 without a half-life), over the events of
the score's ``window`` (all time without one) that pass the rule's ``where`` and the event type's
exclude filter. The decay is computed in SQL (``power``; on SQLite builds without math
functions ``sync.evaluate.run`` registers a deterministic ``power``). A contact without
matching events scores 0. Scores are rounded to 6 decimals, so that every engine and
every path (whose float sums may differ in the last bits) gives the same value.
``tier(score)`` is the label of the highest lower bound <= the score, NULL below every bound.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Float, Numeric, String, case, cast, func, literal, null

from mapping.project import ScoreDef
from sync.evaluate.compile import Col
from sync.evaluate.traits import PointsKey

DECIMALS = 6  # scores are rounded: float sums differ in the last bits with the summation order


def points_keys(score: ScoreDef) -> list[PointsKey]:
    return [PointsKey(score.name, i) for i in range(len(score.points))]


def score_sql(score: ScoreDef, points: Callable[[PointsKey], Col], dialect: str) -> Col:
    total: Col = literal(0.0, Float)
    for key in points_keys(score):
        total = total + points(key) * score.points[key.index].points
    if score.cap is not None:
        smaller = func.least if dialect == "postgresql" else func.min  # scalar min on SQLite
        total = smaller(total, literal(float(score.cap), Float))
    if dialect == "postgresql":
        return cast(func.round(cast(total, Numeric), DECIMALS), Float)
    return func.round(total, DECIMALS)


def tier_sql(score: ScoreDef, value: Col) -> Col:
    if not score.tiers:
        return null()
    ordered = sorted(score.tiers, key=lambda t: t[1], reverse=True)
    return case(*((value >= bound, literal(label, String)) for label, bound in ordered))
