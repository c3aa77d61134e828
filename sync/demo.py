"""``segsync demo``: the whole product against the local sandbox, in under a minute.

1. start the HubSpot and Klaviyo stand-ins in this process (:mod:`connectors.sandbox`,
   5,000 synthetic contacts with a season of activity, real rate limits);
2. copy ``config.example.toml`` to ``<dir>/config.toml`` with a fresh store
   ``<dir>/segsync.db`` (``./segsync-demo/`` by default);
3. set ``HUBSPOT_TOKEN`` / ``KLAVIYO_API_KEY`` to the sandbox's credentials and point the
   sources' ``base_url`` at it (in memory; the copied file stays the example);
4. run the job of ``segsync run`` once (:func:`sync.run.run_job`): pull, evaluate, create the
   fields and lists, plan, push;
5. print the segment sizes, the changes per destination, the API calls used against each
   provider's ceiling (from the sandbox's request log), one ``explain``, and where the audit
   log is.

Afterwards the store stays for local commands (``segments``, ``explain``, ``audit``); the
sandbox is gone, so commands that call the providers would need it again (``segsync sandbox``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.table import Table

from connectors.budget import KLAVIYO_LIMITS
from connectors.klaviyo.calls import OPERATIONS
from mapping.errors import InputError
from mapping.project import Project
from sync.run import RunReport

__all__ = ["READ_ROUTES", "Usage", "find_example", "is_write", "run_demo", "sandbox_project", "usage"]

HUBSPOT_PER_10S = 190
# Requests that read although their method is POST (HubSpot search and batch reads).
READ_ROUTES = frozenset({"contacts.search", "contacts.batch.read", "properties.batch.read"})


def find_example(name: str = "config.example.toml") -> Path:
    """``config.example.toml`` of the working directory, else of the source tree."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (base / name).is_file():
            return base / name
    raise InputError(f"cannot find {name}: run the demo from a clone of segsync (or its root)")


def is_write(entry: dict[str, Any]) -> bool:
    """Is a sandbox request-log entry a write to the provider (not a read, not control)?"""
    route = str(entry["route"])
    if route.startswith(("sandbox.", "_sandbox.")):
        return False
    return entry["method"] != "GET" and route not in READ_ROUTES


def request_log(url: str, since_ms: int = 0) -> list[dict[str, Any]]:
    """The sandbox stand-in's request log (oldest first), control requests left out."""
    response = requests.get(f"{url}/_sandbox/log", params={"since": since_ms}, timeout=30)
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()["entries"]
    return [e for e in entries if not str(e["route"]).startswith(("sandbox.", "_sandbox."))]


@dataclass(frozen=True)
class Usage:
    """The requests one stand-in received, against the provider's ceiling."""

    provider: str
    requests: int
    writes: int
    throttled: int  # 429 answers
    peak: int  # most requests in any window of `window_s`
    window_s: float
    ceiling: int  # allowed per window (the busiest endpoint class's, for Klaviyo)
    busiest: str  # Klaviyo: the endpoint class with the most requests

    def line(self) -> str:
        where = f" ({self.busiest})" if self.busiest else ""
        return (f"{self.provider}: {self.requests:,} requests ({self.writes:,} writes); busiest "
                f"{self.window_s:g} s{where}: {self.peak:,} of {self.ceiling:,} allowed; "
                f"{self.throttled:,} throttled (429)")


def _peak(times_ms: Sequence[int], window_ms: int) -> int:
    best, start = 0, 0
    ordered = sorted(times_ms)
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window_ms:
            start += 1
        best = max(best, end - start + 1)
    return best


def usage(provider: str, entries: Iterable[dict[str, Any]]) -> Usage:
    items = list(entries)
    writes = sum(1 for e in items if is_write(e))
    throttled = sum(1 for e in items if e["status"] == 429)
    if provider == "hubspot":
        times = [int(e["at_ms"]) for e in items]
        return Usage(provider, len(items), writes, throttled, _peak(times, 10_000), 10, HUBSPOT_PER_10S, "")
    by_class: dict[str, list[int]] = {}
    for e in items:
        cls = OPERATIONS.get(str(e["route"]), ("other", None))[0]
        by_class.setdefault(cls, []).append(int(e["at_ms"]))
    if not by_class:
        return Usage(provider, 0, 0, 0, 0, 60, 0, "")
    busiest = max(by_class, key=lambda c: len(by_class[c]))
    ceiling = KLAVIYO_LIMITS.get(busiest, (0, 0, None))[1]
    return Usage(provider, len(items), writes, throttled, _peak(by_class[busiest], 60_000), 60, ceiling,
                 busiest)


