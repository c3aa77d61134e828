"""``segsync validate``: load and check the configuration, print a summary or every problem.

Exit 0 with one summary line; on a bad configuration every problem is printed (by
:func:`sync.cli.main`, one line each with ``file:line:column path: reason``) and the exit code
is 2. Nothing is written anywhere. ``--live`` also asks each destination what a run would
create and what disagrees with the mappings (:mod:`sync.live_check`): exit 2 listing every
mismatch, 1 when a destination cannot be reached.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from mapping.config import load_project
from mapping.project import Project


def summary(project: Project) -> str:
    """``ok: 14 segments, 6 event types, ...`` (only the kinds that are declared)."""
    counts = [
        (len(project.segments), "segment"),
        (len(project.events), "event type"),
        (len(project.attributes), "attribute"),
        (len(project.traits), "trait"),
        (len(project.scores), "score"),
        (len(project.groups), "group"),
        (len(project.fields), "field"),
    ]
    parts = [f"{n} {word}{'' if n == 1 else 's'}" for n, word in counts if n]
    if project.rfm is not None:
        parts.append(f"rfm on {project.rfm.event!r}")
    return "ok: " + (", ".join(parts) if parts else "an empty configuration")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""

    @app.command()
    def validate(
        live: Annotated[bool, typer.Option(
            "--live", help="also check every mapping against the destinations' real schema "
            "(reads only; sync.live_check)")] = False,
    ) -> None:
        """Check the configuration and every rule in it; exit 2 listing all problems."""
        from sync.cli import state

        project = load_project(state.config_path)
        console = Console(soft_wrap=True, highlight=False, markup=False)
        console.print(f"{summary(project)} ({state.config_path})")
        if live:
            from sync.live_check import live_check, raise_mismatches

            results = live_check(project)
            for result in results:
                for line in result.lines():
                    console.print(line)
            raise_mismatches(results)
            if any(r.error for r in results):
                raise typer.Exit(1)
