"""``segsync plan``, ``audit`` and ``retry`` end to end on a SQLite store (fake connectors)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connectors.records import PushResult
from mapping.config import load_project
from mapping.project import Project
from sync import connect
from sync.cli import main
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
    opened = serve_connectors(monkeypatch, fixed)
    code, out, err = cli(config, capsys, "retry", "--json")
    assert (code, err) == (0, "")
    assert opened == [["hubspot", "klaviyo"]]  # the enabled destinations, through sync.connect
    result = json.loads(out)
    assert result["requeued"] == summary.dead and result["push"]["hubspot"]["applied"] == summary.dead
    assert fixed["klaviyo"].calls == []


def serve_connectors(monkeypatch: pytest.MonkeyPatch, fixed: dict[str, FakeConnector]) -> list[list[str]]:
    """Make ``sync.connect.open_connectors`` (the one place connectors are built) yield
    ``fixed``; returns the list of the ``sources`` it is asked for."""
    asked: list[list[str]] = []

    @contextmanager
    def fake(project: Project, sources: Sequence[str] | None = None) -> Iterator[dict[str, FakeConnector]]:
        asked.append(list(sources or []))
        yield fixed

    monkeypatch.setattr(connect, "open_connectors", fake)
    return asked


def test_retry_refuses_a_destination_without_its_source(config: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGSYNC_TEST_TOKEN", "pat-test")
    with config.open("a") as f:  # HubSpot is configured as a source, Klaviyo is not
        f.write('\n[sources.hubspot]\ntoken = "env:SEGSYNC_TEST_TOKEN"\nbase_url = "http://127.0.0.1:9"\n')
    code, out, err = cli(config, capsys, "retry", "--json")
    assert (code, out) == (2, "")
    assert "sources.klaviyo: source 'klaviyo' is not configured or not enabled" in err
    assert "Traceback" not in err and "pat-test" not in err


def test_retry_builds_the_configured_connectors(config: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The real ``open_connectors``: with nothing dead, the connectors are built from
    ``[sources.*]`` (secrets from the environment), nothing is sent, and they are closed."""
    from connectors.hubspot import HubSpotConnector
    from connectors.klaviyo import KlaviyoConnector

    closed: list[dict[str, Any]] = []
    monkeypatch.setattr(connect, "close_connectors", lambda connectors: closed.append(dict(connectors)))
    monkeypatch.setenv("SEGSYNC_TEST_TOKEN", "pat-test")
    with config.open("a") as f:
        f.write('\n[sources.hubspot]\ntoken = "env:SEGSYNC_TEST_TOKEN"\nbase_url = "http://127.0.0.1:9"\n'
                '[sources.klaviyo]\napi_key = "env:SEGSYNC_TEST_TOKEN"\nbase_url = "http://127.0.0.1:9"\n')
    code, out, err = cli(config, capsys, "retry", "--json")
    assert (code, err) == (0, "")
    assert json.loads(out)["requeued"] == 0
    assert [{name: type(c) for name, c in cs.items()} for cs in closed] == [
        {"hubspot": HubSpotConnector, "klaviyo": KlaviyoConnector}]
