"""``segsync run`` end to end on the sandbox (real connectors, official SDKs, loopback HTTP):
the first run creates the fields, options and lists and pushes every value; a second run
with no new data writes nothing; after new events only the changed records are written; an
exit removes list members and clears or updates fields; ``validate --live`` reports what a
run would create and every mismatch."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import Engine

from connectors.sandbox import Sandbox, start_sandbox
from mapping.config import load_project
from sync.cli import main
from sync.run import RunOptions, RunReport, run_job
from sync.store.db import open_project_store
from tests.run_support import (
    ENV,
    assert_applied_once,
    audit_rows,
    config,
    expected_hubspot,
    expected_klaviyo,
    get,
    hubspot_state,
    klaviyo_list_ids,
    klaviyo_state,
    records,
    writes,
)

HS_FIELDS = ("segsync_segments", "segsync_customer", "segsync_customer_since", "segsync_orders")
HS_LISTS = {"segsync customers": "customer_stage"}
KL_FIELDS = ("segsync_segments", "segsync_orders")


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    with start_sandbox(contacts=150, seed=21, rate_limits=False) as sb:
        for name, value in ENV.items():
            monkeypatch.setenv(name, value)
        yield sb


@pytest.fixture
def config_path(sandbox: Sandbox, tmp_path: Path) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(config(sandbox.hubspot_url, sandbox.klaviyo_url, guard=10_000))
    return path


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def run(path: Path) -> tuple[RunReport, Engine]:
    project = load_project(path)
    engine = open_project_store(project)
    return run_job(project, RunOptions(), engine=engine), engine


def assert_state_is_desired(sb: Sandbox, engine: Engine) -> None:
    hs_ids = records(engine, "hubspot")
    assert hubspot_state(sb.hubspot_url, hs_ids, HS_FIELDS, HS_LISTS) == expected_hubspot(engine)
    kl_ids = records(engine, "klaviyo")
    lists = klaviyo_list_ids(sb.klaviyo_url, ["segsync openers"])
    assert klaviyo_state(sb.klaviyo_url, kl_ids, KL_FIELDS, lists) == expected_klaviyo(engine)


def test_first_run_then_nothing_then_only_changes_then_exits(sandbox: Sandbox, config_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    hs, kl = sandbox.hubspot_url, sandbox.klaviyo_url
    # validate --live before anything exists: what a run would create, nothing written
    start = now_ms()
    assert main(["--config", str(config_path), "validate", "--live"]) == 0
    out = capsys.readouterr().out
    assert "hubspot: would create the fields" in out and "segsync_customer_since" in out
    assert "would create the lists segsync customers" in out and "segsync openers" in out
    assert writes(hs, start) == [] and writes(kl, start) == []

    # 1. the first run creates the properties, options and lists and pushes every value
    first, engine = run(config_path)
    assert first.status == "ok" and first.exit_code == 0, first.errors
    assert set(first.schema["hubspot"].created_fields) == set(HS_FIELDS)
    assert first.schema["hubspot"].created_lists == ("segsync customers",)
    assert first.schema["klaviyo"].created_lists == ("segsync openers",)
    props = {p["name"]: p for p in get(f"{hs}/_sandbox/hubspot/properties")["results"]}
    options = {o["value"] for o in props["segsync_segments"]["options"]}
    assert options == {"buyer", "repeat_buyer", "opener", "customer_stage"}
    assert (props["segsync_customer"]["type"], props["segsync_orders"]["type"]) == ("bool", "number")
    assert first.push.applied == len(first.plan.changes) > 300 if first.plan else False
    assert_state_is_desired(sandbox, engine)

    # 2. no new data: zero write requests (compared by content: the log's ms clock may equal ours)
    before = writes(hs, 0), writes(kl, 0)
    second, _ = run(config_path)
    assert second.status == "ok" and second.plan is not None and second.plan.changes == ()
    assert (writes(hs, 0), writes(kl, 0)) == before

    # 3. new orders for three profiles: only their records are written
    emails = [p.email for p in sandbox.dataset.people if p.in_klaviyo and p.in_hubspot
              and p.quality == "ok"][:3]
    requests.post(f"{kl}/_sandbox/klaviyo/activity", json={
        "events": 6, "emails": emails, "metrics": ["Placed Order"], "seed": 4}, timeout=10).raise_for_status()
    start = now_ms()
    third, _ = run(config_path)
    assert third.status == "ok" and third.plan is not None and third.plan.changes
    touched = {p.contact_key for p in third.plan.changes}
    assert touched <= {e.strip().lower() for e in emails}
    run_rows = [r for r in audit_rows(engine) if r["run_id"] == third.run_id]
    assert {r["contact_key"] for r in run_rows} == touched
    hs_writes = writes(hs, start)
    assert [w["route"] for w in hs_writes] == ["contacts.batch.update"]  # 1 batch, no list change
    assert len(writes(kl, start)) <= 3 + 1  # a PATCH per profile (+ a list add)
    assert_state_is_desired(sandbox, engine)

    # 4. exits: two customers become leads in HubSpot -> list removal, flag false, date cleared
    customers = [rid for (rid, target), v in expected_hubspot(engine).items()
                 if target == "list:segsync customers"][:2]
    assert len(customers) == 2
    for rid in customers:
        r = requests.patch(f"{hs}/crm/v3/objects/contacts/{rid}", json={"properties": {
            "lifecyclestage": "lead"}}, headers={"Authorization": "Bearer pat-sandbox"}, timeout=10)
        r.raise_for_status()
    time.sleep(0.01)
    start = now_ms()
    fourth, _ = run(config_path)
    assert fourth.status == "ok" and fourth.exited.get("customer_stage") == 2
    routes = sorted(w["route"] for w in writes(hs, start))
    assert routes == ["contacts.batch.update", "lists.memberships.remove"]
    for rid in customers:
        contact = get(f"{hs}/_sandbox/hubspot/contacts/{rid}")
        assert contact["properties"]["segsync_customer"] == "false"
        assert contact["properties"].get("segsync_customer_since") in (None, "")
        assert "customer_stage" not in (contact["properties"].get("segsync_segments") or "")
    assert_state_is_desired(sandbox, engine)
    assert_applied_once(engine)

    # validate --live now finds everything in place
    assert main(["--config", str(config_path), "validate", "--live"]) == 0
    out = capsys.readouterr().out
    assert "hubspot: every field and list is in place" in out
    engine.dispose()


def test_validate_live_reports_every_mismatch(sandbox: Sandbox, config_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    hs = sandbox.hubspot_url
    body = {"name": "segsync_orders", "label": "orders", "type": "string", "fieldType": "text",
            "groupName": "contactinformation"}
    requests.post(f"{hs}/crm/v3/properties/contacts", json=body,
                  headers={"Authorization": "Bearer pat-sandbox"}, timeout=10).raise_for_status()
    before = writes(hs, 0)  # (by content, not by time: the log's ms clock may equal ours)
    assert main(["--config", str(config_path), "validate", "--live"]) == 2
    err = capsys.readouterr().err
    assert "destinations.hubspot" in err and "segsync_orders" in err and "Traceback" not in err
    assert writes(hs, 0) == before
