"""Rule text -> AST: each construct, and each kind of problem with its position and hint."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapping.errors import RuleError
from mapping.rules import ast as r
from mapping.rules.parser import parse_rule
from mapping.rules.printer import format_rule
from mapping.rules.source import Source
from tests.rules_strategies import SCHEMA

T = r.Type
H, D = 3_600_000, 86_400_000


def num(v: float) -> r.Literal_:
    return r.Literal_(v, T.NUMBER)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('s1 == "DE"', r.Compare("==", r.Attr("s1"), r.Literal_("DE", T.STRING))),
        ("b1 == true", r.Compare("==", r.Attr("b1"), r.Literal_(True, T.BOOL))),
        ("b1 != False", r.Compare("!=", r.Attr("b1"), r.Literal_(False, T.BOOL))),
        ("t_num > 2.5", r.Compare(">", r.TraitRef("t_num"), num(2.5))),
        ("n1 > -3", r.Compare(">", r.Attr("n1"), num(-3))),
        ('s1 in ["a", "b"]', r.In(r.Attr("s1"), r.Literal_(("a", "b"), T.LIST))),
        ("n1 not in [1, -2]", r.In(r.Attr("n1"), r.Literal_((1, -2), T.LIST), negate=True)),
        ("1 <= n1 <= 5", r.Between(r.Attr("n1"), num(1), num(5))),
        ("between(n1, 1, 5)", r.Between(r.Attr("n1"), num(1), num(5))),
        ('contains(l1, "vip")', r.StrOp("contains", r.Attr("l1"), r.Literal_("vip", T.STRING))),
        ('starts_with(s1, "+49")', r.StrOp("starts_with", r.Attr("s1"), r.Literal_("+49", T.STRING))),
        ("is_not_set(s1)", r.IsSet(r.Attr("s1"), negate=True)),
        ('d1 < ago("30d")', r.Compare("<", r.Attr("d1"), r.Ago(30 * D))),
        ("days_since(d1) > 7", r.Compare(">", r.DaysSince(r.Attr("d1")), num(7))),
        ("d1 <= now", r.Compare("<=", r.Attr("d1"), r.Now())),
        ("d1 <= now()", r.Compare("<=", r.Attr("d1"), r.Now())),
        ('d1 > date("2024-01-31")', r.Compare(">", r.Attr("d1"), r.Literal_(1706659200000, T.DATETIME))),
        ('d1 > datetime("2024-01-31T02:00:00+02:00")',
         r.Compare(">", r.Attr("d1"), r.Literal_(1706659200000, T.DATETIME))),
        ("coalesce(n1, 0) * 2 + 1 > 3",
         r.Compare(">", r.Arith("+", r.Arith("*", r.Coalesce(r.Attr("n1"), num(0)), num(2)), num(1)),
                   num(3))),
        ("b1 and not b1 or b1", r.Or((r.And((r.Attr("b1"), r.Not(r.Attr("b1")))), r.Attr("b1")))),
        ("any(b1, all(b1, b1))", r.Or((r.Attr("b1"), r.And((r.Attr("b1"), r.Attr("b1")))))),
        ('count("ev_a", within="24h") >= 3',
         r.Compare(">=", r.Agg("count", "ev_a", window=r.Window("within", 24 * H, 0)), num(3))),
        ('exists("ev_a", where=p_n > 100 and contains(p_s, "/p/"), between=("14d", "7d"))',
         r.Agg("exists", "ev_a",
               where=r.And((r.Compare(">", r.Prop("p_n"), num(100)),
                            r.StrOp("contains", r.Prop("p_s"), r.Literal_("/p/", T.STRING)))),
               window=r.Window("between", 14 * D, 7 * D))),
        ('sum("ev_a", of="p_n") > 0', r.Compare(">", r.Agg("sum", "ev_a", of=r.Prop("p_n")), num(0))),
        ('max("ev_a", of="value", where=ts > ago("1h")) > 0',
         r.Compare(">", r.Agg("max", "ev_a", of=r.EventField("value"),
                              where=r.Compare(">", r.EventField("ts"), r.Ago(H))), num(0))),
        ('last("ev_b") < ago("7d")', r.Compare("<", r.Agg("last", "ev_b"), r.Ago(7 * D))),
        ('distinct("ev_a", of="p_s") >= 2',
         r.Compare(">=", r.Agg("distinct", "ev_a", of=r.Prop("p_s")), num(2))),
        ('sequence("ev_a", not_followed_by="ev_b", gap="48h", within="14d", where=p_n > 1, '
         'then_where=p_s == "x", latest=true)',
         r.Sequence("ev_a", "ev_b", 48 * H, r.Window("within", 14 * D, 0),
                    r.Compare(">", r.Prop("p_n"), num(1)),
                    r.Compare("==", r.Prop("p_s"), r.Literal_("x", T.STRING)), latest=True)),
        ('score("sc") > 80 and tier("sc") == "High"',
         r.And((r.Compare(">", r.ScoreRef("sc"), num(80)),
                r.Compare("==", r.TierRef("sc"), r.Literal_("High", T.STRING))))),
        ('percentile(score("sc")) >= 75', r.Compare(">=", r.Rank("percentile", r.ScoreRef("sc")), num(75))),
        ("ntile(t_num, 4) == 4", r.Compare("==", r.Rank("ntile", r.TraitRef("t_num"), 4), num(4))),
        ('rfm_segment() == "Champions"',
         r.Compare("==", r.Rfm("segment"), r.Literal_("Champions", T.STRING))),
        ('segment("seg1")', r.SegmentRef("seg1")),
        ("b1\n  and\n    b1", r.And((r.Attr("b1"), r.Attr("b1")))),
    ],
)
def test_parses_to_the_expected_tree(text: str, expected: r.Expr) -> None:
    assert parse_rule(text, SCHEMA).expr == expected


def test_event_scope_resolves_properties() -> None:
    parsed = parse_rule("value > 5000 or p_s == 'x'", SCHEMA, event="ev_a")
    assert parsed.expr == r.Or((r.Compare(">", r.EventField("value"), num(5000)),
                                r.Compare("==", r.Prop("p_s"), r.Literal_("x", T.STRING))))


def problems_of(text: str, event: str | None = None) -> list[str]:
    with pytest.raises(RuleError) as info:
        parse_rule(text, SCHEMA, event=event)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # syntax
        ("n1 >", "<rule>:1:5: syntax error: invalid syntax"),
        ("n1 > 1)", "<rule>:1:7: syntax error: unmatched ')'"),
        ("b1 and\n  (b1 or b1", "<rule>:2:3: syntax error: '(' was never closed"),
        ('s1 == "abc', "<rule>:1:7: syntax error: unterminated string literal"),
        ("", "<rule>:1:1: empty rule"),
        ("n1 is None", "'is' is not supported (use is_set(x) / is_not_set(x) or ==)"),
        ("n1 ** 2 > 1", "<rule>:1:1: unsupported operator: only + - * / are allowed"),
        ("s1.lower() == 'a'", "<rule>:1:1: only plain function calls are supported"),
        ("[x for x in l1]", "unsupported syntax: listcomp"),
        ("s1 in l1", "<rule>:1:7: 'in' needs a list literal on its right (use contains(x, s)"),
        ("s1 in ['a', 1]", "a list must hold only strings or only numbers"),
        # unknown names, with hints
        ("s2 == 'x'", "<rule>:1:1: unknown attribute or trait 's2' (did you mean 's1'?)"),
        ("t_nmu > 1", "unknown attribute or trait 't_nmu' (did you mean 't_num'?)"),
        ("value > 1", "unknown attribute or trait 'value' (value exists only inside an aggregate's where=)"),
        ("cuont('ev_a') > 1", "<rule>:1:1: unknown function 'cuont' (did you mean 'count' or"),
        ("count('ev_c') > 1", "<rule>:1:7: unknown event type 'ev_c' (did you mean 'ev_a' or 'ev_b'?)"),
        ("count('ev_a', where=p_x > 1) > 1", "<rule>:1:21: unknown property 'p_x' of event 'ev_a' "
                                            "(did you mean 'p_n' or 'p_s'?)"),
        ("sum('ev_a', of='p_m') > 1",
         "<rule>:1:16: unknown property 'p_m' of event 'ev_a' (did you mean 'p_n' or 'p_s'?)"),
        ("segment('seg2')", "<rule>:1:9: unknown segment 'seg2' (did you mean 'seg1'?)"),
        ("score('sx') > 1", "<rule>:1:7: unknown score 'sx' (did you mean 'sc'?)"),
        ("count('ev_a', withn='1d') > 1", "count() has no argument 'withn' (did you mean 'within'?)"),
        ("rfm_r > 1", "rfm_r is a function (call it: rfm_r(...))"),
        # misuse
        ("count('ev_a', of='p_n') > 1", "count() has no argument 'of'"),
        ("distinct('ev_a') > 1", "distinct() needs of=\"property\""),
        ("count(ev_a) > 1", "the event type (e.g. \"opened\") must be a string literal"),
        ("count('ev_a', within='1d', between=('2d', '1d')) > 1", "takes within= or between=, not both"),
        ("count('ev_a', between=('1d', '2d')) > 1", "between=(A, B) needs the older offset first"),
        ("sequence('ev_a', gap='1h')", "sequence() needs not_followed_by="),
        ("ntile(n1, 1) == 1", "ntile(x, n) needs a whole number n >= 2"),
        ("d1 > date('2024-02-30')", "malformed date '2024-02-30'"),
        # durations
        ("d1 < ago('24x')", "<rule>:1:10: malformed duration '24x': expected a number and a unit"),
        ("d1 < ago('h24')", "malformed duration 'h24'"),
        ("count('ev_a', within='') > 1", "malformed duration ''"),
        ("count('ev_a', within='0s') > 1", "within= must be longer than 0"),
    ],
)
def test_problems_are_located_and_explained(text: str, expected: str) -> None:
    problems = problems_of(text)
    assert any(expected in p for p in problems), problems


def test_an_event_filter_sees_only_its_event() -> None:
    assert problems_of("n1 > 1", event="ev_a") == [
        "<rule>:1:1: unknown property 'n1' of event 'ev_a' "
        "(an event filter sees only the event's properties, value and ts)"
    ]
    nested = problems_of("count('ev_b') > 1", event="ev_a")
    assert "count() cannot be used inside an event filter" in nested[0]


def test_several_unknown_names_are_reported_together() -> None:
    assert len(problems_of("s2 == 'x' and n2 > 1 and segment('nope')")) == 3


def test_positions_map_into_the_file() -> None:
    source = Source('b1 and count("ev_x") > 1', "config.toml", "segments.a.rule", line=12, column=9)
    with pytest.raises(RuleError) as info:
        parse_rule(source, SCHEMA)
    assert str(info.value) == (
        "config.toml:12:22 segments.a.rule: unknown event type 'ev_x' (did you mean 'ev_a' or 'ev_b'?)"
    )


def test_columns_count_characters_not_bytes() -> None:
    with pytest.raises(RuleError) as info:
        parse_rule('s1 == "ünïcödé" and n9 > 1', SCHEMA)
    assert str(info.value).startswith("<rule>:1:21: unknown attribute or trait 'n9'")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("not " * 150 + "b1", "the rule is nested too deeply (more than 100 levels)"),
        ("n1 > 1e400", "number out of range: inf"),
        ("n1 > 99999999999999999999", "number out of range"),
    ],
)
def test_limits(text: str, expected: str) -> None:
    found = problems_of(text)
    assert len(found) == 1 and expected in found[0], found


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(["n1", "s1", "b1", "d1", "(", ")", "[", "]", ",", "and", "or", "not", "==",
                              "<=", "in", "+", "-", '"x"', "'24h'", "1", "-2.5", "count", "ago", "where=",
                              "within=", "'ev_a'", "segment", "p_n", "=", "**", "is", "None", "\n"]),
             max_size=14).map(" ".join),
))
def test_any_text_parses_or_raises_rule_error(text: str) -> None:
    try:
        parsed = parse_rule(text, SCHEMA)
    except RuleError as e:
        assert e.problems and all(p.location.line is not None for p in e.problems)
    else:
        assert parse_rule(format_rule(parsed.expr), SCHEMA).expr == parsed.expr
