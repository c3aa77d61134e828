"""Build the configured connectors (``[sources.hubspot]``, ``[sources.klaviyo]``) of a project.

``open_connectors(project, sources)`` is a context manager yielding ``{provider: Connector}``
for the enabled sources (all of them, or the ones named), closed afterwards;
``provider_connectors(project, providers)`` builds the named providers' connectors whether they
are sources or destinations only (a table that is absent gives its defaults). Secrets come from
the environment (``token = "env:NAME"``, resolved by :func:`mapping.models.resolve_secret`);
a missing variable or an unknown source is a :class:`ConfigError`, raised before any request.

What each connector is asked for:

* HubSpot: the configured ``properties``, the fields the attribute map reads
  (:meth:`sync.pull_map.SourceMap.fields`) and ``hs_merged_object_ids`` (merges, see
  :mod:`sync.identity`); email event types from ``[events.T] aliases.hubspot``, and for a
  declared event type without HubSpot aliases the connector's default name for it
  (``email_opened`` <- ``OPEN``, ...; ``connectors.hubspot.DEFAULT_EVENT_TYPES``).
* Klaviyo: the metrics of ``[events.T] aliases.klaviyo``; a name in ``sources.klaviyo.metrics``
  that no alias covers is pulled as the declared event type of the same name, else refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from connectors.base import Connector
from connectors.retry import RetryPolicy, RetrySettings
from mapping.errors import ConfigError, Location, Problem
from mapping.models import HubSpotSource, KlaviyoSource, resolve_secret
from mapping.project import Project
from sync.pull_map import MERGED_IDS_PROPERTY, SourceMap

__all__ = ["PROVIDERS", "build_connectors", "configured_sources", "open_connectors", "provider_connectors"]

PROVIDERS = ("hubspot", "klaviyo")


def configured_sources(project: Project) -> list[str]:
    """The providers with an enabled ``[sources.<provider>]`` table, in a fixed order."""
    sources = project.config.sources
    return [name for name in PROVIDERS
            if (cfg := getattr(sources, name)) is not None and cfg.enabled]


def _aliases(project: Project, provider: str) -> dict[str, list[str]]:
    """declared event type -> its ``aliases.<provider>`` names."""
    out: dict[str, list[str]] = {}
    for event_type, cfg in project.config.events.items():
        for prov, names in cfg.aliases.items():
            if prov == provider and names:
                out[event_type] = list(names)
    return out


def hubspot_event_types(project: Project) -> dict[str, str]:
    from connectors.hubspot import DEFAULT_EVENT_TYPES

    aliases = _aliases(project, "hubspot")
    types = {name: event_type for event_type, names in aliases.items() for name in names}
    for name, event_type in DEFAULT_EVENT_TYPES.items():
        if event_type in project.events and event_type not in aliases:
            types.setdefault(name, event_type)
    return types


def klaviyo_metrics(project: Project, cfg: KlaviyoSource) -> dict[str, list[str]]:
    metrics = _aliases(project, "klaviyo")
    covered = {name for names in metrics.values() for name in names}
    problems = []
    for n, name in enumerate(cfg.metrics):
        if name in covered:
            continue
        if name in project.events:
            metrics.setdefault(name, []).append(name)
            continue
        problems.append(Problem(
            Location(path=f"sources.klaviyo.metrics[{n}]"),
            f"metric {name!r} maps to no declared event type",
            f'add it to an event type\'s aliases, e.g. [events.T] aliases = {{klaviyo = ["{name}"]}}'))
    if problems:
        raise ConfigError(problems=problems)
    return metrics


def _hubspot(project: Project, cfg: HubSpotSource, retry: RetryPolicy | None = None) -> Connector:
    from connectors.hubspot import HubSpotConnector

    token = resolve_secret(cfg.token, "sources.hubspot.token")
    fields = SourceMap.build(project, "hubspot").fields()
    properties = list(dict.fromkeys([*cfg.properties, *fields, MERGED_IDS_PROPERTY]))
    return HubSpotConnector(token, cfg.base_url, properties, email_events=cfg.email_events,
                            unified_events=cfg.unified_events,
                            event_types=hubspot_event_types(project), retry=retry)


def _klaviyo(project: Project, cfg: KlaviyoSource, retry: RetryPolicy | None = None) -> Connector:
    from connectors.klaviyo import KlaviyoConnector

    key = resolve_secret(cfg.api_key, "sources.klaviyo.api_key")
    SourceMap.build(project, "klaviyo")  # an unknown attribute is refused before any request
    return KlaviyoConnector(key, cfg.base_url, metrics=klaviyo_metrics(project, cfg), retry=retry)


def provider_connectors(project: Project, providers: Sequence[str], *,
                        retry: RetrySettings | None = None) -> dict[str, Connector]:
    """Connectors of ``providers`` (sources or destinations only): credentials and base URL
    from ``[sources.<provider>]``, its defaults when the table is absent. ``retry`` bounds
    the retry policy of each (default: ``RetrySettings()``)."""
    from mapping.models import HubSpotSource, KlaviyoSource

    unknown = [name for name in providers if name not in PROVIDERS]
    if unknown:
        raise ConfigError(problems=[
            Problem(Location(), f"unknown provider {name!r} (known: hubspot, klaviyo)") for name in unknown])
    out: dict[str, Connector] = {}
    try:
        for name in dict.fromkeys(providers):
            policy = None if retry is None else RetryPolicy(name, retry)
            if name == "hubspot":
                out[name] = _hubspot(project, project.config.sources.hubspot or HubSpotSource(), policy)
            else:
                out[name] = _klaviyo(project, project.config.sources.klaviyo or KlaviyoSource(), policy)
    except BaseException:
        close_connectors(out)
        raise
    return out


def build_connectors(project: Project, sources: Sequence[str] | None = None) -> dict[str, Connector]:
    """The connectors of ``sources`` (default: every enabled source), not yet used."""
    enabled = configured_sources(project)
    wanted = list(dict.fromkeys(sources)) if sources else enabled
    problems = []
    for name in wanted:
        if name not in PROVIDERS:
            problems.append(Problem(Location(), f"unknown source {name!r} (known: hubspot, klaviyo)"))
        elif name not in enabled:
            problems.append(Problem(Location(path=f"sources.{name}"),
                                    f"source {name!r} is not configured or not enabled"))
    if problems:
        raise ConfigError(problems=problems)
    out: dict[str, Connector] = {}
    try:
        for name in wanted:
            cfg = getattr(project.config.sources, name)
            out[name] = _hubspot(project, cfg) if name == "hubspot" else _klaviyo(project, cfg)
    except BaseException:
        close_connectors(out)
        raise
    return out


def close_connectors(connectors: Mapping[str, Connector]) -> None:
    for connector in connectors.values():
        close = getattr(connector, "close", None)
        if callable(close):
            close()


@contextmanager
def open_connectors(project: Project, sources: Sequence[str] | None = None) -> Iterator[dict[str, Connector]]:
    connectors = build_connectors(project, sources)
    try:
        yield connectors
    finally:
        close_connectors(connectors)
