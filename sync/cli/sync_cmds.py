"""Sync commands: ``plan`` (the dry run), ``audit`` (the audit log), ``retry`` (dead letters).

* ``segsync plan [--as-of ISO] [--json] [--allow-mass-removal]`` — evaluates without writing,
  plans against the acknowledged state and prints the changes grouped by destination and
  segment with counts, what the mass-removal guard would hold, and the API cost estimate.
  Nothing is written and nothing is sent. ``--json``: ``sync.plan.Plan.to_json()``.
* ``segsync audit [--contact KEY] [--segment S] [--since T] [--status S] [--destination D]
  [--limit N] [--json] [--jsonl FILE]`` — ``--since`` is ISO-8601 or a duration back from
  now ("7d"); ``--json`` prints one JSON object per line; ``--jsonl FILE`` exports to a file.
* ``segsync retry [--json]`` — re-plans every dead letter from desired vs acknowledged state
  and sends what is still needed, through the connectors of the enabled destinations
  (:func:`sync.connect.open_connectors`: each needs its enabled ``[sources.<provider>]``).
  Exit 0 when everything was applied, 1 otherwise; 2 on a configuration error.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mapping.errors import InputError
from mapping.models import parse_duration
from sync.cli.engine_cmds import AsJson, AsOf, _project, _store, as_of_ms, iso

if TYPE_CHECKING:
    from connectors.base import Connector
    from sync.plan import Plan


def _out() -> Console:
    return Console(soft_wrap=True, highlight=False)


def _print_plan(plan: Plan) -> None:
    out = _out()
    table = Table(title=f"plan at {iso(plan.as_of_ms)}")
    for col in ("destination", "segment / source", "operation", "changes"):
        table.add_column(col, justify="right" if col == "changes" else "left")
    for (dest, group, op), n in plan.counts().items():
        table.add_row(dest, group, op, f"{n:,}")
    out.print(table)
    out.print(f"{len(plan.changes):,} changes to send, {len(plan.held):,} held back")
    for problem in plan.problems:
        out.print(f"[bold yellow]held:[/] {problem}", markup=True)
    for dest, c in plan.cost.items():
        share = c["daily_share"]
        quota = "" if share is None else f", {share:.3%} of the daily quota"
        out.print(f"{dest}: about {c['requests']:,} requests, {c['minutes']:.1f} min at the rate "
                  f"ceiling{quota}")


def _since(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(time.time() * 1000) - parse_duration(text)
    except ValueError:
        return as_of_ms(text)


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan_cmd(
        as_of: AsOf = None,
        as_json: AsJson = False,
        allow_mass_removal: Annotated[
            bool, typer.Option("--allow-mass-removal", help="do not hold mass removals back")
        ] = False,
    ) -> None:
        """Show the changes a run would send (nothing is written or sent)."""
        from sync.evaluate import evaluate
        from sync.planning import plan_run

        project = _project()
        engine = _store(project)
        try:
            at = as_of_ms(as_of)
            evaluation = evaluate(engine, project, at, persist=False)
            plan = plan_run(engine, project, evaluation, at, commit=False,
                            allow_mass_removal=allow_mass_removal or None)
        finally:
            engine.dispose()
        if as_json:
            sys.stdout.write(json.dumps(plan.to_json(), ensure_ascii=False, default=str) + "\n")
        else:
            _print_plan(plan)

    @app.command("audit")
    def audit_cmd(
        contact: Annotated[str | None, typer.Option("--contact", help="a contact key (email)")] = None,
        segment: Annotated[str | None, typer.Option("--segment", help="changes about this segment")] = None,
        since: Annotated[str | None, typer.Option("--since", help='ISO-8601, or a duration: "7d"')] = None,
        status: Annotated[str | None, typer.Option(
            "--status", help="applied, failed, dead or skipped")] = None,
        destination: Annotated[str | None, typer.Option("--destination", help="hubspot or klaviyo")] = None,
        limit: Annotated[int, typer.Option("--limit", help="at most this many (0: all)")] = 100,
        as_json: AsJson = False,
        jsonl: Annotated[Path | None, typer.Option("--jsonl", help="export to this JSONL file")] = None,
    ) -> None:
        """Show or export the audit log of applied, failed and skipped changes."""
        from sync import audit

        if status is not None and status not in audit.STATUSES:
            raise InputError(f"--status: expected one of {', '.join(audit.STATUSES)}, not {status!r}")
        f = audit.Filter(contact, segment, _since(since), status, destination,
                         limit=None if limit == 0 or jsonl else limit)
        project = _project()
        engine = _store(project)
        try:
            if jsonl is not None:
                n = audit.export_jsonl(engine, jsonl, f)
                _out().print(f"{n:,} audit entries written to {jsonl}")
                return
            entries = audit.query(engine, f)
        finally:
            engine.dispose()
        if as_json:
            for e in entries:
                sys.stdout.write(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n")
            return
        _print_audit(entries)

    @app.command("retry")
    def retry_cmd(as_json: AsJson = False) -> None:
        """Re-plan the dead letters and send what is still needed."""
        from sync import outbox
        from sync.connect import open_connectors
        from sync.executor import push_pending

        project = _project()
        destinations = list(project.config.destinations.enabled())
        # the destinations' connectors come from [sources.*] (a config error before the store
        # is touched or anything is sent); no destination: nothing to send, nothing to open
        opened: AbstractContextManager[dict[str, Connector]] = (
            open_connectors(project, destinations) if destinations else nullcontext({}))
        with opened as connectors:
            engine = _store(project)
            try:
                now = int(time.time() * 1000)
                requeued, dropped = outbox.retry_dead(engine, now_ms=now, destinations=destinations)
                run_id = _open_run(engine, now)
                summary = push_pending(engine, connectors, run_id, trigger="manual",
                                       max_attempts=project.config.destinations.max_attempts)
                _close_run(engine, run_id, "ok" if summary.ok else "partial", summary.to_json())
            finally:
                engine.dispose()
        result = {"requeued": requeued, "dropped": dropped, "push": summary.to_json()}
        if as_json:
            sys.stdout.write(json.dumps(result) + "\n")
        else:
            _out().print(f"{requeued:,} dead letters re-sent ({dropped:,} no longer needed): "
                         f"{summary.applied:,} applied, {summary.failed:,} to retry, "
                         f"{summary.dead:,} dead")
        if not summary.ok:
            raise typer.Exit(1)


def _print_audit(entries: list[dict[str, Any]]) -> None:
    table = Table()
    for col in ("time", "run", "contact", "destination", "record", "target", "old", "new", "status",
                "reason"):
        table.add_column(col)
    for e in entries:
        table.add_row(iso(e["at"]), str(e["run_id"] or ""), e["contact_key"] or "", e["destination"],
                      e["record_id"], e["target"], json.dumps(e["old_value"]),
                      json.dumps(e["new_value"]), e["status"], e["reason"] or "")
    _out().print(table)


def _open_run(engine: Any, now: int) -> int:
    from sync.store import schema
    from sync.store.tx import begin_write

    with begin_write(engine) as conn:
        return int(conn.execute(schema.runs.insert().values(
            kind="retry", trigger="manual", started_at=now, status="running")
            .returning(schema.runs.c.id)).scalar_one())


def _close_run(engine: Any, run_id: int, status: str, summary: dict[str, Any]) -> None:
    from sync.store import schema
    from sync.store.tx import begin_write

    with begin_write(engine) as conn:
        conn.execute(schema.runs.update().where(schema.runs.c.id == run_id).values(
            finished_at=int(time.time() * 1000), status=status, summary=summary))
