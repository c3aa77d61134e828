"""Every example of docs/rules.md parses and type-checks against the documented schema; every
documented error is the error segsync reports."""

from __future__ import annotations

import pytest

from mapping.config import load_project_text
from mapping.definitions import parse_checked
from mapping.errors import RuleError
from mapping.rules.printer import format_rule
from tests.rules_doc import DOC, Example, example_project, examples, schema_toml


def test_the_doc_has_examples_of_every_kind() -> None:
    assert len(examples("rule")) >= 30
    assert len(examples("rule-error")) >= 5
    assert len(examples("toml snippet")) >= 3
    assert "\n## RFM\n" in DOC.read_text(encoding="utf-8")  # the engine engineer's section


def test_the_example_schema_loads() -> None:
    project = example_project()
    assert {"loyal", "vip"} <= set(project.segments)


@pytest.mark.parametrize("example", examples("rule"), ids=str)
def test_rule_example_checks(example: Example) -> None:
    project = example_project()
    expr = parse_checked(project, example.text)
    assert parse_checked(project, format_rule(expr)) == expr


@pytest.mark.parametrize("example", examples("rule-error"), ids=str)
def test_error_example_fails_as_documented(example: Example) -> None:
    with pytest.raises(RuleError) as info:
        parse_checked(example_project(), example.text)
    assert example.expected is not None
    assert any(example.expected in str(p) for p in info.value.problems), info.value.problems


@pytest.mark.parametrize("example", examples("toml snippet"), ids=str)
def test_config_snippet_loads(example: Example) -> None:
    project = load_project_text(schema_toml() + "\n" + example.text, "rules.md")
    assert project.segments or project.events
