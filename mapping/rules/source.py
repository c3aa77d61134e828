"""What the rule front end needs to know besides the rule text.

* :class:`Schema` — the declared names a rule may use (attributes, events and their
  properties, traits, scores, segments, RFM), shared by the parser and the checker.
* :class:`Source` — where a rule string sits in its file, so that a problem at offset ``i`` of
  the string is reported at the right line and column of the TOML file.
* :class:`ParsedRule` — a parsed expression plus the offset of each node (for locations).
* :func:`did_you_mean` — the "did you mean X" hint for a misspelt name.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mapping.errors import Location, Problem
from mapping.rules.ast import Expr, Type

# Names a rule may not use for attributes, traits or properties: they mean something else.
RESERVED_NAMES = frozenset({"true", "false", "True", "False", "None", "null", "now"})
EVENT_FIELDS = frozenset({"value", "ts"})


@dataclass(frozen=True)
class Schema:
    """The declared names a rule is checked against.

    ``events`` maps an event type to its property types. A type of None marks a declaration
    whose type is wrong (reported elsewhere): the name exists, its type is unknown. ``scores``
    maps a score to its tier labels (empty when it has no tiers). ``traits`` maps a trait to its
    expression when known (the checker infers a trait's type from it); the parser only needs
    the names.
    """

    attributes: Mapping[str, Type | None] = field(default_factory=dict)  # None: declared badly
    events: Mapping[str, Mapping[str, Type | None]] = field(default_factory=dict)
    traits: Mapping[str, Expr | None] = field(default_factory=dict)
    scores: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    segments: frozenset[str] = frozenset()
    rfm: bool = False


@dataclass(frozen=True)
class Source:
    """A rule string and where it came from.

    ``char_map`` (when known) holds, for each character of ``text`` and one past its end, the
    1-based (line, column) of that character in the file; without it, ``line``/``column`` of
    the first character are used and positions inside the string are computed from ``text``.
    """

    text: str
    file: str | None = "<rule>"
    path: str | None = None
    line: int | None = 1
    column: int | None = 1
    char_map: tuple[tuple[int, int], ...] | None = None

    def location(self, offset: int | None = None) -> Location:
        if offset is None:
            return Location(self.file, self.line, self.column, self.path)
        offset = max(0, min(offset, len(self.text)))
        if self.char_map is not None and offset < len(self.char_map):
            line, column = self.char_map[offset]
            return Location(self.file, line, column, self.path)
        if self.line is None:
            return Location(self.file, None, None, self.path)
        before = self.text[:offset]
        newlines = before.count("\n")
        if newlines:
            return Location(self.file, self.line + newlines, offset - before.rfind("\n"), self.path)
        return Location(self.file, self.line, (self.column or 1) + offset, self.path)

    def problem(self, offset: int | None, message: str, hint: str | None = None) -> Problem:
        return Problem(self.location(offset), message, hint)


@dataclass(frozen=True)
class ParsedRule:
    """A parsed rule: the expression, its source, and ``spans`` (``id(node)`` -> offset)."""

    expr: Expr
    source: Source
    spans: Mapping[int, int] = field(default_factory=dict)

    def offset(self, node: Expr) -> int | None:
        return self.spans.get(id(node))


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """``"did you mean 'country'?"`` for the closest candidates, or None."""
    options = sorted(set(candidates))
    cutoff = 0.6 if len(name) > 3 else 0.5  # one wrong letter of a short name
    scored = [(difflib.SequenceMatcher(None, name, c).ratio(), c) for c in options]
    close = [c for score, c in sorted(scored, key=lambda sc: (-sc[0], sc[1])) if score >= cutoff][:3]
    if not close:
        lowered = {c.lower(): c for c in options}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
    if not close:
        return None
    return "did you mean " + " or ".join(repr(c) for c in close) + "?"
