"""Destination mappings: validation, targets, schema specs, value encoding, A/B variants, and
the examples of docs/mappings.md."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from connectors.base import FieldSpec
from mapping.config import load_project_text
from mapping.errors import ConfigError
from mapping.targets import targets
from sync.desired import assign_variant, encode, schema_spec, schema_specs
from tests.sync_support import CONFIG, project

DOC = Path(__file__).resolve().parents[1] / "docs" / "mappings.md"
BLOCKS = re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S)
RULES, EXAMPLES = BLOCKS[0], BLOCKS[1:]


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_every_doc_example_loads(example: str) -> None:
    proj = load_project_text(RULES + "\n" + example, "mappings.md")
    for mapping in proj.config.destinations.enabled().values():
        assert targets(proj, mapping) or mapping.events


def test_doc_has_an_example_of_every_mapping_kind() -> None:
    text = "\n".join(EXAMPLES)
    for key in ("tags", "booleans", "groups", "entered_at", "values", "lists", "experiments",
                "events", "allow_mass_removal", "retention"):
        assert key in text, key


@pytest.mark.parametrize(("extra", "message"), [
    ('[destinations.hubspot]\nbooleans = { is_vip = "vipp" }',
     "sync.toml:24:23 destinations.hubspot.booleans.is_vip: unknown segment 'vipp' (did you mean 'vip'?)"),
    ('[destinations.klaviyo]\ngroups = { t = "tierr" }', "unknown group 'tierr' (did you mean 'tier'?)"),
    ('[destinations.klaviyo]\nvalues = { x = { source = "nope" } }', "unknown field 'nope'"),
    ('[destinations.hubspot]\nbooleans = { Is_Vip = "vip" }', "HubSpot property names are lower-case"),
    ('[destinations.klaviyo]\nbooleans = { a = "vip" }\nentered_at = { a = "vip" }',
     "field 'a' is written by both booleans.a and entered_at.a"),
    ('[destinations.klaviyo.experiments.e]\nfield = "v"\nweights = [1]',
     "weights has 1 entries but there are 2 variants"),
    ('[destinations.klaviyo.experiments.e]\nfield = "v"\nholdout = 1.5',
     "destinations.klaviyo.experiments.e.holdout"),
    ('[[destinations.hubspot.events]]\nsegment = "vip"', "segment-transition events to Klaviyo only"),
    ('[destinations.klaviyo]\nlist = { a = "vip" }', "unknown key 'list' (did you mean 'lists'?)"),
    ('[audit]\nretention = "90 days"', "malformed duration"),
])
def test_bad_mappings_are_reported_with_their_location(extra: str, message: str) -> None:
    text = CONFIG.split("[destinations.hubspot]")[0] + extra + "\n"
    with pytest.raises(ConfigError) as err:
        load_project_text(text, "sync.toml")
    assert message in str(err.value)


def test_targets_and_schema_specs() -> None:
    proj = project()
    hub = targets(proj, proj.config.destinations.hubspot)  # type: ignore[arg-type]
    assert [t.key for t in hub] == [
        "field:segsync_segments", "field:is_vip", "field:segsync_tier", "field:vip_since",
        "field:lifetime_value", "field:subject_variant", "list:VIP customers"]
    spec = schema_spec("hubspot", hub)
    assert schema_specs(proj) == {"hubspot": spec, "klaviyo": schema_spec("klaviyo", targets(
        proj, proj.config.destinations.klaviyo))}  # type: ignore[arg-type]
    assert spec.lists == ("VIP customers",)
    assert FieldSpec("segsync_segments", "multi", "Segments", ("vip", "big", "pro")) in spec.fields
    assert FieldSpec("segsync_tier", "enumeration", "segsync_tier", ("vip", "big")) in spec.fields
    assert FieldSpec("lifetime_value", "number", "lifetime_value") in spec.fields
    variant = FieldSpec("subject_variant", "enumeration", "subject_variant", ("A", "B", "holdout"))
    assert variant in spec.fields
    reasons = {t.key: t.reason for t in hub}
    assert reasons["field:is_vip"] == f"segment:vip@{proj.segments['vip'].rule_hash}"
    changed = project().segments["vip"].rule_hash
    other = load_project_text(CONFIG.replace("ltv >= 1000", "ltv >= 999"))
    assert other.segments["vip"].rule_hash != changed


@pytest.mark.parametrize(("provider", "ttype", "value", "want"), [
    ("hubspot", "multi", ["vip", "pro"], "pro;vip"),
    ("klaviyo", "multi", ["vip", "pro"], ["pro", "vip"]),
    ("hubspot", "multi", [], None),
    ("hubspot", "list", ["b", "a", "a"], "a;b"),
    ("klaviyo", "list", ["b", "a"], ["a", "b"]),
    ("hubspot", "datetime", 1717243200123, 1717243200123),
    ("klaviyo", "datetime", 1717243200123, "2024-06-01T12:00:00.123Z"),
    ("hubspot", "date", 1717243200123, 1717200000000),
    ("klaviyo", "date", 1717243200123, "2024-06-01"),
    ("hubspot", "number", 3.0, 3),
    ("klaviyo", "number", 2.5, 2.5),
    ("hubspot", "bool", False, False),
    ("hubspot", "string", "", None),
    ("klaviyo", "string", 7.0, "7"),
    ("hubspot", "enumeration", None, None),
])
def test_encode(provider: str, ttype: str, value: object, want: object) -> None:
    assert encode(provider, ttype, value) == want


def test_variants_are_stable_weighted_and_hold_out_a_share() -> None:
    proj = load_project_text(
        CONFIG + '\n[destinations.klaviyo.experiments.subj]\nfield = "v"\nvariants = ["A", "B"]\n'
          'weights = [3, 1]\nholdout = 0.2\n')
    exp = proj.config.destinations.klaviyo.experiments["subj"]  # type: ignore[union-attr]
    keys = [f"c{i}@x.com" for i in range(20_000)]
    first = [assign_variant("subj", exp, k) for k in keys]
    assert first == [assign_variant("subj", exp, k) for k in keys]
    share = Counter(first)
    assert abs(share["holdout"] / len(keys) - 0.2) < 0.015
    assert abs(share["A"] / len(keys) - 0.6) < 0.015
    assert abs(share["B"] / len(keys) - 0.2) < 0.015
    salted = exp.model_copy(update={"salt": "again"})
    moved = sum(a != assign_variant("subj", salted, k) for a, k in zip(first, keys, strict=True))
    assert moved > len(keys) // 3
    other = [assign_variant("other", exp, k) for k in keys]
    assert other != first
