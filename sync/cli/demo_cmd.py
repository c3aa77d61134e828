"""``segsync demo [--dir segsync-demo]``: the whole product against the local sandbox
(:mod:`sync.demo`). Exit codes as ``segsync run``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="where the demo's config and store are written")
    ] = Path("segsync-demo"),
    contacts: Annotated[int, typer.Option(min=1, help="synthetic contacts in the sandbox")] = 5000,
    seed: Annotated[int, typer.Option(help="seed of the sandbox's data set")] = 0,
    events_per_contact: Annotated[
        float | None, typer.Option(min=0.1, help="average activity per contact (default: the sandbox's)")
    ] = None,
) -> None:
    """Start a local HubSpot + Klaviyo sandbox and run the whole job on config.example.toml."""
    from sync.demo import run_demo

    out = Console(soft_wrap=True, highlight=False)
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    report = run_demo(directory, out, err, contacts=contacts, seed=seed,
                      events_per_contact=events_per_contact)
    if report.exit_code:
        raise typer.Exit(report.exit_code)
