"""Query parameters of Klaviyo's JSON:API endpoints: ``filter``, ``sort``, ``page[size]``,
``page[cursor]``, ``fields[type]``, ``include``, and the ``links`` of a page.

Filter syntax (developers.klaviyo.com "Filtering"; spec ``x-klaviyo-filters``):
``op(field,value)``, conditions joined by commas or ``and(...)``; values are quoted strings,
``[...]`` lists, or bare datetimes / numbers / ``true`` / ``false`` / ``null``. Each endpoint
declares the (field, operators, type) it accepts; anything else is a 400 naming ``filter``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from connectors.sandbox.klaviyo.errors import invalid
from connectors.sandbox.klaviyo.ids import parse_instant
from connectors.sandbox.server import Request

_TOKEN = re.compile(r'\s*("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[(),\[\]]|[^\s(),\[\]]+)')


@dataclass(frozen=True)
class Condition:
    op: str
    field: str
    value: Any  # str | float | int (epoch ms for datetimes) | bool | None | list


def parse_filter(text: str | None, allowed: Mapping[str, tuple[set[str], str]]) -> list[Condition]:
    """Conditions (all ANDed) of a ``filter`` parameter.

    ``allowed``: field -> (operators, type) with type ``"string"``, ``"datetime"``,
    ``"number"`` or ``"boolean"``.
    """
    if text is None or text == "":
        return []
    tokens = [m.group(1) for m in _TOKEN.finditer(text)]
    pos = 0

    def expect(tok: str) -> None:
        nonlocal pos
        if pos >= len(tokens) or tokens[pos] != tok:
            raise _bad(text, f"expected '{tok}'")
        pos += 1

    def value() -> Any:
        nonlocal pos
        if pos >= len(tokens):
            raise _bad(text, "a value is missing")
        tok = tokens[pos]
        pos += 1
        if tok == "[":
            items = []
            while pos < len(tokens) and tokens[pos] != "]":
                items.append(value())
                if pos < len(tokens) and tokens[pos] == ",":
                    pos += 1
            expect("]")
            return items
        if tok[0] in "\"'":
            if len(tok) < 2 or tok[-1] != tok[0]:
                raise _bad(text, "a string is not terminated")
            return ("str", re.sub(r"\\(.)", r"\1", tok[1:-1]))
        return ("bare", tok)

    def conditions() -> list[Condition]:
        nonlocal pos
        out: list[Condition] = []
        while True:
            if pos >= len(tokens):
                raise _bad(text, "an expression is missing")
            op = tokens[pos]
            pos += 1
            expect("(")
            if op == "and":
                out.extend(conditions())
            elif op in ("or", "not"):
                raise _bad(text, f"'{op}' is not supported on this endpoint")
            else:
                if pos >= len(tokens):
                    raise _bad(text, "a field is missing")
                field = tokens[pos]
                pos += 1
                expect(",")
                out.append(_check(text, op, field, value(), allowed))
            expect(")")
            if pos < len(tokens) and tokens[pos] == ",":
                pos += 1
                continue
            return out

    result = conditions()
    if pos != len(tokens):
        raise _bad(text, "unexpected text after the last expression")
    return result


def _check(
    text: str, op: str, field: str, raw: Any, allowed: Mapping[str, tuple[set[str], str]]
) -> Condition:
    if field not in allowed:
        raise _bad(text, f"'{field}' is not a valid field for this resource")
    ops, kind = allowed[field]
    if op not in ops:
        raise _bad(
            text, f"operator '{op}' is not allowed for field '{field}' (allowed: {', '.join(sorted(ops))})"
        )
    if op == "any":
        if not isinstance(raw, list):
            raise _bad(text, f"'any' needs a list of values for '{field}'")
        return Condition(op, field, [_typed(text, field, kind, v) for v in raw])
    if isinstance(raw, list):
        raise _bad(text, f"'{op}' needs a single value for '{field}'")
    return Condition(op, field, _typed(text, field, kind, raw))


def _typed(text: str, field: str, kind: str, raw: tuple[str, str]) -> Any:
    tag, tok = raw
    try:
        if kind == "string" and tag == "str":
            return tok
        if kind == "datetime":
            return parse_instant(tok)
        if kind == "number" and tag == "bare":
            return float(tok)
        if kind == "boolean" and tok in ("true", "false"):
            return tok == "true"
    except ValueError:
        pass
    raise _bad(text, f"{tok!r} is not a valid {kind} for '{field}'")


def _bad(text: str, why: str) -> Exception:
    return invalid(f"Invalid filter provided: {why}. Filter: {text!r}", parameter="filter")


def page_size(req: Request, default: int, maximum: int) -> int:
    raw = req.arg("page[size]")
    if raw is None:
        return default
    try:
        size = int(raw)
    except ValueError:
        raise invalid(f"Invalid page size: {raw!r} is not an integer.", parameter="page[size]") from None
    if not 1 <= size <= maximum:
        raise invalid(f"Page size must be between 1 and {maximum}.", parameter="page[size]")
    return size


def sort_key(req: Request, allowed: tuple[str, ...], default: str) -> tuple[str, bool]:
    """(field, descending) from ``sort`` (``-field`` = descending)."""
    raw = req.arg("sort") or default
    field = raw.removeprefix("-")
    if field not in allowed:
        raise invalid(f"'{raw}' is not a valid sort (allowed: {', '.join(allowed)}).", parameter="sort")
    return field, raw.startswith("-")


def encode_cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(req: Request, tolerate_equals: bool) -> Any:
    """The key in ``page[cursor]`` (``None`` = first page); a bad cursor is a 400."""
    raw = req.arg("page[cursor]")
    if raw is None or raw == "":
        return None
    if tolerate_equals and raw.startswith("="):
        raw = raw[1:]
    try:
        return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except ValueError:
        raise invalid(f"Invalid page cursor: {raw!r}.", parameter="page[cursor]") from None


def base_url(req: Request) -> str:
    return "http://" + (req.header("host") or "127.0.0.1")


def links(req: Request, next_key: Any | None) -> dict[str, str]:
    """``self`` and, when there is a further page, ``next`` — full URLs as Klaviyo gives them."""
    base = base_url(req) + req.path
    params = [(k, v) for k, vs in req.query.items() for v in vs]
    out = {"self": base + ("?" + urlencode(params) if params else "")}
    if next_key is not None:
        rest = [(k, v) for k, v in params if k != "page[cursor]"]
        out["next"] = base + "?" + urlencode([*rest, ("page[cursor]", encode_cursor(next_key))])
    return out


def sparse(req: Request, rtype: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """Apply ``fields[<type>]`` (sparse fieldsets) to a resource's attributes."""
    wanted = req.arg(f"fields[{rtype}]")
    if not wanted:
        return attributes
    keep = {f.split(".")[0] for f in wanted.split(",")}
    return {k: v for k, v in attributes.items() if k in keep}


def includes(req: Request, allowed: set[str]) -> set[str]:
    raw = req.arg("include")
    if not raw:
        return set()
    names = {n.strip() for n in raw.split(",") if n.strip()}
    bad = names - allowed
    if bad:
        raise invalid(
            f"Invalid include: {', '.join(sorted(bad))} (allowed: {', '.join(sorted(allowed))}).",
            parameter="include",
        )
    return names
