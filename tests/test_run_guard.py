"""The mass-removal guard and the dry run of ``segsync run``, checked in the sandbox's request
log; the "a source returned no contacts" case of the guard."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from connectors.sandbox import Sandbox, start_sandbox
from mapping.config import load_project, load_project_text
from sync.cli import main
from sync.run import RunOptions, run_job
from sync.store import schema
from sync.store.db import open_project_store, open_store
from tests import pull_support
from tests.run_support import ENV, audit_rows, config, desired, get, writes

# a new field a dry run must not create
EXPERIMENT = """
[destinations.hubspot.experiments.subject]
field = "segsync_subject_variant"
"""


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    with start_sandbox(contacts=150, seed=22, rate_limits=False) as sb:
        for name, value in ENV.items():
            monkeypatch.setenv(name, value)
        yield sb


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def counts(path: Path) -> dict[str, int]:
    engine = open_project_store(load_project(path))
    tables = {"outbox": schema.outbox, "desired": schema.desired_values, "acked": schema.acked_values,
              "memberships": schema.memberships, "audit": schema.audit_log}
    with engine.connect() as conn:
        out = {k: int(conn.execute(select(func.count()).select_from(t)).scalar() or 0)
               for k, t in tables.items()}
    engine.dispose()
    return out


def list_members(url: str) -> list[str]:
    return list(get(f"{url}/_sandbox/hubspot/lists/segsync%20customers")["members"])


def test_mass_removal_is_held_the_dry_run_sends_nothing_and_allowing_sends_them(
        sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hs, kl = sandbox.hubspot_url, sandbox.klaviyo_url
    path = tmp_path / "run.toml"
    path.write_text(config(hs, kl, guard=5))
    assert main(["--config", str(path), "run"]) == 0
    members = list_members(hs)
    assert len(members) > 5
    capsys.readouterr()

    # the customers rule now matches nobody: every member would be removed
    path.write_text(config(hs, kl, guard=5, extra=EXPERIMENT).replace(
        "crm_stage == \"customer\"", "crm_stage == \"nobody\""))
    before = counts(path)
    start = now_ms()
    code = main(["--config", str(path), "run", "--dry-run", "--no-pull"])
    out = capsys.readouterr().out
    assert code == 3  # what the run would be: partial, removals held
    assert "(dry run)" in out and "held:" in out and "list:segsync customers" in out
    assert "would create segsync_subject_variant" in out
    assert writes(hs, start) == [] and writes(kl, start) == []
    assert counts(path) == before  # nothing recorded either
    props = {p["name"] for p in get(f"{hs}/_sandbox/hubspot/properties")["results"]}
    assert "segsync_subject_variant" not in props

    start = now_ms()
    assert main(["--config", str(path), "run", "--no-pull"]) == 3
    capsys.readouterr()
    assert "lists.memberships.remove" not in {w["route"] for w in writes(hs, start)}
    assert list_members(hs) == members
    engine = open_project_store(load_project(path))
    skipped = audit_rows(engine, "skipped")
    assert {r["record_id"] for r in skipped if r["target"] == "list:segsync customers"} == set(members)
    assert all(r["error"] == "held by the mass-removal guard" for r in skipped)
    engine.dispose()

    start = now_ms()
    assert main(["--config", str(path), "run", "--no-pull", "--allow-mass-removal"]) == 0
    assert "lists.memberships.remove" in {w["route"] for w in writes(hs, start)}
    assert list_members(hs) == []
    engine = open_project_store(load_project(path))
    assert not [k for k in desired(engine, "hubspot") if k[1] == "list:segsync customers"]
    engine.dispose()


SOURCE_ONLY = """
[store]
url = "sqlite:///guard.db"
[attributes]
plan = "string"
[segments.pro]
rule = 'plan == "pro"'
[sources.hubspot]
token = "env:SEGSYNC_TEST_HS"
"""


@pytest.mark.parametrize(("full", "empty"), [(True, ["hubspot"]), (False, [])])
def test_a_source_returning_no_contacts_holds_every_removal(full: bool, empty: list[str],
                                                            tmp_path: Path) -> None:
    project = load_project_text(SOURCE_ONLY, "guard.toml", base_dir=tmp_path)
    engine = open_store(f"sqlite:///{tmp_path / 'guard.db'}")
    source = pull_support.FakeConnector("hubspot", contacts=[
        pull_support.contact("hubspot", str(n), f"p{n}@example.com", plan="pro") for n in range(4)])
    first = run_job(project, RunOptions(), engine=engine, connectors={"hubspot": source})
    assert first.status == "ok" and first.empty_sources == []
    gone = pull_support.FakeConnector("hubspot")  # the account answers with nobody at all
    second = run_job(project, RunOptions(full_pull=full), engine=engine, connectors={"hubspot": gone})
    assert second.empty_sources == empty
    assert second.plan is not None
    assert bool(second.plan.problems) == bool(empty)
    if empty:
        assert "hubspot returned no contacts although the previous run had some" in second.plan.problems[0]
    with engine.connect() as conn:
        statuses = conn.execute(select(schema.runs.c.status).where(schema.runs.c.kind == "run")
                                .order_by(schema.runs.c.id)).scalars().all()
    assert statuses == ["ok", "ok"]
    engine.dispose()
