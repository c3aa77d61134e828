"""Loading a configuration: the Project it builds, and every problem reported at once with its
file:line:column, TOML path, reason and hint."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapping.config import load_project_text
from mapping.errors import ConfigError
from mapping.project import Project
from mapping.rules import ast as r

T = r.Type
BASE = """\
[attributes]
country = "string"
signup_date = "date"
age = "number"

[events.opened]
properties = { url = "string" }
[events.placed_order]
properties = { price = "number" }
exclude = "value > 5000"
"""


def load(extra: str) -> Project:
    return load_project_text(BASE + textwrap.dedent(extra), "config.toml")


def problems(extra: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(extra)
    return [str(p) for p in info.value.problems]


def line_of(extra: str, needle: str) -> int:
    """1-based line of ``needle`` in BASE + extra (so tests don't hard-code line numbers)."""
    lines = (BASE + textwrap.dedent(extra)).split("\n")
    return next(n for n, line in enumerate(lines, 1) if needle in line)


def test_a_valid_configuration_builds_the_project() -> None:
    project = load("""
        [traits]
        orders = 'count("placed_order")'

        [scores.engagement]
        points = [{ event = "opened", points = 1, where = 'contains(url, "/p/")' }]
        half_life = "7d"
        tiers = { High = 50, Low = 0, Medium = 20 }

        [rfm]
        event = "placed_order"
        monetary = "price"

        [segments.vip]
        rule = 'segment("loyal") and score("engagement") > 80'
        [segments.loyal]
        rule = { all = ["orders >= 3", { not = 'country == "FR"' }] }
        min_dwell = "1d"
        [segments.reengage]
        flags = [{ when = 'not exists("opened", within="7d")', points = 70 }]
        min_weight = 50

        [groups.stage]
        kind = "lifecycle"
        segments = ["loyal", "vip"]

        [fields]
        tier = 'tier("engagement")'
    """)
    assert list(project.segments) == ["loyal", "vip", "reengage"]  # dependencies first
    loyal = project.segments["loyal"]
    assert loyal.rule == r.And((
        r.Compare(">=", r.TraitRef("orders"), r.Literal_(3, T.NUMBER)),
        r.Not(r.Compare("==", r.Attr("country"), r.Literal_("FR", T.STRING))),
    ))
    assert loyal.min_dwell_ms == 86_400_000 and len(loyal.rule_hash) == 16
    assert project.segments["reengage"].rule is None
    assert project.segments["reengage"].flags[0].points == 70
    assert project.attributes["signup_date"] is T.DATETIME
    assert project.date_attributes == frozenset({"signup_date"})
    assert project.events["placed_order"] == {"price": T.NUMBER}
    assert project.event_excludes["placed_order"] == r.Compare(
        ">", r.EventField("value"), r.Literal_(5000, T.NUMBER))
    score = project.scores["engagement"]
    assert score.half_life_ms == 7 * 86_400_000
    assert score.tiers == (("Low", 0), ("Medium", 20), ("High", 50))
    assert score.points[0].where == r.StrOp("contains", r.Prop("url"), r.Literal_("/p/", T.STRING))
    assert project.rfm is not None and project.rfm.monetary == r.Prop("price")
    assert project.groups["stage"].field == "stage"
    assert project.fields == {"tier": r.TierRef("engagement")}
    assert project.traits["orders"] == r.Agg("count", "placed_order")


def test_rule_hash_follows_the_canonical_text() -> None:
    def hash_of(rule: str, trait: str = 'count("opened")') -> str:
        extra = f"[traits]\nopens = '{trait}'\n[segments.s]\nrule = '{rule}'\n"
        return load(extra).segments["s"].rule_hash

    same = hash_of('count("opened", within="24h") >= 1 and opens > 0')
    assert same == hash_of('count( "opened", within = "1d" ) >= 1 and (opens > 0)')
    assert same != hash_of('count("opened", within="24h") >= 2 and opens > 0')
    assert same != hash_of('count("opened", within="24h") >= 1 and opens > 0', trait='count("placed_order")')


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param("[segments.a\nrule = 'true'\n", "config.toml:11:12: invalid TOML: Expected ']'",
                     id="bad TOML syntax"),
        pytest.param("[segments.a]\nrule = 'true'\npriority = \"high\"\n",
                     ["config.toml:13:12 segments.a.priority: expected an integer, not a string"],
                     id="wrong key type"),
        pytest.param("[segments.a]\nrule = 5\n",
                     ["config.toml:12:8 segments.a.rule: expected a string or a table, not an integer"],
                     id="wrong type in a union"),
        pytest.param("[segments.a]\nrule = 'true'\nprioirty = 1\n",
                     ["config.toml:13:1 segments.a.prioirty: unknown key 'prioirty' "
                      "(did you mean 'priority'?)"],
                     id="misspelt key"),
        pytest.param("[segmens.a]\nrule = 'true'\n",
                     ["config.toml:11:1 segmens: unknown key 'segmens' "
                      "(did you mean 'segments' or 'events'?)"],
                     id="misspelt table"),
        pytest.param("[segments.a]\nflags = [{ when = 'true', point = 1 }]\n",
                     ["config.toml:12:27 segments.a.flags[0].point: unknown key 'point' "
                      "(did you mean 'points'?)"],
                     id="misspelt key in an inline table"),
        pytest.param("[sources.hubspot]\ntoken = \"pat-na1-0123\"\n",
                     ['config.toml:12:9 sources.hubspot.token: secrets must be given as "env:NAME" '
                      '(read from the environment), not inline (e.g. token = "env:HUBSPOT_TOKEN")'],
                     id="inline secret"),
        pytest.param("[sources.klaviyo]\napi_key = \"env:\"\n",
                     ['config.toml:12:11 sources.klaviyo.api_key: secrets must be given as "env:NAME" (read '
                      'from the environment), not inline (e.g. api_key = "env:KLAVIYO_API_KEY")'],
                     id="empty env name"),
        pytest.param("[groups.g]\nkind = \"exclusiv\"\nsegments = [\"a\"]\n",
                     ["config.toml:12:8 groups.g.kind: expected one of 'exclusive', 'lifecycle' "
                      "(did you mean 'exclusive'?)",
                      "config.toml:13:13 groups.g.segments[0]: unknown segment 'a'"], id="bad literal"),
        pytest.param("[groups.g]\nkind = \"exclusive\"\n",
                     ["config.toml:11:1 groups.g: missing required key 'segments'"], id="missing key"),
        pytest.param("[segments.a]\ndescription = 'x'\n",
                     ["config.toml:11:1 segments.a: a segment needs a rule or flags"], id="empty segment"),
        pytest.param("[segments.a]\nrule = 'true'\ncooldown = \"2 days\"\n",
                     ["config.toml:13:12 segments.a.cooldown: malformed duration '2 days': expected a number "
                      'and a unit (ms, s, m, h, d, w), e.g. "24h"'], id="bad duration key"),
        pytest.param("[attributes]\n", "config.toml:11:12: invalid TOML: Cannot declare attributes twice",
                     id="table declared twice"),
        pytest.param("[sources.klaviyo.attributes]\ncountri = \"location.country\"\n",
                     ["config.toml:12:1 sources.klaviyo.attributes.countri: 'countri' is not a declared "
                      "attribute (did you mean 'country'?)"], id="misspelt attribute in a source map"),
        pytest.param("[sources.hubspot]\nattributes = { agee = \"age\", plan = \"hs_plan\" }\n",
                     ["config.toml:12:16 sources.hubspot.attributes.agee: 'agee' is not a declared "
                      "attribute (did you mean 'age'?)",
                      "config.toml:12:30 sources.hubspot.attributes.plan: 'plan' is not a declared "
                      "attribute (declare it under [attributes])"], id="undeclared attributes, inline"),
        pytest.param("[sources.hubspot]\nenabeld = true\n[sources.hubspot.attributes]\nage = \" \"\n",
                     ["config.toml:12:1 sources.hubspot.enabeld: unknown key 'enabeld' (did you mean "
                      "'enabled'?)",
                      "config.toml:14:1 sources.hubspot.attributes.age: attribute 'age' maps to no hubspot "
                      "field (name the hubspot field it reads, or remove the line)"],
                     id="blank field, with a shape problem beside it"),
    ],
)
def test_shape_problems(extra: str, expected: str | list[str]) -> None:
    found = problems(extra)
    if isinstance(expected, list):
        assert found == expected
    else:
        assert len(found) == 1 and found[0].startswith(expected), found


