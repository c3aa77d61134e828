"""The pure planner (hypothesis), the mass-removal guard and the cost estimate."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.records import Change, ChangeOp, JsonValue
from sync import safety
from sync.cost import hubspot_cost, klaviyo_cost
from sync.plan import Key, PlannedChange, apply, diff, same

records = st.sampled_from(["r1", "r2", "r3"])
fields = st.sampled_from(["field:a", "field:b", "field:tags"])
lists = st.sampled_from(["list:L1", "list:L2"])
values: st.SearchStrategy[JsonValue] = st.one_of(st.booleans(), st.integers(-5, 5), st.text(max_size=3),
                   st.lists(st.sampled_from(["x", "y"]), min_size=1, max_size=2))


@st.composite
def states(draw: st.DrawFn) -> dict[Key, JsonValue]:
    out: dict[Key, JsonValue] = {}
    for key in draw(st.lists(st.tuples(st.sampled_from(["hubspot", "klaviyo"]), records, fields),
                             max_size=8)):
        out[key] = draw(values)
    for key in draw(st.lists(st.tuples(st.sampled_from(["hubspot", "klaviyo"]), records, lists),
                             max_size=6)):
        out[key] = True
    return out


@given(states(), states())
def test_applying_the_plan_to_acked_yields_desired(desired: dict[Key, JsonValue],
                                                   acked: dict[Key, JsonValue]) -> None:
    assert apply(acked, diff(desired, acked)) == desired


@given(states())
def test_equal_states_plan_nothing(state: dict[Key, JsonValue]) -> None:
    assert diff(state, dict(state)) == []


@given(states(), states())
def test_planning_is_idempotent_and_minimal(desired: dict[Key, JsonValue],
                                            acked: dict[Key, JsonValue]) -> None:
    changes = diff(desired, acked)
    assert diff(desired, apply(acked, changes)) == []
    assert changes == diff(desired, acked)  # deterministic
    touched = [(c.destination, c.record_id, c.target, c.op in (ChangeOp.LIST_ADD, ChangeOp.LIST_REMOVE))
               for c in changes]
    assert len(set(touched)) == len(touched)  # at most one change per target
    differing = {k for k in set(desired) | set(acked) if not same(desired.get(k), acked.get(k))}
    assert len(changes) == len(differing)


@given(states(), states())
def test_plan_restricted_to_keys_leaves_the_rest(desired: dict[Key, JsonValue],
                                                 acked: dict[Key, JsonValue]) -> None:
    scope = {k for k in desired if k[1] == "r1"} | {k for k in acked if k[1] == "r1"}
    after = apply(acked, diff(desired, acked, scope))
    assert {k: v for k, v in after.items() if k[1] != "r1"} == {
        k: v for k, v in acked.items() if k[1] != "r1"}
    assert {k: v for k, v in after.items() if k[1] == "r1"} == {
        k: v for k, v in desired.items() if k[1] == "r1"}


@pytest.mark.parametrize(("desired", "acked", "want"), [
    ({("hubspot", "r", "field:a"): 1}, {}, Change("hubspot", "r", ChangeOp.SET_FIELD, "a", 1)),
    ({}, {("hubspot", "r", "field:a"): 1}, Change("hubspot", "r", ChangeOp.UNSET_FIELD, "a")),
    ({("klaviyo", "r", "list:L"): True}, {}, Change("klaviyo", "r", ChangeOp.LIST_ADD, "L")),
    ({}, {("klaviyo", "r", "list:L"): True}, Change("klaviyo", "r", ChangeOp.LIST_REMOVE, "L")),
    ({("hubspot", "r", "field:a"): True}, {("hubspot", "r", "field:a"): 1},  # a bool is no number
     Change("hubspot", "r", ChangeOp.SET_FIELD, "a", True)),
])
def test_each_kind_of_change(desired: dict[Key, JsonValue], acked: dict[Key, JsonValue],
                             want: Change) -> None:
    assert diff(desired, acked) == [want]


def test_integral_floats_equal_ints() -> None:
    assert diff({("hubspot", "r", "field:a"): 2.0}, {("hubspot", "r", "field:a"): 2}) == []


def _pc(op: ChangeOp, target: str, old: JsonValue = None, new: JsonValue = None,
        rid: str = "r") -> PlannedChange:
    return PlannedChange(Change("hubspot", rid, op, target, new), 1, "k", old, "segment:s@h", ("s",))


TAGS = {"hubspot": frozenset({"tags"})}


@pytest.mark.parametrize(("members", "removals", "held"), [
    (0, 1000, False),  # at the absolute minimum: sent
    (0, 1001, True),
    (20_000, 2000, False),  # 10 % of 20,000
    (20_000, 2001, True),
])
def test_list_guard_threshold(members: int, removals: int, held: bool) -> None:
    changes = [_pc(ChangeOp.LIST_REMOVE, "L", True, rid=f"r{i}") for i in range(removals)]
    current = {("hubspot", "list:L"): members}
    send, hold, problems = safety.check(changes, current, TAGS, safety.Guard())
    assert (len(hold), len(send)) == ((removals, 0) if held else (0, removals))
    assert bool(problems) == held
    allowed = safety.check(changes, current, TAGS, safety.Guard(allow_mass_removal=True))
    assert len(allowed[0]) == removals and allowed[1] == []


def test_tag_guard_counts_dropped_tags_only() -> None:
    drop = [_pc(ChangeOp.SET_FIELD, "tags", "a;b", "b", rid=f"r{i}") for i in range(5)]
    add = [_pc(ChangeOp.SET_FIELD, "tags", "b", "a;b", rid=f"s{i}") for i in range(5)]
    other = [_pc(ChangeOp.SET_FIELD, "x", 1, 2)]
    acked: dict[Key, JsonValue] = {("hubspot", f"r{i}", "field:tags"): "a;b" for i in range(8)}
    current = safety.members(acked, TAGS)
    assert current == {("hubspot", "tag:tags:a"): 8, ("hubspot", "tag:tags:b"): 8}
    send, hold, problems = safety.check(drop + add + other, current, TAGS, safety.Guard(minimum=4, share=0.1))
    assert hold == drop and send == add + other and len(problems) == 1 and "tag:tags:a" in problems[0]


def test_empty_source_holds_every_removal() -> None:
    changes = [_pc(ChangeOp.UNSET_FIELD, "x", 1), _pc(ChangeOp.SET_FIELD, "flag", True, False),
               _pc(ChangeOp.SET_FIELD, "x", 1, 2), _pc(ChangeOp.LIST_ADD, "L")]
    send, hold, problems = safety.check(changes, {}, TAGS, safety.Guard(), ["klaviyo"])
    assert hold == changes[:2] and send == changes[2:] and "klaviyo" in problems[0]


def test_hubspot_cost_is_one_request_per_hundred_records() -> None:
    changes = [Change("hubspot", f"r{i}", ChangeOp.SET_FIELD, f, 1) for i in range(1000) for f in ("a", "b")]
    changes += [Change("hubspot", f"r{i}", ChangeOp.LIST_ADD, "L") for i in range(1500)]
    cost = hubspot_cost(changes, per_10s=100, daily_quota=250_000)
    assert cost.requests == 10 + 2
    assert cost.minutes == pytest.approx(12 / 600)
    assert cost.daily_share == pytest.approx(12 / 250_000)


@pytest.mark.parametrize(("profiles", "requests"), [(10, 10), (49, 49), (50, 3), (25_000, 9)])
def test_klaviyo_cost_switches_to_bulk_jobs(profiles: int, requests: int) -> None:
    changes = [Change("klaviyo", f"p{i}", ChangeOp.SET_FIELD, "a", 1) for i in range(profiles)]
    cost = klaviyo_cost(changes)
    assert cost.requests == requests and cost.daily_share is None
    assert cost.minutes > 0 and math.isfinite(cost.minutes)
