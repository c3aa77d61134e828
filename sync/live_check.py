"""``segsync validate --live``: every mapping checked against the destination's real schema.

::

    live_check(project, connectors=None) -> list[LiveResult]

For each enabled destination, its connector's ``ensure_schema(spec, dry_run=True)`` reads the
account's properties and lists and reports, without writing anything, what a run would create
(fields, enumeration options, lists) and what disagrees: a property that exists with another
type or field type, a dynamic list where a list must be written, a field Klaviyo reserves. A
provider that cannot be reached (bad token, network) is reported as that destination's error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from connectors.base import Connector, SchemaReport
from connectors.errors import ConnectorError
from mapping.errors import ConfigError, Location, Problem
from mapping.project import Project

__all__ = ["LiveResult", "live_check", "raise_mismatches"]


@dataclass(frozen=True)
class LiveResult:
    destination: str
    report: SchemaReport = field(default_factory=SchemaReport)
    error: str | None = None  # the provider could not be asked

    @property
    def ok(self) -> bool:
        return self.error is None and not self.report.problems

    def lines(self) -> list[str]:
        if self.error is not None:
            return [f"{self.destination}: cannot check: {self.error}"]
        r = self.report
        out = [f"{self.destination}: {verb} {', '.join(names)}" for verb, names in (
            ("would create the fields", r.created_fields), ("would create the lists", r.created_lists))
            if names]
        out += [f"{self.destination}: would add to {name} the options {', '.join(opts)}"
                for name, opts in r.added_options.items()]
        if not out and not r.problems:
            out.append(f"{self.destination}: every field and list is in place")
        return out


def live_check(project: Project, connectors: Mapping[str, Connector] | None = None) -> list[LiveResult]:
    """Ask every enabled destination what a run would change in its schema (nothing is written)."""
    from sync.connect import close_connectors
    from sync.desired import schema_specs
    from sync.run import build_connectors

    specs = schema_specs(project)
    conns = dict(connectors) if connectors is not None else build_connectors(project)
    try:
        out = []
        for dest, spec in specs.items():
            try:
                out.append(LiveResult(dest, conns[dest].ensure_schema(spec, dry_run=True)))
            except ConnectorError as e:
                out.append(LiveResult(dest, error=f"{type(e).__name__}: {e}"))
        return out
    finally:
        if connectors is None:
            close_connectors(conns)


def raise_mismatches(results: list[LiveResult]) -> None:
    """A :class:`ConfigError` listing every mapping the destinations disagree with."""
    problems = [Problem(Location(path=f"destinations.{r.destination}"), p)
                for r in results for p in r.report.problems]
    if problems:
        raise ConfigError(problems=problems)
