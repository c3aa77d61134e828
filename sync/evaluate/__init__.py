"""The evaluation engine: segment rules compiled to SQL, evaluated at an explicit ``as_of``.

::

    evaluate(engine, project, as_of_ms, contact_ids=None, persist=True) -> EvaluationResult
    explain(engine, project, contact_id, as_of_ms) -> Explanation

``contact_ids=None`` evaluates the whole population (trait tables materialised once, rows read
in chunks); a list of ids takes the index-backed subset path (real time). Both compile from the
same plan (``sync.evaluate.plan``), so they agree; ranks on the subset path use the cut-offs of
the last persisted full evaluation (``sync.evaluate.ranks``). With ``persist=True`` memberships
(entered/exited), lifecycle group stages, computed values and rank cut-offs are written in the
same transaction; with ``persist=False`` nothing is written (a dry run), and ``entered`` /
``exited`` report what would change.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine

from mapping.project import Project
from sync.evaluate.explain import Explanation, explain
from sync.evaluate.results import ContactResult, EvaluationResult
from sync.evaluate.run import run_evaluation


def evaluate(engine: Engine, project: Project, as_of_ms: int,
             contact_ids: Sequence[int] | None = None, persist: bool = True) -> EvaluationResult:
    """Evaluate every segment and field for the population or the given contacts at ``as_of_ms``."""
    return run_evaluation(engine, project, as_of_ms, contact_ids, persist)


__all__ = ["ContactResult", "EvaluationResult", "Explanation", "evaluate", "explain"]
