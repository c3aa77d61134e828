"""``segsync run`` (the job once: pull, evaluate, plan, push) and ``segsync serve`` (the job on
the ``[schedule]``, plus the HTTP service of ``[service]``).

* ``segsync run [--dry-run] [--allow-mass-removal] [--as-of ISO] [--no-pull] [--full]
  [--trigger schedule|manual] [--wait SECONDS] [--json]`` — progress on stderr while it runs,
  then a summary table (``--json``: :meth:`sync.run.RunReport.to_json`). Exit 0: done;
  3: partial (records rejected or dead-lettered, retries left, removals held by the guard);
  1: error (a source or destination failed, another run holds the lock); 2: bad configuration.
* ``segsync serve [--host H] [--port P]`` — with a ``[schedule]`` table, runs the job on it;
  with a ``[service]`` table, also serves webhooks and ``POST /events`` (:mod:`sync.service`);
  with neither, runs the job every 15 minutes. Stops on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from mapping.errors import InputError
from sync.cli.engine_cmds import AsJson, AsOf, _project, _store, as_of_ms, iso

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from mapping.project import Project
    from sync.pull import PullProgress
    from sync.run import RunReport, Trigger
    from sync.schedule import Scheduler

LOG = logging.getLogger("segsync.serve")
TRIGGERS = ("manual", "schedule", "webhook")


class Bars:
    """:class:`sync.run.Progress` drawn with rich: a spinner per phase, a line per pulled
    stream, a bar per destination being pushed to."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.current: str | None = None

    def _task(self, key: str, description: str, total: float | None = None) -> TaskID:
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(description, total=total)
        return self.tasks[key]

    def phase(self, name: str) -> None:
        if self.current is not None:
            task = self.tasks[f"phase:{self.current}"]
            self.progress.update(task, total=1, completed=1, description=f"{self.current}: done")
        self.current = name
        self._task(f"phase:{name}", f"{name} ...")

    def pulled(self, update: PullProgress) -> None:
        task = self._task(f"pull:{update.source}:{update.stream}", "")
        state = "done" if update.done else "pulling"
        self.progress.update(task, description=f"  {update.source} {update.stream}: {update.pages:,} "
                             f"pages, {update.records:,} records ({state})")
        if update.done:
            self.progress.update(task, total=1, completed=1)

    def pushed(self, destination: str, done: int, total: int) -> None:
        task = self._task(f"push:{destination}", "", total=max(total, 1))
        self.progress.update(task, total=max(total, 1), completed=done,
                             description=f"  {destination}: {done:,} of {total:,} changes answered")


def progress_bars(console: Console, enabled: bool) -> Progress:
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=24),
               TimeElapsedColumn())
    return Progress(*columns, console=console, transient=True, disable=not enabled)


def summary_table(report: RunReport) -> Table:
    """Per destination: what was planned, sent, confirmed, left to retry, dead and held."""
    title = "run" + (f" {report.run_id}" if report.run_id else "") + (" (dry run)" if report.dry_run else "")
    table = Table(title=f"{title} as of {iso(report.as_of_ms)}: {report.status}")
    columns = ("destination", "planned", "applied", "to retry", "dead", "held", "requests (est.)")
    for col in columns:
        table.add_column(col, justify="left" if col == "destination" else "right")
    cost = report.plan.cost if report.plan else {}
    for dest in sorted(set(cost) | set(report.push.destinations)):
        push = report.push.destinations.get(dest)
        sent = ("-", "-", "-") if push is None else (
            f"{push.applied:,}", f"{push.failed:,}", f"{push.dead:,}")
        requests = cost.get(dest, {}).get("requests")
        table.add_row(dest, f"{report.planned(dest):,}", *sent, f"{report.held(dest):,}",
                      "-" if requests is None else f"{requests:,}")
    return table


def print_report(console: Console, report: RunReport) -> None:
    if report.pull is not None:
        parts = [f"{name}: {s.contacts_new:,} new and {s.contacts_updated:,} updated contacts, "
                 f"{s.events_new:,} new events" for name, s in report.pull.sources.items()]
        console.print("pulled " + "; ".join(parts))
    moved = sum(report.entered.values()) + sum(report.exited.values())
    console.print(f"evaluated {len(report.sizes)} segments: {sum(report.entered.values()):,} entries, "
                  f"{sum(report.exited.values()):,} exits" + ("" if moved else " (no change)"))
    for dest, schema in report.schema.items():
        made = [*schema.created_fields, *(f"list {n!r}" for n in schema.created_lists)]
        if made:
            verb = "would create" if report.dry_run else "created"
            console.print(f"{dest}: {verb} {', '.join(made)}")
    console.print(summary_table(report))
    d = report.deletions
    if d.sent or d.stopped:
        stopped = "".join(f"; {name} stopped: {why}" for name, why in d.stopped.items())
        console.print(f"privacy deletions: {d.count('done')} requested, {d.count('rejected')} rejected, "
                      f"{d.pending} pending{escape(stopped)}")
    if report.plan is not None:
        for problem in report.plan.problems:
            console.print(f"[bold yellow]held:[/] {escape(problem)}", markup=True)
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items())
    console.print(f"took {(report.finished_ms - report.started_ms) / 1000:.1f} s ({seconds})")


