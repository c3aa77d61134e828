"""Type checks, type inference and reference cycles."""

from __future__ import annotations

import pytest

from mapping.errors import RuleError
from mapping.rules import ast as r
from mapping.rules.checker import check_rule, find_cycles, references, type_of
from mapping.rules.parser import parse_rule
from mapping.rules.source import Source
from tests.rules_strategies import SCHEMA

T = r.Type


def problems(text: str, expect: r.Type | None = T.BOOL, event: str | None = None) -> list[str]:
    parsed = parse_rule(text, SCHEMA, event=event)
    return [str(p) for p in check_rule(parsed, SCHEMA, expect=expect, event=event)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("d1 > 5", "<rule>:1:4: cannot compare datetime with number (use days_since(x) for a number of days"),
        ("d1 > '2024-01-01'",
         'cannot compare datetime with string (write a date as date("2024-01-01") or ago("30d"))'),
        ("n1 == 'x'", "cannot compare number with string"),
        ("b1 == 1", "cannot compare condition (bool) with number (booleans are true / false)"),
        ("b1 < true", "condition (bool) values have no order: use == or !="),
        ("l1 > ['a']", "list values have no order"),
        ("between(n1, d1, 5)", "cannot compare datetime with number"),
        ("s1 + 1 > 2", "<rule>:1:1: an operand of + must be number, not string"),
        ("days_since(n1) > 1", "the argument of days_since() must be datetime, not number"),
        ("contains(n1, 'a')", "the first argument of contains() must be string or list, not number"),
        ("starts_with(l1, 'a')", "the first argument of starts_with() must be string, not list"),
        ("contains(s1, 1)", "the second argument of contains() must be string, not number"),
        ("n1 in ['a']", "the list must hold numbers to test a number"),
        ("l1 in ['a']",
         "'in' needs a string or number on its left, not list (use contains(x, s) to test a list)"),
        ("coalesce(n1, 'x') == 1", "coalesce() of a number needs a number default, not a string"),
        ("b1 and n1", "each part of all/and must be condition (bool), not number"),
        ("not s1", "the operand of not must be condition (bool), not string"),
        ("sum('ev_a', of='p_s') > 1",
         "sum() needs a number: of='p_s' is a string (numbers of event 'ev_a': value, p_n)"),
        ("avg('ev_a', of='ts') > 1", "avg() needs a number: of='ts' is a datetime"),
        ("count('ev_a', where=p_n) > 1", "where= must be condition (bool), not number"),
        ("count('ev_a', where=p_s > 1) > 1", "cannot compare string with number"),
        ("percentile(s1) > 1", "percentile() of an expression must be number, not string"),
        ("n1 + 1", "a rule must be a condition (bool), not a number (compare it, e.g. x > 0)"),
        ("s1", "a rule must be a condition (bool), not a string (test it, e.g. is_set(x))"),
    ],
)
def test_type_errors(text: str, expected: str) -> None:
    found = problems(text)
    assert any(expected in p for p in found), found


@pytest.mark.parametrize(
    "text",
    [
        "d1 < ago('30d') and days_since(d1) >= 7",
        "distinct('ev_a', of='p_s') > 1 and is_set(l1) and contains(l1, 'vip') and contains(s1, 'x')",
        "last('ev_a') > first('ev_b') and exists('ev_b', where=ts > ago('1h'))",
        "tier('sc') == 'High' and rfm_r() >= 4 and rfm_score() == '555'",
        "coalesce(max('ev_a', of='p_n'), 0) / 2 > n1 - 1",
        "l1 == ['a', 'b'] and b1 != false",
    ],
)
def test_well_typed_rules_have_no_problems(text: str) -> None:
    assert problems(text) == []


def test_event_filters_type_check_against_their_event() -> None:
    assert problems("value > 5000 and ts > ago('1d') and p_n >= 0", event="ev_a") == []
    assert problems("p_s > 5", event="ev_a") == ["<rule>:1:5: cannot compare string with number"]


def test_nested_problems_do_not_cascade() -> None:
    assert problems("(s1 + 1) * 2 > 3 and b1") == ["<rule>:1:2: an operand of + must be number, not string"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("n1 * 2", T.NUMBER), ("d1", T.DATETIME), ("tier('sc')", T.STRING), ("t_num + 1", T.NUMBER),
     ("last('ev_a')", T.DATETIME), ("exists('ev_a')", T.BOOL), ("rfm_segment()", T.STRING),
     ("coalesce(s1, 'none')", T.STRING), ("l1", T.LIST), ("segment('seg1')", T.BOOL)],
)
def test_type_of(text: str, expected: r.Type) -> None:
    assert type_of(parse_rule(text, SCHEMA).expr, SCHEMA) is expected


def test_type_of_refuses_an_ill_typed_expression() -> None:
    with pytest.raises(RuleError, match="cannot compare number with string"):
        type_of(parse_rule("n1 == 'x'", SCHEMA).expr, SCHEMA)


def test_problem_location_in_a_file() -> None:
    parsed = parse_rule(Source("b1 and\n  d1 > 5", "config.toml", "segments.spike.rule", 12, 9), SCHEMA)
    assert [str(p) for p in check_rule(parsed, SCHEMA)] == [
        "config.toml:13:6 segments.spike.rule: cannot compare datetime with number "
        '(use days_since(x) for a number of days, or ago("30d") for a relative time)'
    ]


def test_references_include_filters_and_nesting() -> None:
    expr = parse_rule("segment('seg1') or (t_num > 1 and not segment('seg1'))", SCHEMA).expr
    assert references(expr) == {("segment", "seg1"), ("trait", "t_num")}


def test_find_cycles() -> None:
    a, b, c, d = (("segment", n) for n in "abcd")
    t = ("trait", "t")
    graph = {a: {b}, b: {t}, t: {a}, c: {c}, d: {a}}
    assert find_cycles(graph) == [[a, b, t, a], [c, c]]
    assert find_cycles({a: {b}, b: set(), d: {a, b}}) == []
