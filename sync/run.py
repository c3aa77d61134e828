"""The job ``segsync run`` (and every tick of ``segsync serve``): pull -> evaluate -> plan -> push.

::

    run_job(project, RunOptions(...), engine=None, connectors=None, progress=None) -> RunReport

Under the single-flight lock (:mod:`sync.runlock`), so two runs never push at once:

1. recovery: outbox claims left by a crashed run are released (claimed as ``run``: they can
   only be a dead run's, we hold the lock) and claims whose lease ran out; a live real-time
   flusher's claims (it pushes without the lock) are left alone.
   The crashed run's ``runs`` row, still ``running``, is marked ``aborted``;
2. privacy-deletion requests that are due (``[service] forget_remote``, queued by ``segsync
   forget`` or a webhook) are sent to the providers that have a connector
   (:func:`sync.remote_delete.send_remote_deletions`), before anything is pushed;
3. pull every configured source (incremental; ``full_pull`` re-reads everything). A source that
   fails is reported and the run goes on with what the store holds;
4. evaluate the whole population at ``as_of`` (default: now), recording memberships;
5. make sure every destination has the fields, options and lists the mappings need
   (``ensure_schema``); a destination whose schema disagrees is not pushed to;
6. plan desired vs acknowledged values and commit the changes to the outbox
   (:func:`sync.planning.plan_run`, with the mass-removal guard);
7. push what the outbox holds (:func:`sync.executor.push_destination`).

A crash anywhere is repaired by the next run: desired state and the outbox are committed
before anything is sent, acknowledged values only after the provider confirmed.

``dry_run``: pulls (reads only), evaluates without recording, asks the destinations what
``ensure_schema`` *would* create, and plans without committing; nothing is sent and nothing
is recorded in the store except what the pull read. The report says what a run would do.

The :class:`RunReport` tells success (exit 0), partial failure (exit 3: records rejected,
dead-lettered, left to retry, removals held by the guard, or privacy deletions rejected, left
to retry or without a connector) and error (exit 1: a source or
destination failed, or a destination's schema disagrees).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sqlalchemy import Engine, func, select, update

from connectors.base import Connector, Page, SchemaReport, SchemaSpec
from connectors.errors import ConnectorError
from connectors.records import Change, Contact, DeletionKind, DeletionResult, Event, Provider, PushResult
from mapping.project import Project
from sync import outbox
from sync.executor import PushSummary, push_destination
from sync.plan import Plan
from sync.pull import PullProgress, PullSummary, load_cursor, pull
from sync.remote_delete import DeletionReport, send_remote_deletions
from sync.runlock import single_flight
from sync.store import schema
from sync.store.tx import begin_write

__all__ = ["Progress", "RunOptions", "RunReport", "Trigger", "run_job"]

Trigger = Literal["schedule", "webhook", "manual"]
EXIT_OK, EXIT_ERROR, EXIT_PARTIAL = 0, 1, 3


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class RunOptions:
    trigger: Trigger = "manual"
    as_of_ms: int | None = None  # default: now
    pull: bool = True
    full_pull: bool = False
    push: bool = True
    dry_run: bool = False
    allow_mass_removal: bool = False  # also [destinations] allow_mass_removal
    wait_lock_s: float = 0.0


class Progress(Protocol):
    """What a run reports while it works (the CLI draws it with rich)."""

    def phase(self, name: str) -> None:
        """A phase starts: "pull", "evaluate", "schema", "plan", "push"."""

    def pulled(self, update: PullProgress) -> None:
        """A page of a source's stream was committed."""

    def pushed(self, destination: str, done: int, total: int) -> None:
        """``done`` of about ``total`` changes of ``destination`` were answered."""


class _Silent:
    def phase(self, name: str) -> None:
        pass

    def pulled(self, update: PullProgress) -> None:
        pass

    def pushed(self, destination: str, done: int, total: int) -> None:
        pass