def _report_errors(report: RunReport) -> None:
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    for error in report.errors:
        err.print(f"[bold red]error:[/] {escape(error)}", markup=True)


def _run(dry_run: Annotated[bool, typer.Option(
             "--dry-run", help="show what would be sent; send nothing")] = False,
         allow_mass_removal: Annotated[bool, typer.Option(
             "--allow-mass-removal", help="send removals even beyond the mass-removal guard")] = False,
         as_of: AsOf = None,
         no_pull: Annotated[bool, typer.Option("--no-pull", help="use the store as it is")] = False,
         full: Annotated[bool, typer.Option("--full", help="re-read everything from the sources")] = False,
         trigger: Annotated[str, typer.Option("--trigger", help="recorded in the audit log: manual, "
                                              "schedule (cron) or webhook")] = "manual",
         wait: Annotated[float, typer.Option("--wait", min=0, help="seconds to wait for a run in "
                                             "progress to finish (default: give up at once)")] = 0.0,
         as_json: AsJson = False) -> None:
    """Pull, evaluate, plan and push once (the job to run from cron)."""
    from sync.run import RunOptions, run_job

    if trigger not in TRIGGERS:
        raise InputError(f"--trigger: expected one of {', '.join(TRIGGERS)}, not {trigger!r}")
    project = _project()
    options = RunOptions(trigger=cast("Trigger", trigger),
                         as_of_ms=None if as_of is None else as_of_ms(as_of), pull=not no_pull,
                         full_pull=full, dry_run=dry_run,
                         allow_mass_removal=allow_mass_removal, wait_lock_s=wait)
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    engine = _store(project)
    try:
        with progress_bars(err, err.is_terminal and not as_json) as bars:
            report = run_job(project, options, engine=engine, progress=Bars(bars))
    finally:
        engine.dispose()
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False, default=str) + "\n")
    else:
        print_report(Console(soft_wrap=True, highlight=False), report)
    _report_errors(report)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _scheduled_job(project: Project, engine: Engine) -> None:
    from sync.run import RunOptions, run_job

    report = run_job(project, RunOptions(trigger="schedule"), engine=engine)
    planned = len(report.plan.changes) if report.plan else 0
    LOG.info("run %s: %s in %.1f s: %d changes planned, %d applied, %d to retry, %d dead, %d held",
             report.run_id, report.status, (report.finished_ms - report.started_ms) / 1000, planned,
             report.push.applied, report.push.failed, report.push.dead,
             len(report.plan.held) if report.plan else 0)
    for error in report.errors:
        LOG.error("run %s: %s", report.run_id, error)


def _serve(host: Annotated[str | None, typer.Option("--host", help="default: [service] host")] = None,
           port: Annotated[int | None, typer.Option("--port", help="default: [service] port; 0: any")] = None,
           worker_delay: Annotated[float, typer.Option("--worker-delay", hidden=True)] = 0.0) -> None:
    """Run the job on the [schedule] and, with a [service] table, the webhook service."""
    from sync.schedule import Scheduler, from_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    project = _project()
    given = project.config.model_fields_set
    http = "service" in given
    engine = _store(project)
    scheduler = None
    if "schedule" in given or not http:
        cfg = project.config.schedule
        scheduler = Scheduler(from_config(cfg), lambda: _scheduled_job(project, engine),
                              run_at_start=cfg.run_at_start)
    try:
        if scheduler is not None and not http:
            _until_signal(scheduler)
            return
        thread = None
        if scheduler is not None:
            thread = threading.Thread(target=scheduler.run, name="segsync-scheduler", daemon=True)
            thread.start()
        _serve_http(project, engine, host, port, worker_delay)
        if scheduler is not None and thread is not None:
            scheduler.stop()
            thread.join(timeout=30)
    finally:
        engine.dispose()


def _serve_http(project: Project, engine: Engine, host: str | None, port: int | None,
                worker_delay: float) -> None:
    from sync.service import app as service

    def listening(url: str) -> None:
        sys.stderr.write(f"segsync serve: listening on {url}\n")
        sys.stderr.flush()

    service.serve(project, host, port, engine=engine, worker_delay_s=worker_delay, on_listening=listening)


def _until_signal(scheduler: Scheduler) -> None:
    def stop(signum: int, frame: FrameType | None) -> None:
        LOG.info("stopping after the run in progress (signal %d)", signum)
        scheduler.stop()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        scheduler.run()
    except KeyboardInterrupt:
        LOG.info("interrupted")
    finally:
        signal.signal(signal.SIGTERM, previous)


def register(app: typer.Typer) -> None:
    """Add ``run`` and ``serve`` to ``app``."""
    app.command("run")(_run)
    app.command("serve")(_serve)
