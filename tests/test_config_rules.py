"""Rule problems inside a configuration file: exact file positions (escapes, multi-line strings,
nested rule tables), names, cycles, and all problems at once."""

from __future__ import annotations

import pytest

from mapping.config import load_project_text
from mapping.errors import ConfigError
from tests.test_config_load import BASE, problems


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param('[segments.spike]\nrule = "signup_date > 5"\n',
                     "config.toml:12:21 segments.spike.rule: cannot compare datetime with number "
                     '(use days_since(x) for a number of days, or ago("30d") for a relative time)',
                     id="type mismatch"),
        pytest.param('[segments.a]\nrule = "contry == \\"DE\\""\n',
                     "config.toml:12:9 segments.a.rule: unknown attribute or trait 'contry' "
                     "(did you mean 'country'?)", id="unknown attribute"),
        pytest.param('[segments.a]\nrule = "country == \\"DE\\" and agee > 1"\n',
                     "config.toml:12:31 segments.a.rule: unknown attribute or trait 'agee' "
                     "(did you mean 'age'?)", id="column after escapes"),
        pytest.param("[segments.a]\nrule = '''\n  age > 1 and\n  count(\"opend\") > 2'''\n",
                     "config.toml:14:9 segments.a.rule: unknown event type 'opend' (did you mean 'opened'?)",
                     id="multi-line string"),
        pytest.param("[segments.a]\nrule = { all = ['age > 1', { any = ['age < 1', 'segment(\"b\")'] }] }\n",
                     "config.toml:12:57 segments.a.rule.all[1].any[1]: unknown segment 'b'",
                     id="unknown segment in a nested table"),
        pytest.param("[segments.a]\nrule = { alll = ['age > 1'] }\n",
                     "config.toml:12:1 segments.a.rule: a rule table has exactly one key: all, any or not "
                     "(did you mean 'all'?)", id="misspelt rule table key"),
        pytest.param("[segments.a]\nrule = { any = [] }\n",
                     "config.toml:12:16 segments.a.rule.any: any takes a non-empty array of rules",
                     id="empty rule table"),
        pytest.param("[segments.a]\nrule = 'cuont(\"opened\") > 1'\n",
                     "config.toml:12:9 segments.a.rule: unknown function 'cuont' (did you mean 'count' or",
                     id="unknown function"),
        pytest.param("[segments.a]\nrule = 'count(\"opened\", within=\"24x\") > 1'\n",
                     "config.toml:12:32 segments.a.rule: malformed duration '24x'", id="malformed duration"),
        pytest.param("[segments.a]\nrule = 'age >'\n",
                     "config.toml:12:14 segments.a.rule: syntax error: invalid syntax", id="syntax error"),
        pytest.param("[segments.a]\nrule = 'age'\n",
                     "config.toml:12:9 segments.a.rule: a segment rule must be a condition (bool), "
                     "not a number",
                     id="rule not bool"),
        pytest.param("[segments.a]\nrule = 'age > 1'\n"
                     "exclude = 'count(\"opened\", where=urll == \"x\") > 0'\n",
                     "config.toml:13:34 segments.a.exclude: unknown property 'urll' of event 'opened' "
                     "(did you mean 'url'?)", id="unknown property"),
        pytest.param("[segments.a]\nflags = [{ when = 'age', points = 1 }]\n",
                     "config.toml:12:20 segments.a.flags[0].when: a flag must be a condition (bool), "
                     "not a number",
                     id="flag not bool"),
        pytest.param(
            "[scores.e]\npoints = [{ event = \"opend\", points = 1 }]\n",
            "config.toml:12:21 scores.e.points[0].event: unknown event type 'opend' (did you mean 'opened'?)",
            id="unknown event in a score"),
        pytest.param("[scores.e]\npoints = [{ event = \"opened\", points = 1, where = 'price > 1' }]\n",
                     "config.toml:12:52 scores.e.points[0].where: unknown property 'price' of event 'opened'",
                     id="score filter sees its own event"),
        pytest.param("[segments.a]\nrule = 'score(\"eng\") > 1'\n",
                     "config.toml:12:15 segments.a.rule: unknown score 'eng'", id="unknown score"),
        pytest.param("[segments.a]\nrule = 'rfm_r() > 3'\n",
                     "config.toml:12:9 segments.a.rule: rfm_r() needs an [rfm] section in the configuration",
                     id="rfm without [rfm]"),
        pytest.param("[rfm]\nevent = \"placed_order\"\nmonetary = \"prise\"\n",
                     "config.toml:13:12 rfm.monetary: unknown property 'prise' of event 'placed_order' "
                     "(did you mean 'price'?)", id="rfm monetary"),
        pytest.param("[traits]\nage = 'count(\"opened\")'\n",
                     "config.toml:12:1 traits.age: trait 'age' has the name of an attribute (rename one)",
                     id="trait clashes with an attribute"),
        pytest.param(
            "[events.clicked]\nproperties = { value = \"number\" }\n",
            "config.toml:12:16 events.clicked.properties.value: 'value' is a reserved word",
            id="reserved property name"),
        pytest.param("[fields]\nx = 'days_since(signup_date) + \"a\"'\n",
                     "config.toml:12:32 fields.x: an operand of + must be number, not string",
                     id="bad field"),
        pytest.param("[segments.a]\nrule = 'segment(\"b\")'\n[segments.b]\nrule = 'segment(\"a\")'\n",
                     "config.toml:12:8 segments.a.rule: reference cycle: "
                     "segment 'a' -> segment 'b' -> segment 'a'",
                     id="cycle"),
        pytest.param("[segments.a]\nrule = 'segment(\"a\")'\n",
                     "config.toml:12:8 segments.a.rule: reference cycle: segment 'a' -> segment 'a'",
                     id="self reference"),
        pytest.param("[traits]\nt = 'segment(\"a\")'\n[segments.a]\nrule = 'age > 1'\nexclude = 't'\n",
                     "config.toml:15:11 segments.a.exclude: reference cycle: "
                     "segment 'a' -> trait 't' -> segment 'a'",
                     id="cycle through a trait"),
    ],
)
def test_rule_problems(extra: str, expected: str) -> None:
    found = problems(extra)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_all_problems_are_reported_at_once() -> None:
    extra = """\
[segmens.x]
rule = 'true'
[segments.a]
rule = 'agee > 1'
prioirty = 2
min_dwell = "1x"
[segments.b]
rule = { all = ['segment("c")', 'count("opend") > 1'] }
[segments.c]
rule = 'segment("b") and signup_date > 3'
[sources.hubspot]
token = "secret-value-123"
"""
    with pytest.raises(ConfigError) as info:
        load_project_text(BASE + extra, "config.toml")
    found = [str(p) for p in info.value.problems]
    assert [p.split(" ")[0] for p in found] == [
        "config.toml:11:1", "config.toml:14:9", "config.toml:15:1", "config.toml:16:13",
        "config.toml:18:17", "config.toml:18:40", "config.toml:20:38", "config.toml:22:9",
    ], found
    assert "reference cycle: segment 'b' -> segment 'c' -> segment 'b'" in found[4]
    assert all("secret-value-123" not in p for p in found)
    assert str(info.value) == "\n".join(found)


def test_a_leaf_that_is_not_a_string() -> None:
    assert problems("[segments.a]\nrule = { any = ['age > 1', 3] }\n") == [
        "config.toml:12:28 segments.a.rule.any[1]: expected a rule string or an {all/any/not = ...} table"
    ]


def test_two_groups_cannot_write_the_same_output_field() -> None:
    extra = ("[segments.a]\nrule = 'age > 1'\n"
             "[groups.g1]\nkind = 'exclusive'\nsegments = ['a']\nfield = 'out'\n"
             "[groups.g2]\nkind = 'lifecycle'\nsegments = ['a']\nfield = 'out'\n")
    assert problems(extra) == [
        "config.toml:17:1 groups.g2: group 'g2' writes output field 'out', which group 'g1' also writes "
        '(set field = "..." to another name)'
    ]
