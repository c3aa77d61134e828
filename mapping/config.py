"""Load a configuration file into a checked :class:`~mapping.project.Project`.

:func:`load_project` (a file) and :func:`load_project_text` (a string, for tests) read the TOML
with ``tomllib``, validate its shape with the pydantic models of :mod:`mapping.models`, then
parse and type-check every rule (:mod:`mapping.definitions`). Every problem — TOML syntax, a
wrong key type, a misspelt key, an inline secret, a rule that does not parse or type-check, a
reference cycle, a source attribute map naming an undeclared attribute (:mod:`mapping.sources`)
— is collected and raised at once as one :class:`ConfigError`, each with its
``file:line:column``, TOML path, reason and "did you mean" where one helps.

This is the only module of ``mapping`` that does I/O (it reads the config file).
"""

from __future__ import annotations

import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from mapping import models
from mapping.definitions import Located, build_project
from mapping.destinations import check_references
from mapping.errors import ConfigError, Location, Problem
from mapping.project import Project
from mapping.rules.source import did_you_mean
from mapping.sources import attribute_map_problems, raw_attribute_maps
from mapping.tomlpos import PathPart, format_path, scan

SECRET_KEYS = frozenset({"token", "api_key", "secret", "password", "signing_secret", "client_secret"})
_TOML_TYPES = {str: "a string", int: "an integer", float: "a float", bool: "a boolean",
               dict: "a table", list: "an array"}
_SIMPLE = {
    "string_type": "a string", "dict_type": "a table", "model_type": "a table",
    "model_attributes_type": "a table", "list_type": "an array", "int_type": "an integer",
    "int_parsing": "an integer", "int_from_float": "a whole number", "float_type": "a number",
    "float_parsing": "a number", "bool_type": "true or false", "bool_parsing": "true or false",
    "tuple_type": "an array",
}


def load_project(path: str | Path) -> Project:
    """Read, validate and check the configuration file at ``path``."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such configuration file") from None
    except IsADirectoryError:
        raise ConfigError(f"{file}: is a directory, not a configuration file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{file}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"{file}: cannot read: {e.strerror}") from None
    return _load(text, str(file), file.resolve(), file.resolve().parent)


def load_project_text(text: str, name: str = "<string>", base_dir: Path | None = None) -> Project:
    """Validate and check a configuration given as text (``name`` appears in messages)."""
    return _load(text, name, None, base_dir or Path.cwd())


def _load(text: str, name: str, path: Path | None, base_dir: Path) -> Project:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(problems=[_toml_problem(str(e), name)]) from None
    where = Located(name, scan(text), data)
    problems = _secret_problems(data, where)
    url = data.get("store", {}).get("url") if isinstance(data.get("store"), dict) else None
    if isinstance(url, str) and re.search(r"://[^/@:]+:[^/@]+@", url):
        problems.append(Problem(where.location(("store", "url"), value=True),
                                'the store URL holds a password: give the whole URL as "env:NAME"'))
    config: models.Config | None = None
    try:
        config = models.Config.model_validate(data)
    except ValidationError as e:
        problems += _pydantic_problems(e, where)
    if config is not None:
        problems += [Problem(where.location(p, value=True), m, did_you_mean(str(_get(data, p)), c))
                     for p, m, c in check_references(config)]
    maps = raw_attribute_maps(data)
    if maps is not None:
        problems += attribute_map_problems(*maps, locate=where.location)
    project, rule_problems = build_project(data, config, where, path, base_dir)
    problems += rule_problems
    if problems or project is None:
        raise ConfigError(problems=_dedupe(problems))
    return project


def _toml_problem(message: str, name: str) -> Problem:
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", message)
    if m is None:
        m2 = re.search(r"\s*\(at end of document\)\s*$", message)
        text = message[: m2.start()] if m2 else message
        return Problem(Location(name), f"invalid TOML: {text}")
    text = re.sub(  # "Cannot declare ('a', 'b') twice" -> "Cannot declare a.b twice"
        r"\(((?:'[^']*',?\s*)+)\)",
        lambda t: ".".join(re.findall(r"'([^']*)'", t.group(1))),
        message[: m.start()],
    )
    return Problem(Location(name, int(m.group(1)), int(m.group(2))), f"invalid TOML: {text}")


def _secret_problems(data: object, where: Located, path: tuple[PathPart, ...] = ()) -> list[Problem]:
    """Every secret-looking key whose value is not ``"env:NAME"`` (the value is never shown)."""
    out: list[Problem] = []
    items: list[tuple[PathPart, object]] = []
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, list):
        items = list(enumerate(data))
    for key, value in items:
        sub = (*path, key)
        if isinstance(key, str) and key in SECRET_KEYS and isinstance(value, str):
            if not re.fullmatch(r"env:[A-Za-z_][A-Za-z0-9_]*", value):
                out.append(Problem(
                    where.location(sub, value=True),
                    'secrets must be given as "env:NAME" (read from the environment), not inline',
                    f'e.g. {key} = "env:{"_".join(str(p).upper() for p in sub[-2:])}"',
                ))
        else:
            out += _secret_problems(value, where, sub)
    return out


def _pydantic_problems(error: ValidationError, where: Located) -> list[Problem]:
    grouped: dict[tuple[PathPart, ...], list[ErrorDetails]] = {}
    for err in error.errors(include_url=False):
        grouped.setdefault(_data_path(err, where.data), []).append(err)
    extra = {path for path, errors in grouped.items() if errors[0]["type"] == "extra_forbidden"}
    problems = []
    for path, errors in grouped.items():
        if errors[0]["type"] == "missing" and any(
            e[:-1] == path[:-1] and did_you_mean(str(e[-1]), [str(path[-1])]) for e in extra
        ):
            continue  # a misspelt key: "unknown key 'point' (did you mean 'points'?)" says it all
        problems.append(_problem(path, errors, where))
    return problems


def _data_path(err: ErrorDetails, data: object) -> tuple[PathPart, ...]:
    """The part of an error's ``loc`` that exists in the data (drops union-member tags);
    a missing key's own name is kept."""
    loc = [p for p in err["loc"] if p != "[key]"]
    path: list[PathPart] = []
    node: object = data
    for part in loc:
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if (isinstance(node, dict) and part in node) or in_list:
            node = node[part]  # type: ignore[index]
        else:
            if err["type"] == "missing" and isinstance(node, dict):
                path.append(part)
            break
        path.append(part)
    return tuple(path)


