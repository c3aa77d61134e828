"""Plan -> outbox -> executor -> acknowledged state, with a strict fake Connector, on SQLite
and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update

from connectors.errors import AuthError
from connectors.records import Change, ChangeOp, PushResult
from sync import audit, outbox
from sync.evaluate import evaluate
from sync.executor import PushSummary, push_pending
from sync.plan import Plan
from sync.planning import plan_run
from sync.store import schema
from tests.conftest import _store
from tests.eval_support import D
from tests.sync_support import AS_OF, FakeConnector, acked, desired, populate, project, record_id, set_ltv

PEOPLE: dict[str, dict[str, Any]] = {
    "ann@x.com": {"ltv": 2000, "plan": "pro"}, "bob@x.com": {"ltv": 600}, "cy@x.com": {"ltv": 1}}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    yield from _store(request.param, tmp_path)


def fakes() -> dict[str, FakeConnector]:
    return {"hubspot": FakeConnector("hubspot"), "klaviyo": FakeConnector("klaviyo")}


def run(engine: Engine, conns: dict[str, FakeConnector], as_of: int = AS_OF,
        run_id: int = 1) -> tuple[Plan, PushSummary]:
    proj = project()
    ev = evaluate(engine, proj, as_of)
    plan = plan_run(engine, proj, ev, run_id=run_id, now_ms=as_of)
    summary = push_pending(engine, dict(conns), run_id, clock=lambda: as_of)
    return plan, summary


def outbox_rows(engine: Engine) -> list[tuple[str, str, str, int]]:
    o = schema.outbox
    with engine.connect() as conn:
        rows = conn.execute(select(o.c.record_id, o.c.target, o.c.status, o.c.attempts)
                            .order_by(o.c.record_id, o.c.target))
        return [(r[0], r[1], r[2], int(r[3])) for r in rows]


def test_first_run_pushes_everything_and_second_run_plans_nothing(engine: Engine) -> None:
    populate(engine, project(), PEOPLE)
    conns = fakes()
    _plan, summary = run(engine, conns)
    hub, kla = conns["hubspot"], conns["klaviyo"]
    # one call per operation kind: fields, then lists (then events)
    assert [sorted({c.op for c in call}) for call in hub.calls] == [
        [ChangeOp.SET_FIELD], [ChangeOp.LIST_ADD]]
    assert [sorted({c.op for c in call}) for call in kla.calls] == [
        [ChangeOp.SET_FIELD], [ChangeOp.LIST_ADD], [ChangeOp.EVENT]]
    ann = record_id("hubspot", "ann@x.com")
    assert hub.state[(ann, "field:segsync_segments")] == "pro;vip"
    assert hub.state[(ann, "list:VIP customers")] is True
    assert hub.state[(record_id("hubspot", "bob@x.com"), "field:segsync_tier")] == "big"
    assert kla.state[(record_id("klaviyo", "ann@x.com"), "field:Segments")] == ["pro", "vip"]
    assert [e.target for e in kla.events] == ["Entered segment: vip"]
    # acknowledged == desired == what the destinations hold; the outbox is empty
    want = desired(engine)
    assert acked(engine) == want
    assert {(d, r, t): v for d in conns for (r, t), v in conns[d].state.items()} == want
    assert outbox_rows(engine) == []
    assert summary.applied == len(hub.sent) + len(kla.sent)
    # a second run with no new data plans and sends nothing
    hub.calls.clear()
    kla.calls.clear()
    plan2, _ = run(engine, conns, run_id=2)
    assert plan2.changes == () and hub.calls == [] and kla.calls == []


def test_only_changed_records_are_written_and_exits_remove(engine: Engine) -> None:
    ids = populate(engine, project(), PEOPLE)
    conns = fakes()
    run(engine, conns)
    for c in conns.values():
        c.calls.clear()
    set_ltv(engine, ids, "ann@x.com", 700)  # vip -> big only
    run(engine, conns, as_of=AS_OF + D, run_id=2)
    sent = conns["hubspot"].sent
    assert {c.record_id for c in sent} == {record_id("hubspot", "ann@x.com")}
    by_target = {(c.op, c.target): c.value for c in sent}
    assert by_target == {
        (ChangeOp.SET_FIELD, "segsync_segments"): "big;pro",
        (ChangeOp.SET_FIELD, "is_vip"): False,
        (ChangeOp.SET_FIELD, "segsync_tier"): "big",
        (ChangeOp.UNSET_FIELD, "vip_since"): None,
        (ChangeOp.SET_FIELD, "lifetime_value"): 700,
        (ChangeOp.SET_FIELD, "subject_variant"): by_target[(ChangeOp.SET_FIELD, "subject_variant")],
        (ChangeOp.LIST_REMOVE, "VIP customers"): None,
    }
    kla = conns["klaviyo"].sent
    assert {(c.op, c.target) for c in kla} == {(ChangeOp.SET_FIELD, "Segments")}
    assert acked(engine) == desired(engine)


def test_retryable_then_dead_after_max_attempts_and_retry_requeues(engine: Engine) -> None:
    populate(engine, project(), {"ann@x.com": {"ltv": 2000}}, providers=("hubspot",))
    hub = FakeConnector("hubspot", verdict=lambda c: PushResult.retryable(c, "HTTP 503"))
    proj = project()
    plan_run(engine, proj, evaluate(engine, proj, AS_OF), run_id=1, now_ms=AS_OF)
    n = len(outbox_rows(engine))
    t = AS_OF

    def clock() -> int:
        return t

    for attempt in range(1, 6):
        summary = push_pending(engine, {"hubspot": hub}, attempt, max_attempts=5,
                               clock=clock)
        assert summary.failed + summary.dead == n
        rows = outbox_rows(engine)
        assert {r[3] for r in rows} == {attempt}
        assert {r[2] for r in rows} == ({"dead"} if attempt == 5 else {"pending"})
        calls = len(hub.calls)
        push_pending(engine, {"hubspot": hub}, attempt, clock=clock)  # not due yet: no call
        assert len(hub.calls) == calls
        t += outbox.backoff_ms(attempt)
    assert acked(engine) == {}
    entries = audit.query(engine, audit.Filter(status="dead"))
    assert len(entries) == n and {e["error"] for e in entries} == {"HTTP 503"}
    # a later plan of the same changes leaves the dead letters alone (no resend every run)
    plan_run(engine, proj, evaluate(engine, proj, AS_OF), run_id=7, now_ms=t)
    assert {r[2] for r in outbox_rows(engine)} == {"dead"}
    # retry re-plans from desired vs acked and sends again
    hub.verdict = None
    requeued, dropped = outbox.retry_dead(engine, now_ms=t)
    assert (requeued, dropped) == (n, 0)
    summary = push_pending(engine, {"hubspot": hub}, 8, clock=lambda: t)
    assert summary.applied == n and outbox_rows(engine) == []
    assert acked(engine) == desired(engine)


def test_rejected_goes_dead_at_once_and_others_are_acked(engine: Engine) -> None:
    populate(engine, project(), PEOPLE, providers=("hubspot",))
    bad = record_id("hubspot", "bob@x.com")

    def verdict(c: Change) -> PushResult:
        if c.record_id == bad:
            return PushResult.rejected(c, "INVALID_OPTION", "req-x")
        return PushResult.applied(c, "req-ok")

    hub = FakeConnector("hubspot", verdict=verdict)
    run(engine, {"hubspot": hub})
    rows = outbox_rows(engine)
    assert rows and {r[0] for r in rows} == {bad} and {(r[2], r[3]) for r in rows} == {("dead", 1)}
    assert all(k[1] != bad for k in acked(engine))
    dead = audit.query(engine, audit.Filter(status="dead"))
    assert {e["request_id"] for e in dead} == {"req-x"}
    applied = audit.query(engine, audit.Filter(status="applied", contact="ANN@x.com"))
    assert applied and {e["contact_key"] for e in applied} == {"ann@x.com"}


def test_a_connector_error_releases_the_batch_unchanged(engine: Engine) -> None:
    populate(engine, project(), PEOPLE, providers=("hubspot",))
    hub = FakeConnector("hubspot", raises=AuthError("hubspot", 401, "req-1", "bad token"))
    _plan, summary = run(engine, {"hubspot": hub})
    assert summary.destinations["hubspot"].error is not None
    assert len(hub.calls) == 1
    rows = outbox_rows(engine)
    assert rows and {(r[2], r[3]) for r in rows} == {("pending", 0)}
    push_pending(engine, {"hubspot": hub}, 2, clock=lambda: AS_OF)
    assert outbox_rows(engine) == [] and acked(engine) == desired(engine)


def test_newer_plan_supersedes_unsent_item_and_drops_obsolete_ones(engine: Engine) -> None:
    ids = populate(engine, project(), {"ann@x.com": {"ltv": 2000}}, providers=("hubspot",))
    proj = project()
    plan_run(engine, proj, evaluate(engine, proj, AS_OF), run_id=1, now_ms=AS_OF)
    before = {r[1]: r for r in outbox_rows(engine)}
    assert "list:VIP customers" in before
    set_ltv(engine, ids, "ann@x.com", 1500)
    plan_run(engine, proj, evaluate(engine, proj, AS_OF), run_id=2, now_ms=AS_OF)
    o = schema.outbox
    with engine.connect() as conn:
        value = conn.execute(select(o.c.value).where(o.c.target == "field:lifetime_value")).scalar()
        count = conn.execute(select(func.count()).select_from(o)).scalar()
    assert value == 1500 and count == len(before)  # one row per target, the newest value
    set_ltv(engine, ids, "ann@x.com", 1)  # back out of every segment before anything was sent
    plan_run(engine, proj, evaluate(engine, proj, AS_OF + D), run_id=3, now_ms=AS_OF)
    targets = {r[1] for r in outbox_rows(engine)}
    assert targets == {"field:is_vip", "field:lifetime_value"}  # nothing to remove: never added


def test_claims_are_disjoint_and_expired_leases_are_reclaimed(engine: Engine) -> None:
    populate(engine, project(), PEOPLE, providers=("hubspot",))
    proj = project()
    plan_run(engine, proj, evaluate(engine, proj, AS_OF), run_id=1, now_ms=AS_OF)
    total = len(outbox_rows(engine))
    t1, first = outbox.claim(engine, "hubspot", 5, now_ms=AS_OF, lease_ms=1000)
    _t2, second = outbox.claim(engine, "hubspot", 1000, now_ms=AS_OF, lease_ms=1000)
    assert len(first) == 5 and len(second) == total - 5
    assert not {i.id for i in first} & {i.id for i in second}
    assert outbox.claim(engine, "hubspot", 1000, now_ms=AS_OF + 999)[1] == []
    _t3, again = outbox.claim(engine, "hubspot", 1000, now_ms=AS_OF + 1001)
    assert len(again) == total
    # the old worker's late verdict does not delete rows it no longer holds, but is acked
    outbox.settle(engine, t1, [(first[0], PushResult.applied(first[0].change))], now_ms=AS_OF,
                  max_attempts=5, run_id=1, trigger="manual")
    assert len(outbox_rows(engine)) == total and len(acked(engine)) == 1


def test_release_frees_claims_after_a_crash(engine: Engine) -> None:
    populate(engine, project(), PEOPLE, providers=("hubspot",))
    proj = project()
    plan_run(engine, proj, evaluate(engine, proj, AS_OF), run_id=1, now_ms=AS_OF)
    outbox.claim(engine, "hubspot", 1000, now_ms=AS_OF)
    assert outbox.claim(engine, "hubspot", 1000, now_ms=AS_OF)[1] == []
    assert outbox.release(engine, now_ms=AS_OF) == len(outbox_rows(engine))
    hub = FakeConnector("hubspot")
    push_pending(engine, {"hubspot": hub}, 2, clock=lambda: AS_OF)
    assert outbox_rows(engine) == [] and acked(engine) == desired(engine)


def test_run_start_releases_a_dead_runs_and_expired_claims_but_not_a_live_flushers(engine: Engine) -> None:
    populate(engine, project(), PEOPLE, providers=("hubspot",))
    proj = project()
    plan_run(engine, proj, evaluate(engine, proj, AS_OF), run_id=1, now_ms=AS_OF)
    total = len(outbox_rows(engine))
    assert total >= 3
    t_run, by_run = outbox.claim(engine, "hubspot", 1, now_ms=AS_OF, owner=outbox.RUN_OWNER)
    t_live, by_flusher = outbox.claim(engine, "hubspot", total - 2, now_ms=AS_OF, lease_ms=60_000)
    _t_old, by_expired = outbox.claim(engine, "hubspot", 1, now_ms=AS_OF - 10_000, due_by=AS_OF,
                                      lease_ms=1_000)
    assert t_run.startswith("run-") and len(by_run) == len(by_expired) == 1
    assert outbox.release(engine, now_ms=AS_OF, stale_of=outbox.RUN_OWNER) == 2
    with engine.connect() as conn:
        inflight = set(conn.execute(select(schema.outbox.c.id).where(
            schema.outbox.c.status == outbox.INFLIGHT)).scalars())
    assert inflight == {i.id for i in by_flusher} and len(inflight) == total - 2
    again = outbox.claim(engine, "hubspot", total, now_ms=AS_OF)[1]
    assert {i.id for i in again} == {by_run[0].id, by_expired[0].id}
    assert outbox.release(engine, t_live, now_ms=AS_OF) == total - 2


def test_mass_removal_is_held_and_audited_unless_allowed(engine: Engine) -> None:
    proj = project("\n[destinations]\nmass_removal_min = 1\nmass_removal_share = 0.5\n")
    ids = populate(engine, proj, {f"p{i}@x.com": {"ltv": 2000} for i in range(4)}, providers=("hubspot",))
    hub = FakeConnector("hubspot")
    plan_run(engine, proj, evaluate(engine, proj, AS_OF), run_id=1, now_ms=AS_OF)
    push_pending(engine, {"hubspot": hub}, 1, clock=lambda: AS_OF)
    for i in range(3):
        set_ltv(engine, ids, f"p{i}@x.com", 1)
    dry = plan_run(engine, proj, evaluate(engine, proj, AS_OF + D, persist=False), commit=False)
    plan = plan_run(engine, proj, evaluate(engine, proj, AS_OF + D), run_id=2, now_ms=AS_OF + D)
    assert [p.to_json() for p in dry.held] == [p.to_json() for p in plan.held]
    assert dry.problems == plan.problems and any("list:VIP customers" in p for p in plan.problems)
    held_ops = {(p.change.op, p.change.target) for p in plan.held}
    assert (ChangeOp.LIST_REMOVE, "VIP customers") in held_ops
    assert (ChangeOp.SET_FIELD, "segsync_segments") in held_ops or (
        ChangeOp.UNSET_FIELD, "segsync_segments") in held_ops
    hub.calls.clear()
    push_pending(engine, {"hubspot": hub}, 2, clock=lambda: AS_OF + D)
    assert not any(c.op is ChangeOp.LIST_REMOVE for c in hub.sent)
    skipped = audit.query(engine, audit.Filter(status="skipped", segment="vip"))
    assert len(skipped) >= 3
    allowed = plan_run(engine, proj, evaluate(engine, proj, AS_OF + D), run_id=3, now_ms=AS_OF + D,
                       allow_mass_removal=True)
    assert allowed.held == () and allowed.problems == ()


def test_empty_population_holds_every_removal(engine: Engine) -> None:
    proj = project()
    populate(engine, proj, PEOPLE, providers=("hubspot",))
    plan_run(engine, proj, evaluate(engine, proj, AS_OF), run_id=1, now_ms=AS_OF)
    push_pending(engine, {"hubspot": FakeConnector("hubspot")}, 1, clock=lambda: AS_OF)
    plan = plan_run(engine, proj, evaluate(engine, proj, AS_OF, contact_ids=[]), run_id=2,
                    now_ms=AS_OF, empty_sources=["hubspot"])
    assert plan.changes == () and plan.problems and "hubspot" in plan.problems[0]


def test_dry_run_writes_nothing_and_matches_the_real_plan(engine: Engine) -> None:
    proj = project()
    populate(engine, proj, PEOPLE)
    dry = plan_run(engine, proj, evaluate(engine, proj, AS_OF, persist=False), commit=False)
    assert desired(engine) == {} and outbox_rows(engine) == []
    real = plan_run(engine, proj, evaluate(engine, proj, AS_OF), run_id=1, now_ms=AS_OF)
    assert [p.to_json() for p in dry.changes] == [p.to_json() for p in real.changes]


def test_subset_plan_touches_only_its_contacts(engine: Engine) -> None:
    proj = project()
    ids = populate(engine, proj, PEOPLE, providers=("hubspot",))
    run(engine, {"hubspot": FakeConnector("hubspot")})
    set_ltv(engine, ids, "bob@x.com", 5000)
    set_ltv(engine, ids, "cy@x.com", 5000)
    ev = evaluate(engine, proj, AS_OF + D, contact_ids=[ids["bob@x.com"]])
    plan = plan_run(engine, proj, ev, full=False, run_id=2, now_ms=AS_OF + D)
    assert {p.change.record_id for p in plan.changes} == {record_id("hubspot", "bob@x.com")}
    assert len(desired(engine)) > 0


def test_archived_identity_and_unmapped_target_are_left_alone(engine: Engine) -> None:
    proj = project()
    populate(engine, proj, PEOPLE, providers=("hubspot",))
    run(engine, {"hubspot": FakeConnector("hubspot")})
    with engine.begin() as conn:
        conn.execute(update(schema.identities).where(
            schema.identities.c.provider_id == record_id("hubspot", "ann@x.com")).values(archived=True))
    plan = plan_run(engine, proj, evaluate(engine, proj, AS_OF), run_id=2, now_ms=AS_OF)
    assert plan.changes == ()
    assert all(k[1] != record_id("hubspot", "ann@x.com") for k in desired(engine))


def test_audit_retention_and_jsonl(engine: Engine, tmp_path: Path) -> None:
    proj = project("\n[audit]\nretention = \"1d\"\n")
    populate(engine, proj, PEOPLE, providers=("hubspot",))
    run(engine, {"hubspot": FakeConnector("hubspot")})
    n = len(audit.query(engine))
    assert n > 0
    out = tmp_path / "audit.jsonl"
    assert audit.export_jsonl(engine, out, audit.Filter(segment="vip")) == len(
        audit.query(engine, audit.Filter(segment="vip"))) > 0
    assert out.read_text().count("\n") == len(audit.query(engine, audit.Filter(segment="vip")))
    plan_run(engine, proj, evaluate(engine, proj, AS_OF), run_id=2, now_ms=AS_OF + 2 * D)
    assert audit.query(engine) == []


def test_a_write_interrupted_by_a_crash_is_resent_even_when_desired_reverts(engine: Engine) -> None:
    """A killed run may have sent a write without recording the answer. If the desired value then
    goes back to the last acknowledged one, the provider may still hold the interrupted write:
    the released item's acknowledged value is unknown, so the next plan sends the desired state."""
    proj = project()
    ids = populate(engine, proj, {"vip@x.com": {"ltv": 2000}}, providers=("hubspot",))
    plan_run(engine, proj, evaluate(engine, proj, AS_OF), run_id=1, now_ms=AS_OF)
    _token, sent = outbox.claim(engine, "hubspot", 100, now_ms=AS_OF, owner=outbox.RUN_OWNER)
    assert any(i.change.op is ChangeOp.LIST_ADD for i in sent)  # on the wire when the run died
    assert outbox.release(engine, now_ms=AS_OF, stale_of=outbox.RUN_OWNER) == len(sent)
    set_ltv(engine, ids, "vip@x.com", 1)  # desired is back to "not a member", as acknowledged before
    plan_run(engine, proj, evaluate(engine, proj, AS_OF + D), run_id=2, now_ms=AS_OF + D)
    hub = FakeConnector("hubspot")
    push_pending(engine, {"hubspot": hub}, 2, clock=lambda: AS_OF + D)
    assert (ChangeOp.LIST_REMOVE, "VIP customers") in {(c.op, c.target) for c in hub.sent}
    assert not any(v == outbox.UNKNOWN for v in acked(engine).values())