@dataclass
class RunReport:
    """What one run did (``to_json`` is also stored as the ``runs`` row's summary)."""

    trigger: str
    as_of_ms: int
    dry_run: bool
    started_ms: int
    run_id: int | None = None
    finished_ms: int = 0
    pull: PullSummary | None = None
    empty_sources: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    entered: dict[str, int] = field(default_factory=dict)
    exited: dict[str, int] = field(default_factory=dict)
    schema: dict[str, SchemaReport] = field(default_factory=dict)
    plan: Plan | None = None
    push: PushSummary = field(default_factory=PushSummary)
    deletions: DeletionReport = field(default_factory=DeletionReport)
    errors: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per phase

    @property
    def status(self) -> Literal["ok", "partial", "error"]:
        if self.errors:
            return "error"
        held = bool(self.plan and self.plan.held)
        if held or self.push.failed or self.push.dead or not self.deletions.ok:
            return "partial"
        return "ok"

    @property
    def exit_code(self) -> int:
        return {"ok": EXIT_OK, "partial": EXIT_PARTIAL, "error": EXIT_ERROR}[self.status]

    def planned(self, destination: str) -> int:
        return sum(1 for p in (self.plan.changes if self.plan else ()) if p.change.destination == destination)

    def held(self, destination: str) -> int:
        return sum(1 for p in (self.plan.held if self.plan else ()) if p.change.destination == destination)

    def to_json(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "run_id": self.run_id, "trigger": self.trigger, "as_of": self.as_of_ms,
            "dry_run": self.dry_run, "status": self.status, "exit_code": self.exit_code,
            "started_at": self.started_ms, "finished_at": self.finished_ms,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "pull": self.pull.to_json() if self.pull else None, "empty_sources": self.empty_sources,
            "segments": {"sizes": self.sizes, "entered": self.entered, "exited": self.exited},
            "schema": {d: {"created_fields": list(r.created_fields), "added_options": {
                k: list(v) for k, v in r.added_options.items()}, "created_lists": list(r.created_lists),
                "problems": list(r.problems)} for d, r in self.schema.items()},
            "plan": None if plan is None else {
                "changes": len(plan.changes), "held": len(plan.held), "problems": list(plan.problems),
                "counts": [{"destination": d, "group": g, "op": o, "count": n}
                           for (d, g, o), n in plan.counts().items()],
                "cost": dict(plan.cost)},
            "push": self.push.to_json(), "deletions": self.deletions.to_json(), "errors": self.errors,
        }


class _Reporting:
    """A connector whose ``apply`` reports how many changes were answered."""

    def __init__(self, inner: Connector, report: Callable[[int], None]) -> None:
        self.inner = inner
        self.provider: Provider = inner.provider
        self.report = report

    def pull_contacts(self, cursor: str | None, *, full: bool = False) -> Iterator[Page[Contact]]:
        return self.inner.pull_contacts(cursor, full=full)

    def pull_events(self, cursor: str | None) -> Iterator[Page[Event]]:
        return self.inner.pull_events(cursor)

    def ensure_schema(self, spec: SchemaSpec, *, dry_run: bool = False) -> SchemaReport:
        return self.inner.ensure_schema(spec, dry_run=dry_run)

    def apply(self, changes: Sequence[Change]) -> list[PushResult]:
        results = self.inner.apply(changes)
        self.report(len(changes))
        return results

    def request_deletion(self, kind: DeletionKind, value: str) -> DeletionResult:
        return self.inner.request_deletion(kind, value)


def _reporting(inner: Connector, report: Callable[[int], None]) -> Connector:
    wrapped: Connector = _Reporting(inner, report)
    return wrapped


class _Phases:
    def __init__(self, report: RunReport, progress: Progress) -> None:
        self.report, self.progress = report, progress
        self.name: str | None = None
        self.since = time.monotonic()

    def start(self, name: str) -> None:
        self.stop()
        self.name, self.since = name, time.monotonic()
        self.progress.phase(name)

    def stop(self) -> None:
        if self.name is not None:
            self.report.seconds[self.name] = time.monotonic() - self.since
            self.name = None


def run_job(project: Project, options: RunOptions = RunOptions(), *, engine: Engine | None = None,
            connectors: Mapping[str, Connector] | None = None, progress: Progress | None = None,
            clock: Callable[[], int] = wall_ms) -> RunReport:
    """Run the job once; see the module docstring. ``connectors`` (provider -> connector)
    replaces the ones built from ``[sources]`` (tests, the demo); ``engine`` the project's store.
    Raises :class:`sync.runlock.RunLocked` when another run holds the lock."""
    from sync.connect import close_connectors
    from sync.store.db import open_project_store

    own_engine = engine is None
    store = open_project_store(project) if engine is None else engine
    try:
        with single_flight(store, wait_s=options.wait_lock_s):
            built = connectors is None
            conns = dict(connectors) if connectors is not None else build_connectors(project)
            try:
                return _run(project, options, store, conns, progress or _Silent(), clock)
            finally:
                if built:
                    close_connectors(conns)
    finally:
        if own_engine:
            store.dispose()


def build_connectors(project: Project) -> dict[str, Connector]:
    """A connector for every enabled source and every enabled destination (credentials and
    base URLs from ``[sources.<provider>]``, its defaults when the table is absent)."""
    from sync.connect import configured_sources, provider_connectors

    return provider_connectors(project, [*configured_sources(project),
                                         *project.config.destinations.enabled()])


