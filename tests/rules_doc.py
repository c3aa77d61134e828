"""Examples extracted from ``docs/rules.md``, for tests that keep the documentation true.

Fenced blocks are tagged by their info string: ``rule`` (a rule that must parse and check),
``rule-error`` (a rule, then ``=> expected message``), ``toml schema`` (the example
configuration every example is checked against) and ``toml snippet`` (a configuration fragment
that must load when appended to the schema).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from mapping.config import load_project_text
from mapping.project import Project

DOC = Path(__file__).resolve().parents[1] / "docs" / "rules.md"
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.S | re.M)


@dataclass(frozen=True)
class Example:
    tag: str  # the fence's info string, e.g. "rule"
    text: str  # the block's content (for rule-error: the rule only)
    line: int  # 1-based line of the block's first content line in the doc
    section: str  # the nearest "## " heading above it
    expected: str | None = None  # rule-error: the expected message

    def __str__(self) -> str:  # pytest ids
        return f"rules.md:{self.line}"


def examples(tag: str = "rule", doc: Path = DOC) -> list[Example]:
    """Every fenced block of ``doc`` tagged ``tag``, in order."""
    text = doc.read_text(encoding="utf-8")
    found = []
    for m in _FENCE.finditer(text):
        if m.group(1).strip() != tag:
            continue
        line = text.count("\n", 0, m.start(2)) + 1
        headings = re.findall(r"^## (.+)$", text[: m.start()], re.M)
        body, expected = m.group(2).rstrip("\n"), None
        if tag == "rule-error":
            body, _, expected = body.rpartition("\n=> ")
        found.append(Example(tag, body, line, headings[-1] if headings else "", expected))
    return found


def schema_toml(doc: Path = DOC) -> str:
    (block,) = examples("toml schema", doc)
    return block.text + "\n"


@cache
def example_project() -> Project:
    """The documented example configuration, loaded."""
    return load_project_text(schema_toml(), "rules.md")