def _problem(path: tuple[PathPart, ...], errors: list[ErrorDetails], where: Located) -> Problem:
    first = errors[0]
    kind = first["type"]
    if kind == "missing":
        return Problem(where.location(path[:-1]), f"missing required key {path[-1]!r}")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(path[:-1])
        return Problem(where.location(path), f"unknown key {path[-1]!r}",
                       did_you_mean(str(path[-1]), allowed) if allowed else None)
    if "[key]" in first["loc"]:
        return Problem(where.location(path), f"{path[-1]!r} is not a valid name",
                       "use letters, digits and _, not starting with a digit")
    value = _get(where.data, path)
    expected = [_SIMPLE[e["type"]] for e in errors if e["type"] in _SIMPLE]
    if len(expected) == len(errors):
        got = _TOML_TYPES.get(type(value), type(value).__name__)
        return Problem(where.location(path, value=True),
                       f"expected {' or '.join(dict.fromkeys(expected))}, not {got}")
    err = next(e for e in errors if e["type"] not in _SIMPLE)
    return Problem(where.location(path, value=True), *_message(err, value))


def _message(err: ErrorDetails, value: object) -> tuple[str, str | None]:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = did_you_mean(value, options) if isinstance(value, str) else None
        return f"expected one of {', '.join(repr(o) for o in options)}", hint
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == models.DURATION_RE:
        try:
            models.parse_duration(str(value))
        except ValueError as e:
            return str(e), None
    if kind == "string_pattern_mismatch":
        return "not a valid name", "use letters, digits and _, not starting with a digit"
    if kind == "too_short":
        return "must not be empty", None
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, "), None
    return str(err["msg"]), None


def _get(data: object, path: tuple[PathPart, ...]) -> object:
    for part in path:
        data = data[part]  # type: ignore[index]
    return data


def _allowed_keys(path: tuple[PathPart, ...]) -> list[str]:
    """The keys the model at ``path`` accepts (for "did you mean" on a misspelt key)."""
    target: object = models.Config
    for part in path:
        target = _unwrap(target)
        if isinstance(target, type) and issubclass(target, BaseModel) and isinstance(part, str):
            field = target.model_fields.get(part)
            target = field.annotation if field else None
        elif typing.get_origin(target) is dict:
            target = typing.get_args(target)[1]
        elif typing.get_origin(target) is list and isinstance(part, int):
            target = typing.get_args(target)[0]
        else:
            return []
    target = _unwrap(target)
    if isinstance(target, type) and issubclass(target, BaseModel):
        return list(target.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """``X | None`` / ``Annotated[X, ...]`` -> ``X`` (the model member of a union)."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            models_ = [a for a in members if isinstance(a, type) and issubclass(a, BaseModel)]
            annotation = (models_ or members)[0]
        else:
            return annotation


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[str] = set()
    out = []
    for p in problems:
        if str(p) not in seen:
            seen.add(str(p))
            out.append(p)
    return sorted(out, key=lambda p: (p.location.line or 0, p.location.column or 0))


__all__ = ["format_path", "load_project", "load_project_text"]
