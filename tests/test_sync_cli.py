"""``segsync plan``, ``audit`` and ``retry`` end to end on a SQLite store (fake connectors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connectors.records import PushResult
from mapping.config import load_project
from sync.cli import main, sync_cmds
from sync.evaluate import evaluate
from sync.executor import push_pending
from sync.planning import plan_run
from sync.store import schema
from sync.store.db import open_project_store
from tests.sync_support import AS_OF, CONFIG, FakeConnector, populate

AS_OF_ISO = "2024-06-01T12:00:00Z"
PEOPLE: dict[str, dict[str, Any]] = {"ann@x.com": {"ltv": 2000, "plan": "pro"}, "bob@x.com": {"ltv": 600}}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('[store]\nurl = "sqlite:///store.db"\n' + CONFIG, encoding="utf-8")
    engine = open_project_store(load_project(path))
    populate(engine, load_project(path), PEOPLE)
    engine.dispose()
    return path


def cli(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--config", str(config), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_json_writes_nothing(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(config, capsys, "plan", "--as-of", AS_OF_ISO, "--json")
    assert (code, err) == (0, "")
    plan = json.loads(out)
    assert {c["destination"] for c in plan["changes"]} == {"hubspot", "klaviyo"}
    assert plan["cost"]["hubspot"]["requests"] == 2  # fields (one batch) + the VIP list
    assert {(c["group"], c["op"]) for c in plan["counts"] if c["destination"] == "klaviyo"} == {
        ("pro, vip", "set_field"), ("pro", "list_add"), ("vip", "event")}
    engine = open_project_store(load_project(config))
    with engine.connect() as conn:
        assert conn.execute(select(schema.outbox.c.id)).all() == []
        assert conn.execute(select(schema.desired_values.c.target)).all() == []
        assert conn.execute(select(schema.memberships.c.segment)).all() == []
    engine.dispose()
    code, out, _ = cli(config, capsys, "plan", "--as-of", AS_OF_ISO)
    assert code == 0 and "changes to send" in out and "requests" in out


def test_audit_filters_json_and_jsonl(config: Path, capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    project = load_project(config)
    engine = open_project_store(project)
    plan_run(engine, project, evaluate(engine, project, AS_OF), run_id=1, now_ms=AS_OF)
    push_pending(engine, {"hubspot": FakeConnector("hubspot"), "klaviyo": FakeConnector("klaviyo")}, 1)
    engine.dispose()
    code, out, err = cli(config, capsys, "audit", "--contact", "Ann@X.com", "--segment", "vip", "--json")
    assert (code, err) == (0, "")
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows and all(r["contact_key"] == "ann@x.com" and "vip" in r["segments"] for r in rows)
    assert {r["status"] for r in rows} == {"applied"}
    code, out, _ = cli(config, capsys, "audit", "--status", "dead", "--json")
    assert (code, out) == (0, "")
    target = tmp_path / "a.jsonl"
    code, out, _ = cli(config, capsys, "audit", "--since", "100000d", "--jsonl", str(target))
    assert code == 0 and len(target.read_text().splitlines()) > len(rows)
    code, _, err = cli(config, capsys, "audit", "--status", "gone")
    assert code == 2 and "--status" in err and "Traceback" not in err


def test_retry_resends_dead_letters(config: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    project = load_project(config)
    engine = open_project_store(project)
    plan_run(engine, project, evaluate(engine, project, AS_OF), run_id=1, now_ms=AS_OF)
    failing = {"hubspot": FakeConnector("hubspot", verdict=lambda c: PushResult.rejected(c, "bad")),
               "klaviyo": FakeConnector("klaviyo")}
    summary = push_pending(engine, failing, 1)
    assert summary.dead > 0
    engine.dispose()
    fixed = {"hubspot": FakeConnector("hubspot"), "klaviyo": FakeConnector("klaviyo")}
    monkeypatch.setattr(sync_cmds, "_connectors", lambda _project: fixed)
    code, out, err = cli(config, capsys, "retry", "--json")
    assert (code, err) == (0, "")
    result = json.loads(out)
    assert result["requeued"] == summary.dead and result["push"]["hubspot"]["applied"] == summary.dead
    assert fixed["klaviyo"].calls == []
