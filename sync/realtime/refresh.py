"""Re-evaluate some contacts and enqueue what changed for them: the real-time unit of work.

::

    refresh(engine, project, contact_ids, as_of_ms, *, trigger, now_ms=None) -> Refresh

Evaluates just ``contact_ids`` at ``as_of_ms`` (the index-backed subset path of
:func:`sync.evaluate.evaluate`, memberships persisted), then plans those contacts only
(:func:`sync.planning.plan_run` with ``full=False``) and commits the changes, transition
events included, to the outbox. Nothing is sent here: the caller signals the executor
(:class:`sync.realtime.flusher.Flusher`). Both the webhook path and the clock ticks use it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine

from mapping.project import Project
from sync.evaluate import evaluate
from sync.planning import plan_run


@dataclass(frozen=True)
class Refresh:
    """What one refresh did."""

    as_of_ms: int
    evaluated: int
    entered: dict[str, int] = field(default_factory=dict)
    exited: dict[str, int] = field(default_factory=dict)
    queued: int = 0  # changes committed to the outbox (transition events included)
    held: int = 0  # changes held back by the mass-removal guard
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {"as_of": self.as_of_ms, "evaluated": self.evaluated, "entered": self.entered,
                "exited": self.exited, "queued": self.queued, "held": self.held,
                "seconds": round(self.seconds, 4)}


def refresh(engine: Engine, project: Project, contact_ids: Sequence[int], as_of_ms: int, *,
            trigger: str, now_ms: int | None = None, run_id: int | None = None) -> Refresh:
    """Evaluate ``contact_ids`` at ``as_of_ms`` and enqueue their changes (module docstring)."""
    started = time.perf_counter()
    ids = sorted(set(contact_ids))
    if not ids:
        return Refresh(as_of_ms, 0)
    result = evaluate(engine, project, as_of_ms, contact_ids=ids)
    plan = plan_run(engine, project, result, full=False, trigger=trigger, run_id=run_id,
                    now_ms=as_of_ms if now_ms is None else now_ms)
    entered = {s: n for s, n in result.entered.items() if n}
    exited = {s: n for s, n in result.exited.items() if n}
    return Refresh(as_of_ms, len(result.results), entered, exited,
                   len(plan.changes), len(plan.held), time.perf_counter() - started)