_LINES = [
    "[segments.a]", "[segments.b]", "[traits]", "[fields]", "[groups.g]", "[rfm]", "[[scores.s.points]]",
    "[scores.s]", "[events.opened.properties]", "[sources.hubspot]", "rule = 'age > 1'",
    "rule = { all = ['segment(\"b\")', { not = 'age > 2' }] }", "rule = 'segment(\"a\")'",
    "rule = 7", "rule = [1]", "exclude = 'value > 1'", "flags = [{ when = 'true', points = 1 }]",
    "kind = 'exclusive'", "segments = ['a', 'x']", "event = 'opened'", "points = 2", "where = 'url == 1'",
    "t = 'count(\"opened\")'", "x = 't + 1'", "token = 'abc'", "token = 'env:X'", "url = 'string'",
    "min_dwell = '1d'", "cooldown = '1x'", "tiers = { Low = 0 }", "a.b = 1", "'q k' = \"\\u00e9\\\"\"",
    "rule = '''\nage >\n'''", "= broken",
    "rule = \"\"\"\ncount(\\\"opened\\\",\n within=\\\"2d\\\") > 1\"\"\"",
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_LINES), max_size=12))
def test_any_document_loads_or_raises_config_error(lines: list[str]) -> None:
    try:
        load_project_text(BASE + "\n".join(lines) + "\n", "config.toml")
    except ConfigError as e:
        assert e.problems and all(str(p).startswith("config.toml") for p in e.problems)


def test_a_password_in_the_store_url_is_refused() -> None:
    found = problems('[store]\nurl = "postgresql+psycopg://app:hunter2@db/segsync"\n')
    assert found == [
        'config.toml:12:7 store.url: the store URL holds a password: give the whole URL as "env:NAME"'
    ]
    assert load('[store]\nurl = "postgresql+psycopg://app@db/segsync"\n')
