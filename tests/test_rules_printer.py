"""The canonical printer: ``parse(format(x)) == x`` for random well-typed trees, and the
canonical spelling of a few hand-written rules."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from mapping.rules import ast as r
from mapping.rules.checker import check_rule
from mapping.rules.parser import parse_rule
from mapping.rules.printer import format_duration, format_rule
from tests.rules_strategies import SCHEMA, typed

T = r.Type


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(typed(T.BOOL))
def test_round_trip_of_random_well_typed_rules(expr: r.Expr) -> None:
    text = format_rule(expr)
    parsed = parse_rule(text, SCHEMA)
    assert parsed.expr == expr, text
    assert check_rule(parsed, SCHEMA) == [], text
    assert format_rule(parsed.expr) == text


@settings(max_examples=150, deadline=None)
@given(typed(T.NUMBER))
def test_round_trip_of_random_number_expressions(expr: r.Expr) -> None:
    parsed = parse_rule(format_rule(expr), SCHEMA)
    assert parsed.expr == expr
    assert check_rule(parsed, SCHEMA, expect=T.NUMBER) == []


@settings(max_examples=150, deadline=None)
@given(typed(T.BOOL, event="ev_a"))
def test_round_trip_inside_an_event_filter(expr: r.Expr) -> None:
    parsed = parse_rule(format_rule(expr), SCHEMA, event="ev_a")
    assert parsed.expr == expr
    assert check_rule(parsed, SCHEMA, event="ev_a") == []


@pytest.mark.parametrize(
    ("source", "canonical"),
    [
        ('count("ev_a", within="24h") >= 3', 'count("ev_a", within="1d") >= 3'),
        ("n1 >= 1 and (b1 or not b1)", "n1 >= 1 and (b1 or not b1)"),
        ("(n1 >= 1 and b1) or b1", "n1 >= 1 and b1 or b1"),
        ("(n1 >= 1 and b1) and b1", "(n1 >= 1 and b1) and b1"),
        ("1 <= n1 <= 5", "between(n1, 1, 5)"),
        ("0 < n1 < 5", "0 < n1 and n1 < 5"),
        ("n1 - (2 - n1) * 3 > -1", "n1 - (2 - n1) * 3 > -1"),
        ("(n1 - 2) - n1 == 0", "n1 - 2 - n1 == 0"),
        ("-n1 > 0", "0 - n1 > 0"),
        ("s1 not in ('a', 'b')", 's1 not in ["a", "b"]'),
        ('d1 < date("2024-01-31")', 'd1 < datetime("2024-01-31T00:00:00.000Z")'),
        ('d1 < datetime("2024-01-31T10:00:00+02:00")', 'd1 < datetime("2024-01-31T08:00:00.000Z")'),
        ('d1 < ago("90m")', 'd1 < ago("90m")'),
        ('d1 < ago("120m")', 'd1 < ago("2h")'),
        ("all(b1)", "all(b1)"),
        ('sequence("ev_a", not_followed_by="ev_b", gap="48h", latest=True)',
         'sequence("ev_a", not_followed_by="ev_b", gap="2d", latest=true)'),
        ('sum("ev_a", of="p_n", where=p_s == "x", between=("14d", "7d")) > 0',
         'sum("ev_a", of="p_n", where=p_s == "x", between=("2w", "1w")) > 0'),
        ("s1 == 'it\\'s \"q\"'", 's1 == "it\'s \\"q\\""'),
        ('percentile(n1) >= 75 and ntile(t_num, 4) == 4', 'percentile(n1) >= 75 and ntile(t_num, 4) == 4'),
    ],
)
def test_canonical_text(source: str, canonical: str) -> None:
    assert format_rule(parse_rule(source, SCHEMA).expr) == canonical


@pytest.mark.parametrize(
    ("ms", "text"), [(0, "0ms"), (1, "1ms"), (1500, "1500ms"), (90_000, "90s"), (3_600_000, "1h"),
                     (86_400_000 * 14, "2w"), (86_400_000 * 3, "3d")],
)
def test_durations_use_the_largest_exact_unit(ms: int, text: str) -> None:
    assert format_duration(ms) == text
