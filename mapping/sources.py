"""The attribute maps of the sources (``[sources.<provider>.attributes]``: segsync attribute ->
provider field) checked against the declared ``[attributes]``. Pure: no I/O.

A key of an attribute map must be a declared attribute: a misspelt one would otherwise be
noticed only when a pull starts. :func:`attribute_map_problems` is what both the config loader
(``mapping.config``: ``segsync validate`` reports it with ``file:line:column`` and a "did you
mean") and ``sync.pull_map.SourceMap.build`` (a Project built any other way) call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping

from mapping.errors import Location, Problem
from mapping.models import NAME_RE
from mapping.rules.source import did_you_mean
from mapping.tomlpos import PathPart, format_path

__all__ = ["PROVIDERS", "attribute_map_problems", "raw_attribute_maps"]

PROVIDERS = ("hubspot", "klaviyo")
Locate = Callable[[tuple[PathPart, ...]], Location]
Maps = Mapping[str, Mapping[str, object]]  # provider -> its attribute map


def _plain(path: tuple[PathPart, ...]) -> Location:
    return Location(path=format_path(path))


def raw_attribute_maps(data: Mapping[str, object]) -> tuple[Maps, list[str]] | None:
    """The attribute maps and the declared attribute names of raw TOML data, read leniently
    (a table with a shape problem is left to the models); None when ``[attributes]`` itself
    is not a table (nothing to check against)."""
    declared = data.get("attributes", {})
    sources = data.get("sources", {})
    if not isinstance(declared, dict) or not isinstance(sources, dict):
        return None
    maps: dict[str, Mapping[str, object]] = {}
    for provider in PROVIDERS:
        source = sources.get(provider)
        attributes = source.get("attributes") if isinstance(source, dict) else None
        if isinstance(attributes, dict):
            maps[provider] = attributes
    return maps, list(declared)


def attribute_map_problems(maps: Maps, declared: Collection[str],
                           locate: Locate = _plain) -> list[Problem]:
    """A problem for every key of an attribute map that is not a declared attribute, at the
    key's location (``sources.<provider>.attributes.<name>``) with a "did you mean"; and for a
    field name that is blank. A key that is not a valid name is left to the models."""
    problems = []
    for provider, attributes in maps.items():
        for name, field in attributes.items():
            path: tuple[PathPart, ...] = ("sources", provider, "attributes", name)
            if not re.fullmatch(NAME_RE, name):
                continue
            if name not in declared:
                problems.append(Problem(locate(path), f"{name!r} is not a declared attribute",
                                        did_you_mean(name, declared) or "declare it under [attributes]"))
            elif isinstance(field, str) and not field.strip():
                problems.append(Problem(locate(path), f"attribute {name!r} maps to no {provider} field",
                                        f"name the {provider} field it reads, or remove the line"))
    return problems