def sandbox_project(project: Project, hubspot_url: str, klaviyo_url: str) -> Project:
    """``project`` with its sources pointed at the sandbox."""
    from mapping.models import HubSpotSource, KlaviyoSource

    sources = project.config.sources
    hub = (sources.hubspot or HubSpotSource()).model_copy(update={"base_url": hubspot_url})
    kla = (sources.klaviyo or KlaviyoSource()).model_copy(update={"base_url": klaviyo_url})
    config = project.config.model_copy(
        update={"sources": sources.model_copy(update={"hubspot": hub, "klaviyo": kla})})
    return dataclasses.replace(project, config=config)


def _fresh(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.glob("segsync.db*"):
        leftover.unlink()
    config = directory / "config.toml"
    shutil.copyfile(find_example(), config)
    return config


def run_demo(directory: Path, out: Console, err: Console, *, contacts: int = 5000, seed: int = 0,
             events_per_contact: float | None = None) -> RunReport:
    """The demo; see the module docstring. Returns the run's report."""
    from connectors.sandbox import start_sandbox
    from mapping.config import load_project
    from sync.cli.run_cmds import Bars, print_report, progress_bars
    from sync.run import RunOptions, run_job
    from sync.store.db import open_project_store

    config_path = _fresh(directory)
    with err.status(f"starting the sandbox: {contacts:,} contacts and their activity"):
        sandbox = start_sandbox(contacts, seed, events_per_contact=events_per_contact)
    with sandbox:
        os.environ["HUBSPOT_TOKEN"] = sandbox.hubspot_token
        os.environ["KLAVIYO_API_KEY"] = sandbox.klaviyo_key
        project = sandbox_project(load_project(config_path), sandbox.hubspot_url, sandbox.klaviyo_url)
        out.print(f"[bold]segsync demo[/]: sandbox HubSpot {sandbox.hubspot_url} and Klaviyo "
                  f"{sandbox.klaviyo_url}, config {config_path}", markup=True)
        engine = open_project_store(project)
        try:
            with progress_bars(err, err.is_terminal) as bars:
                report = run_job(project, RunOptions(), engine=engine, progress=Bars(bars))
            out.print(_sizes(report))
            print_report(out, report)
            out.print("\n[bold]API calls[/] (the sandbox's request log)", markup=True)
            for provider, url in (("hubspot", sandbox.hubspot_url), ("klaviyo", sandbox.klaviyo_url)):
                out.print("  " + usage(provider, request_log(url)).line())
            _explain_one(out, engine, project, report)
        finally:
            engine.dispose()
    store = directory / "segsync.db"
    out.print(f"\naudit log: every change above is in {store} (table audit_log):\n"
              f"  segsync --config {config_path} audit --limit 20\n"
              f"  segsync --config {config_path} segments")
    for error in report.errors:
        err.print(f"error: {error}")
    return report


def _sizes(report: RunReport) -> Table:
    table = Table(title="segments")
    for col in ("segment", "members", "entered"):
        table.add_column(col, justify="left" if col == "segment" else "right")
    for name, size in report.sizes.items():
        table.add_row(name, f"{size:,}", f"{report.entered.get(name, 0):,}")
    return table


def _explain_one(out: Console, engine: Any, project: Project, report: RunReport) -> None:
    """Explain one member of the abandoned-cart segment (else of the smallest segment)."""
    from sqlalchemy import select

    from sync.evaluate import explain
    from sync.store import schema

    sizes = {n: s for n, s in report.sizes.items() if s}
    if not sizes:
        return
    segment = "cart_abandoned" if "cart_abandoned" in sizes else min(sizes, key=lambda n: sizes[n])
    m, c = schema.memberships, schema.contacts
    with engine.connect() as conn:
        row = conn.execute(select(c.c.id, c.c.email, c.c.external_id).join(m, m.c.contact_id == c.c.id)
                           .where(m.c.segment == segment, m.c.exited_at.is_(None))
                           .order_by(c.c.email).limit(1)).first()
    if row is None:
        return
    out.print(f"\n[bold]why is {row.email or row.external_id} in {segment}?[/] "
              f"(segsync explain {row.email or row.external_id})", markup=True)
    out.print(explain(engine, project, int(row.id), report.as_of_ms))