def _run(project: Project, options: RunOptions, engine: Engine, conns: Mapping[str, Connector],
         progress: Progress, clock: Callable[[], int]) -> RunReport:
    from sync.connect import configured_sources

    now = clock()
    as_of = options.as_of_ms if options.as_of_ms is not None else now
    report = RunReport(options.trigger, as_of, options.dry_run, now)
    phases = _Phases(report, progress)
    if not options.dry_run:
        report.run_id = _open_run(engine, options.trigger, as_of, now)
    finished = False
    try:
        if not options.dry_run:
            outbox.release(engine, now_ms=now, stale_of=outbox.RUN_OWNER)
        if options.push and not options.dry_run:
            report.deletions = send_remote_deletions(engine, conns, clock(), run_id=report.run_id)
        sources = [s for s in configured_sources(project) if s in conns]
        if options.pull and sources:
            phases.start("pull")
            _pull(engine, project, {s: conns[s] for s in sources}, options, report, progress)
        phases.start("evaluate")
        from sync.evaluate import evaluate

        evaluation = evaluate(engine, project, as_of, persist=not options.dry_run)
        report.sizes = {name: int(evaluation.sizes.get(name, 0)) for name in project.segments}
        report.entered, report.exited = dict(evaluation.entered), dict(evaluation.exited)
        destinations = [d for d in project.config.destinations.enabled() if d in conns]
        phases.start("schema")
        ready = _ensure_schemas(project, conns, destinations, options.dry_run, report)
        phases.start("plan")
        from sync.planning import plan_run

        report.plan = plan_run(
            engine, project, evaluation, as_of, commit=not options.dry_run, run_id=report.run_id,
            trigger=options.trigger, empty_sources=report.empty_sources,
            allow_mass_removal=True if options.allow_mass_removal else None, now_ms=clock())
        if options.push and not options.dry_run and ready:
            phases.start("push")
            _push(engine, project, conns, ready, report, progress)
        phases.stop()
        finished = True
    except BaseException as e:
        report.errors.append(f"{phases.name or 'run'}: {type(e).__name__}: {e}")
        raise
    finally:
        report.finished_ms = clock()
        if report.run_id is not None:
            _close_run(engine, report, finished)
    return report


def _pull(engine: Engine, project: Project, conns: Mapping[str, Connector], options: RunOptions,
          report: RunReport, progress: Progress) -> None:
    before = _source_state(engine, list(conns))
    report.pull = summary = pull(engine, project, conns, full=options.full_pull, progress=progress.pulled)
    for name, s in summary.sources.items():
        if s.error is not None:
            report.errors.append(f"pull from {name}: {s.error}")
            continue
        had_cursor, identities = before[name]
        if s.contacts_seen == 0 and (options.full_pull or not had_cursor) and identities > 0:
            report.empty_sources.append(name)


def _source_state(engine: Engine, sources: Sequence[str]) -> dict[str, tuple[bool, int]]:
    """source -> (has a contacts cursor, live identities it holds in the store)."""
    i = schema.identities
    out: dict[str, tuple[bool, int]] = {}
    with engine.connect() as conn:
        for name in sources:
            n = conn.execute(select(func.count()).select_from(i).where(
                i.c.provider == name, i.c.archived.is_(False))).scalar()
            out[name] = (load_cursor(conn, name, "contacts") is not None, int(n or 0))
    return out


def _ensure_schemas(project: Project, conns: Mapping[str, Connector], destinations: Sequence[str],
                    dry_run: bool, report: RunReport) -> list[str]:
    """Destinations whose schema is in place (or, in a dry run, could be put in place)."""
    from sync.desired import schema_specs

    specs = schema_specs(project)
    ready = []
    for dest in destinations:
        try:
            result = conns[dest].ensure_schema(specs[dest], dry_run=dry_run)
        except ConnectorError as e:
            report.errors.append(f"{dest} schema: {type(e).__name__}: {e}")
            continue
        report.schema[dest] = result
        if result.problems:
            report.errors.extend(f"{dest} schema: {p} (nothing is sent to {dest} until it is fixed)"
                                 for p in result.problems)
            continue
        ready.append(dest)
    return ready


def _push(engine: Engine, project: Project, conns: Mapping[str, Connector], destinations: Sequence[str],
          report: RunReport, progress: Progress) -> None:
    waiting = outbox.counts(engine)
    settings = project.config.destinations
    for dest in destinations:
        total = waiting.get((dest, outbox.PENDING), 0) + waiting.get((dest, outbox.INFLIGHT), 0)
        done = 0

        def answered(n: int, dest: str = dest, total: int = total) -> None:
            nonlocal done
            done += n
            progress.pushed(dest, done, max(total, done))

        progress.pushed(dest, 0, total)
        summary = push_destination(engine, _reporting(conns[dest], answered), report.run_id,
                                   trigger=report.trigger, max_attempts=settings.max_attempts,
                                   owner=outbox.RUN_OWNER)
        report.push.destinations[dest] = summary
        if summary.error is not None:
            report.errors.append(f"push to {dest} stopped: {summary.error} (the rest is sent by "
                                 "the next run)")


def _open_run(engine: Engine, trigger: str, as_of: int, now: int) -> int:
    runs = schema.runs
    with begin_write(engine) as conn:
        conn.execute(update(runs).where(runs.c.kind == "run", runs.c.status == "running").values(
            status="aborted", finished_at=now))
        return int(conn.execute(runs.insert().values(
            kind="run", trigger=trigger, as_of=as_of, started_at=now, status="running")
            .returning(runs.c.id)).scalar_one())


def _close_run(engine: Engine, report: RunReport, finished: bool) -> None:
    runs = schema.runs
    status = report.status if finished else "error"
    with begin_write(engine) as conn:
        conn.execute(update(runs).where(runs.c.id == report.run_id).values(
            finished_at=report.finished_ms, status=status, summary=report.to_json()))
