"""Real-time commands: ``forget`` (privacy deletion) and, unless another module registered it
first, ``serve`` (the HTTP service alone; see :mod:`sync.service`).

* ``segsync forget KEY [--json]`` — KEY is an email, ``hubspot:<id>``, ``klaviyo:<id>``,
  ``external_id:<id>`` or ``contact:<n>``. Removes the person's local data and records hashed
  suppressions so no later pull, import or webhook brings them back; prints what was removed
  and, for the providers in ``[service] forget_remote``, what must still be requested there.
* ``segsync serve [--host H] [--port P]`` — webhooks, ``POST /events``, ``/healthz`` and
  ``/metrics``; stops on Ctrl-C / SIGTERM. Prints ``listening on URL`` on stderr when bound.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Annotated

import typer
from rich.console import Console

from sync.cli.engine_cmds import AsJson, _project, _store


def register(app: typer.Typer) -> None:
    @app.command("forget")
    def forget_cmd(
        key: Annotated[str, typer.Argument(help="email, hubspot:<id>, klaviyo:<id> or external_id:<id>")],
        as_json: AsJson = False,
    ) -> None:
        """Delete a person's local data and suppress them (GDPR / CCPA erasure)."""
        from sync.service.forget import forget, remote_deletion_notes

        project = _project()
        engine = _store(project)
        try:
            report = forget(engine, key, now_ms=int(time.time() * 1000))
        finally:
            engine.dispose()
        notes = remote_deletion_notes(project.config.service.forget_remote, report)
        counts = {"contacts": report.contacts, "identities": report.identities, "events": report.events,
                  "destination_values": report.destination_values, "queued_pushes": report.queued_pushes,
                  "new_suppressions": report.suppressed}
        if as_json:
            sys.stdout.write(json.dumps({**counts, "notes": notes}) + "\n")
            return
        out = Console(soft_wrap=True, highlight=False)
        out.print("forgot: " + ", ".join(f"{n:,} {name.replace('_', ' ')}" for name, n in counts.items()))
        for note in notes:
            out.print(f"[bold yellow]note:[/] {note}", markup=True)

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
