"""``segsync validate``: load and check the configuration, print a summary or every problem.

Exit 0 with one summary line; on a bad configuration every problem is printed (by
:func:`sync.cli.main`, one line each with ``file:line:column path: reason``) and the exit code
is 2. Nothing is written anywhere.
"""

from __future__ import annotations

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
    def validate() -> None:
        """Check the configuration and every rule in it; exit 2 listing all problems."""
        from sync.cli import state

        project = load_project(state.config_path)
        Console(soft_wrap=True).print(f"{summary(project)} ({state.config_path})", highlight=False)
