"""Real-time commands: ``forget`` (privacy deletion) and, unless another module registered it
first, ``serve`` (the HTTP service alone; see :mod:`sync.service`).

* ``segsync forget KEY [--json]`` — KEY is an email, ``hubspot:<id>``, ``klaviyo:<id>``,
  ``external_id:<id>`` or ``contact:<n>``. Removes the person's local data and records hashed
  suppressions so no later pull, import or webhook brings them back; with ``[service]
  forget_remote``, queues a deletion request for each of those providers in the same
  transaction and sends it at once (:mod:`sync.remote_delete`). Prints what was removed and
  each request's state: requested, rejected, or queued (provider unreachable, secret missing:
  ``segsync run`` / ``serve`` send it later; the exit code is 0 all the same).
* ``segsync serve [--host H] [--port P]`` — webhooks, ``POST /events``, ``/healthz`` and
  ``/metrics``; stops on Ctrl-C / SIGTERM. Prints ``listening on URL`` on stderr when bound.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from sync.cli.engine_cmds import AsJson, _project, _store


def register(app: typer.Typer) -> None:
    @app.command("forget")
    def forget_cmd(
        key: Annotated[str, typer.Argument(help="email, hubspot:<id>, klaviyo:<id> or external_id:<id>")],
        as_json: AsJson = False,
    ) -> None:
        """Delete a person's local data and suppress them (GDPR / CCPA erasure); with [service]
        forget_remote, also request the deletion in those providers."""
        from sync.remote_delete import forget_and_request

        project = _project()
        engine = _store(project)
        try:
            report, requests = forget_and_request(engine, project, key)
        finally:
            engine.dispose()
        counts = {"contacts": report.contacts, "identities": report.identities, "events": report.events,
                  "destination_values": report.destination_values, "queued_pushes": report.queued_pushes,
                  "new_suppressions": report.suppressed}
        if as_json:
            body = {**counts, "remote_deletions": [r.to_json() for r in requests], "notes": report.notes}
            sys.stdout.write(json.dumps(body) + "\n")
            return
        out = Console(soft_wrap=True, highlight=False)
        out.print("forgot: " + ", ".join(f"{n:,} {name.replace('_', ' ')}" for name, n in counts.items()))
        for r in requests:
            who = f"record {r.record}" if r.record else "by email"
            if r.status == "done":
                out.print(f"{r.provider}: deletion requested ({who})")
            elif r.status == "rejected":
                out.print(f"[bold red]{r.provider}:[/] deletion rejected ({who}): {escape(r.error or '')}",
                          markup=True)
            else:
                why = escape(f": {r.error}" if r.error else "")
                out.print(f"[bold yellow]{r.provider}:[/] deletion queued, not sent yet ({who}){why}; "
                          "`segsync run` or `segsync serve` sends it", markup=True)
        for note in report.notes:
            out.print(f"[bold yellow]note:[/] {escape(note)}", markup=True)

    if any(c.name == "serve" for c in app.registered_commands):
        return

    @app.command("serve")
    def serve_cmd(
        host: Annotated[str | None, typer.Option("--host", help="default: [service] host")] = None,
        port: Annotated[int | None, typer.Option("--port", help="default: [service] port; 0: any")] = None,
        worker_delay: Annotated[float, typer.Option("--worker-delay", hidden=True)] = 0.0,
    ) -> None:
        """Run the real-time service: webhooks and events in, affected contacts re-evaluated."""
        from sync.service.app import serve

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        project = _project()

        def listening(url: str) -> None:
            sys.stderr.write(f"segsync serve: listening on {url}\n")
            sys.stderr.flush()

        serve(project, host, port, engine=_store(project), worker_delay_s=worker_delay,
              on_listening=listening)
