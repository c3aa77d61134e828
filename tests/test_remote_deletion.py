"""Remote deletion (``[service] forget_remote``): the queue, the connectors' requests against the
sandbox through the official SDKs, the Klaviyo stand-in's endpoint, and migration 6."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, select

from connectors.budget import KLAVIYO_LIMITS, RateBudget, hubspot_spec, klaviyo_spec
from connectors.errors import AuthError
from connectors.hubspot import HubSpotConnector
from connectors.klaviyo import KlaviyoConnector
from connectors.records import DeletionStatus
from connectors.retry import RetryPolicy
from connectors.sandbox import Sandbox, start_sandbox
from connectors.sandbox.klaviyo import KlaviyoSettings, KlaviyoState, build_app
from connectors.sandbox.klaviyo.ratelimit_table import EXTRA_TIERS
from connectors.sandbox.server import SandboxServer
from mapping.config import load_project, load_project_text
from sync import remote_delete
from sync.cli import main
from sync.remote_delete import Target, send_remote_deletions, targets
from sync.run import RunOptions, run_job
from sync.service import forget
from sync.service.app import create_app
from sync.store import repo, schema
from sync.store.db import open_store
from sync.store.migrations import MIGRATIONS, current_version, migrate
from sync.store.tx import begin_write
from tests.service_support import hs_event, hs_headers, settings
from tests.store_support import store_url

__all__ = ["store_url"]  # the fixture

ENV = {"SEGSYNC_RD_HS": "pat-sandbox", "SEGSYNC_RD_KL": "pk_sandbox"}
CONFIG = """
[store]
url = "sqlite:///rd.db"

[attributes]
plan = "string"

[events.order_placed]

[segments.pro]
rule = 'plan == "pro"'

[sources.hubspot]
token = "env:SEGSYNC_RD_HS"
base_url = "{hubspot}"
email_events = false

[sources.klaviyo]
api_key = "env:SEGSYNC_RD_KL"
base_url = "{klaviyo}"

[service]
forget_remote = {remote}
"""
KL_HEADERS = {"Authorization": "Klaviyo-API-Key pk_sandbox", "revision": "2026-10-15",
              "Content-Type": "application/vnd.api+json"}
RD = schema.remote_deletions
JOBS = "/api/data-privacy-deletion-jobs"


class FakeClock:
    """Monotonic time that only moves when someone sleeps (retry policy and rate budget)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 0.0)


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with start_sandbox(contacts=40, seed=11, rate_limits=False, events_per_contact=2) as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def _config(tmp_path: Path, sb: Sandbox, remote: str = '["hubspot", "klaviyo"]') -> Path:
    path = tmp_path / "rd.toml"
    path.write_text(CONFIG.format(hubspot=sb.hubspot_url, klaviyo=sb.klaviyo_url, remote=remote))
    return path


def _people(sb: Sandbox, n: int, offset: int) -> list[dict[str, Any]]:
    """``n`` people of the data set present in both stand-ins, with their HubSpot and Klaviyo
    record ids (read over the inspection routes). Each test takes its own ``offset``: the
    sandbox is shared by the module and the tests delete the people they take."""
    both = [p for p in sb.dataset.people if p.in_hubspot and p.in_klaviyo and p.quality == "ok"]
    assert len(both) >= offset + n, "the data set has too few people in both providers"
    out = []
    for p in both[offset:offset + n]:
        hs = requests.get(f"{sb.hubspot_url}/_sandbox/hubspot/contacts/{p.email}", timeout=10)
        kl = requests.get(f"{sb.klaviyo_url}/_sandbox/klaviyo/profiles", params={"email": p.email},
                          timeout=10)
        assert hs.status_code == kl.status_code == 200, p.email
        out.append({"email": p.email.strip().lower(), "hubspot": str(hs.json()["id"]),
                    "klaviyo": kl.json()["id"]})
    return out


def _local(engine: Engine, person: dict[str, Any], providers: tuple[str, ...] = ("hubspot", "klaviyo"),
           now: int = 1_000) -> int:
    with begin_write(engine) as conn:
        cid = repo.contact_ids(conn, [(person["email"], None)], now)[0]
        assert cid is not None
        for provider in providers:
            repo.upsert_identity(conn, provider, person[provider], cid, now, email=person["email"])
    return cid


def _found(url: str) -> bool:
    return requests.get(url, timeout=10).status_code == 200


def _in_hubspot(sb: Sandbox, record_id: str) -> bool:
    return _found(f"{sb.hubspot_url}/_sandbox/hubspot/contacts/{record_id}")


def _in_klaviyo(sb: Sandbox, profile_id: str) -> bool:
    return _found(f"{sb.klaviyo_url}/_sandbox/klaviyo/profiles/{profile_id}")


def _klaviyo_jobs(sb: Sandbox) -> list[dict[str, Any]]:
    return list(requests.get(f"{sb.klaviyo_url}/_sandbox/klaviyo/deletion-jobs", timeout=10).json())


def _gdpr_log(sb: Sandbox) -> list[dict[str, Any]]:
    entries = requests.get(f"{sb.hubspot_url}/_sandbox/log", params={"route": "contacts.gdpr_delete"},
                           timeout=10).json()["entries"]
    return list(entries)


def _rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(RD).order_by(RD.c.id))]


def _deletion_audit(engine: Engine) -> list[dict[str, Any]]:
    a = schema.audit_log
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(a).where(a.c.op == "privacy_delete")
                                                       .order_by(a.c.id))]


def _connectors(sb: Sandbox, clock: FakeClock, klaviyo_key: str = "pk_sandbox") -> dict[str, Any]:
    """Connectors on the sandbox whose retries and rate budgets wait on ``clock`` (no sleeping)."""
    def policy(provider: str) -> RetryPolicy:
        return RetryPolicy(provider, sleep=clock.sleep, clock=clock.now, jitter=lambda c: c)

    return {
        "hubspot": HubSpotConnector(sb.hubspot_token, sb.hubspot_url, email_events=False,
                                    budget=RateBudget(hubspot_spec(), clock=clock.now, sleep=clock.sleep),
                                    retry=policy("hubspot")),
        "klaviyo": KlaviyoConnector(klaviyo_key, sb.klaviyo_url,
                                    budget=RateBudget(klaviyo_spec(), clock=clock.now, sleep=clock.sleep),
                                    retry=policy("klaviyo")),
    }


# ------------------------------------------------------------------------------ which requests


def test_targets_prefer_record_ids_and_fall_back_to_email() -> None:
    keys = [("email", "ann@example.com"), ("external_id", "c-1"), ("hubspot", "501"), ("hubspot", "502")]
    wanted, unknown = targets(keys, ["hubspot", "klaviyo"])
    assert wanted == [Target("hubspot", "id", "501"), Target("hubspot", "id", "502"),
                      Target("klaviyo", "email", "ann@example.com")]
    assert unknown == []
    assert targets([("external_id", "c-1")], ["klaviyo"]) == ([], ["klaviyo"])
    assert Target("hubspot", "id", "501").key_hash == forget.key_hash("hubspot", "501")
    by_email = Target("klaviyo", "email", "Ann@Example.com")
    assert by_email.key_hash == forget.key_hash("email", "ann@example.com")


def test_the_hubspot_connector_deletes_by_id_or_email_and_counts_a_missing_record_as_done(
        sb: Sandbox) -> None:
    by_id, by_email = _people(sb, 2, 9)
    clock = FakeClock()
    hubspot = _connectors(sb, clock)["hubspot"]
    before = len(_gdpr_log(sb))
    assert hubspot.request_deletion("id", by_id["hubspot"]).status is DeletionStatus.DONE
    assert hubspot.request_deletion("email", by_email["email"].upper()).status is DeletionStatus.DONE
    assert not _in_hubspot(sb, by_id["hubspot"]) and not _in_hubspot(sb, by_email["hubspot"])
    again = hubspot.request_deletion("id", by_id["hubspot"])  # gone already: 404
    assert again.status is DeletionStatus.DONE
    assert [e["status"] for e in _gdpr_log(sb)[before:]] == [204, 204, 404]
    hubspot.close()
    wrong = HubSpotConnector("pat-wrong", sb.hubspot_url, email_events=False)
    with pytest.raises(AuthError):  # a bad token is not a verdict on the request
        wrong.request_deletion("id", by_email["hubspot"])
    wrong.close()


# ------------------------------------------------------------------------------ segsync forget


def test_forget_command_deletes_the_person_in_both_providers_by_id(
        sb: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, sb)
    engine = open_store(f"sqlite:///{tmp_path / 'rd.db'}")
    [person] = _people(sb, 1, 0)
    _local(engine, person)
    jobs_before = len(_klaviyo_jobs(sb))
    assert _in_hubspot(sb, person["hubspot"]) and _in_klaviyo(sb, person["klaviyo"])

    assert main(["--config", str(config), "forget", person["email"], "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["contacts"] == 1 and out["notes"] == []
    assert out["remote_deletions"] == [
        {"provider": "hubspot", "by": "id", "record": person["hubspot"], "status": "done", "error": None},
        {"provider": "klaviyo", "by": "id", "record": person["klaviyo"], "status": "done", "error": None}]
    assert not _in_hubspot(sb, person["hubspot"]) and not _in_klaviyo(sb, person["klaviyo"])
    [job] = _klaviyo_jobs(sb)[jobs_before:]
    assert (job["by"], job["value"], job["deleted"]) == ("id", person["klaviyo"], [person["klaviyo"]])
    rows = _rows(engine)
    assert [(r["provider"], r["id_kind"], r["status"], r["id_value"]) for r in rows] == [
        ("hubspot", "id", "done", None), ("klaviyo", "id", "done", None)]  # the ids are erased
    assert rows[0]["key_hash"] == forget.key_hash("hubspot", person["hubspot"])
    entries = _deletion_audit(engine)
    assert [(e["destination"], e["status"], e["attempts"]) for e in entries] == [
        ("hubspot", "applied", 1), ("klaviyo", "applied", 1)]
    assert all(e["contact_key"] == forget.hide_key(person["email"]) for e in entries)
    assert person["email"] not in json.dumps([{**e, "at": 0} for e in entries])
    engine.dispose()


def test_forget_asks_by_email_where_no_record_is_known(sb: Sandbox, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, sb)
    engine = open_store(f"sqlite:///{tmp_path / 'rd.db'}")
    [person] = _people(sb, 1, 1)
    _local(engine, person, providers=("hubspot",))  # no Klaviyo identity locally
    jobs_before = len(_klaviyo_jobs(sb))

    assert main(["--config", str(config), "forget", f"hubspot:{person['hubspot']}"]) == 0
    text = capsys.readouterr().out
    assert f"hubspot: deletion requested (record {person['hubspot']})" in text
    assert "klaviyo: deletion requested (by email)" in text
    assert person["email"] not in text
    assert not _in_hubspot(sb, person["hubspot"]) and not _in_klaviyo(sb, person["klaviyo"])
    [job] = _klaviyo_jobs(sb)[jobs_before:]
    assert (job["by"], job["deleted"]) == ("email", [person["klaviyo"]])
    assert [(r["provider"], r["id_kind"], r["status"], r["id_value"]) for r in _rows(engine)] == [
        ("hubspot", "id", "done", None), ("klaviyo", "email", "done", None)]
    engine.dispose()


def test_forget_with_an_unreachable_provider_keeps_the_request_and_says_so(
        sb: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "rd.toml"
    path.write_text(CONFIG.format(hubspot=sb.hubspot_url, klaviyo="http://127.0.0.1:9", remote='["klaviyo"]'))
    engine = open_store(f"sqlite:///{tmp_path / 'rd.db'}")
    [person] = _people(sb, 1, 2)
    _local(engine, person)
    forget.forget(engine, "earlier@example.com", now_ms=1_000, remote=["klaviyo"])  # left by a crash

    started = time.monotonic()
    assert main(["--config", str(path), "forget", person["email"]]) == 0
    assert time.monotonic() - started < 30  # the short send policy, not minutes of retries
    text = capsys.readouterr().out
    assert "contacts" in text and "klaviyo: deletion queued, not sent yet (record" in text
    assert "could not connect" in text and "segsync serve" in text
    earlier, row = _rows(engine)
    assert (row["status"], row["id_value"], row["attempts"]) == ("pending", person["klaviyo"], 1)
    assert (earlier["status"], earlier["attempts"]) == ("pending", 0)  # forget sends its own only
    assert _in_klaviyo(sb, person["klaviyo"])
    with engine.connect() as conn:
        assert forget.is_suppressed(conn, email=person["email"])  # the local forget stands
    engine.dispose()


def test_a_provider_without_its_secret_does_not_hold_back_the_other(
        sb: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGSYNC_RD_HS")
    config = _config(tmp_path, sb)
    engine = open_store(f"sqlite:///{tmp_path / 'rd.db'}")
    first, second = _people(sb, 2, 7)
    _local(engine, first)
    assert main(["--config", str(config), "forget", first["email"], "--json"]) == 0
    hs, kl = json.loads(capsys.readouterr().out)["remote_deletions"]
    assert (hs["status"], hs["error"]) == (
        "pending", "sources.hubspot.token: environment variable SEGSYNC_RD_HS is not set")
    assert (kl["status"], kl["error"]) == ("done", None)
    assert _in_hubspot(sb, first["hubspot"]) and not _in_klaviyo(sb, first["klaviyo"])

    # serve's sender: the same, then the HubSpot request goes out once the secret is there
    loop = remote_delete.RemoteDeletionLoop(engine, load_project(config), ["hubspot", "klaviyo"])
    forget.forget(engine, second["email"], now_ms=int(time.time() * 1000), remote=["klaviyo"])
    report = loop.run_once()
    assert "SEGSYNC_RD_HS" in report.stopped["hubspot"] and [s.status for s in report.sent] == ["done"]
    assert not _in_klaviyo(sb, second["klaviyo"])
    assert [r["attempts"] for r in _rows(engine) if r["provider"] == "hubspot"] == [0]  # never tried
    monkeypatch.setenv("SEGSYNC_RD_HS", ENV["SEGSYNC_RD_HS"])
    assert [s.status for s in loop.run_once().sent] == ["done"]
    loop.stop()
    assert not _in_hubspot(sb, first["hubspot"]) and remote_delete.pending(engine) == 0
    engine.dispose()


# ------------------------------------------------------------------------------ webhooks


def test_hubspot_privacy_webhook_requests_deletion_in_klaviyo_only(sb: Sandbox, tmp_path: Path) -> None:
    project = load_project(_config(tmp_path, sb))
    engine = open_store(f"sqlite:///{tmp_path / 'rd.db'}")
    [person] = _people(sb, 1, 3)
    _local(engine, person)
    gdpr_before, jobs_before = len(_gdpr_log(sb)), len(_klaviyo_jobs(sb))
    now = int(time.time() * 1000)
    app = create_app(engine, project, settings(forget_remote=("hubspot", "klaviyo")), hook=lambda ids: None,
                     run_worker=False, clock=lambda: now)
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        worker = app.state.worker
        assert worker.remote is not None
        worker.remote.start()  # the sending thread of serve, woken by the worker's pass
        try:
            body = json.dumps([hs_event("contact.privacyDeletion", int(person["hubspot"]),
                                        occurred=now - 1000)]).encode()
            assert client.post("/webhooks/hubspot", content=body,
                               headers=hs_headers(body, ts=now)).status_code == 200
            while worker.run_once():
                pass
            deadline = time.monotonic() + 20
            while _rows(engine)[0]["status"] != "done" and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            worker.remote.stop()
    [row] = _rows(engine)
    assert (row["provider"], row["id_kind"], row["status"], row["trigger"]) == (
        "klaviyo", "id", "done", "webhook")
    assert not _in_klaviyo(sb, person["klaviyo"])
    assert _in_hubspot(sb, person["hubspot"])  # nothing was sent back to HubSpot
    assert len(_gdpr_log(sb)) == gdpr_before
    assert [j["value"] for j in _klaviyo_jobs(sb)[jobs_before:]] == [person["klaviyo"]]
    engine.dispose()


# ------------------------------------------------------------------------------ durability


def test_a_crash_before_sending_and_provider_faults_leave_requests_pending_until_a_later_send(
        sb: Sandbox, tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 'rd.db'}")
    people = _people(sb, 2, 4)
    for person in people:
        _local(engine, person)
    t0 = 1_800_000_000_000
    for person in people:  # the local forget commits; the process "crashes" before sending
        forget.forget(engine, person["email"], now_ms=t0, remote=["hubspot", "klaviyo"])
    assert [(r["status"], r["id_value"]) for r in _rows(engine)] == [
        ("pending", people[0]["hubspot"]), ("pending", people[0]["klaviyo"]),
        ("pending", people[1]["hubspot"]), ("pending", people[1]["klaviyo"])]

    clock = FakeClock()
    conns = _connectors(sb, clock)
    sb.set_faults("429=1@contacts.gdpr_delete,503=1@request_profile_deletion", seed=3)
    try:
        report = send_remote_deletions(engine, conns, t0 + 1)
    finally:
        sb.set_faults(None)
    # one failed request per provider (after the policy's retries) pauses that provider
    assert [(s.id, s.status) for s in report.sent] == [(1, "pending"), (2, "pending")]
    assert set(report.stopped) == {"hubspot", "klaviyo"} and report.pending == 4 and not report.ok
    rows = _rows(engine)
    retry_at = t0 + 1 + 30_000
    assert [(r["status"], r["attempts"], r["next_attempt_at"]) for r in rows] == [
        ("pending", 1, retry_at), ("pending", 1, retry_at), ("pending", 0, t0), ("pending", 0, t0)]
    assert "429" in rows[0]["last_error"] and "503" in rows[1]["last_error"]
    assert all(r["id_value"] is not None and r["claim_token"] is None for r in rows)
    assert all(_in_hubspot(sb, p["hubspot"]) and _in_klaviyo(sb, p["klaviyo"]) for p in people)
    assert [e["status"] for e in _deletion_audit(engine)] == ["failed"] * 2

    sooner = send_remote_deletions(engine, conns, t0 + 29_000)  # 1 and 2 are backing off
    assert [(s.id, s.status) for s in sooner.sent] == [(3, "done"), (4, "done")] and sooner.pending == 2
    later = send_remote_deletions(engine, conns, t0 + 31_001)
    assert [(s.id, s.status) for s in later.sent] == [(1, "done"), (2, "done")]
    assert later.ok and later.pending == 0
    assert [(r["status"], r["id_value"], r["attempts"]) for r in _rows(engine)] == [
        ("done", None, 2), ("done", None, 2), ("done", None, 1), ("done", None, 1)]
    assert not any(_in_hubspot(sb, p["hubspot"]) or _in_klaviyo(sb, p["klaviyo"]) for p in people)
    assert send_remote_deletions(engine, conns, t0 + 99_000_000).sent == []  # never sent twice
    conns["hubspot"].close()
    engine.dispose()


def test_a_bad_token_stops_the_provider_and_keeps_its_requests(sb: Sandbox, tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 'rd.db'}")
    forget.forget(engine, "someone@example.com", now_ms=5_000, remote=["klaviyo"])
    forget.forget(engine, "other@example.com", now_ms=5_000, remote=["klaviyo"])
    conns = _connectors(sb, FakeClock(), klaviyo_key="pk_wrong")
    report = send_remote_deletions(engine, conns, 6_000)
    conns["hubspot"].close()
    assert "AuthError" in report.stopped["klaviyo"]
    assert len(report.sent) == 1  # stopped at the first answer; the second was not tried
    rows = _rows(engine)
    assert [(r["status"], r["attempts"]) for r in rows] == [("pending", 1), ("pending", 0)]
    assert rows[1]["claim_token"] is None and all(r["id_value"] for r in rows)
    engine.dispose()


def test_a_rejected_request_is_not_retried_and_its_value_is_erased(sb: Sandbox, tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 'rd.db'}")
    with begin_write(engine) as conn:  # an address segsync accepts and the stand-in refuses (IDN TLD)
        remote_delete.enqueue(conn, [Target("klaviyo", "email", "ann@example.\u0440\u0444")], reason="forget",
                              trigger="manual", contact_key=None, now_ms=5_000)
    conns = _connectors(sb, FakeClock())
    report = send_remote_deletions(engine, conns, 6_000)
    assert [s.status for s in report.sent] == ["rejected"] and not report.ok
    [row] = _rows(engine)
    assert (row["status"], row["id_value"]) == ("rejected", None) and "Invalid email" in row["last_error"]
    assert [e["status"] for e in _deletion_audit(engine)] == ["dead"]
    assert send_remote_deletions(engine, conns, 99_000_000).sent == []
    conns["hubspot"].close()
    engine.dispose()


def test_run_sends_pending_deletions_before_pushing(sb: Sandbox, tmp_path: Path) -> None:
    project = load_project_text(CONFIG.format(hubspot=sb.hubspot_url, klaviyo=sb.klaviyo_url,
                                              remote='["klaviyo"]'), "rd.toml", base_dir=tmp_path)
    engine = open_store(f"sqlite:///{tmp_path / 'rd.db'}")
    [person] = _people(sb, 1, 6)
    _local(engine, person)
    forget.forget(engine, person["email"], now_ms=1_000, remote=["klaviyo"])
    conns = _connectors(sb, FakeClock())
    report = run_job(project, RunOptions(pull=False), engine=engine, connectors=conns)
    conns["hubspot"].close()
    assert report.deletions.count("done") == 1 and report.status == "ok"
    assert report.to_json()["deletions"]["done"] == 1
    assert not _in_klaviyo(sb, person["klaviyo"]) and _in_hubspot(sb, person["hubspot"])
    assert _deletion_audit(engine)[0]["run_id"] == report.run_id
    engine.dispose()


# ------------------------------------------------------------------------------ Klaviyo stand-in


@pytest.fixture
def kl() -> Iterator[tuple[SandboxServer, KlaviyoState]]:
    settings_ = KlaviyoSettings(rate_limits=False)
    state = KlaviyoState(settings_)
    with SandboxServer(build_app(state, settings_)) as server:
        yield server, state


def _job(profile: dict[str, Any]) -> dict[str, Any]:
    return {"data": {"type": "data-privacy-deletion-job", "attributes": {"profile": {"data": profile}}}}


BAD_BODIES = [
    pytest.param(b"{not json", "/", id="not-json"),
    pytest.param(json.dumps({"data": []}).encode(), "/data", id="data-not-object"),
    pytest.param(json.dumps({"data": {"type": "profile", "attributes": {}}}).encode(), "/data/type",
                 id="wrong-type"),
    pytest.param(json.dumps({"data": {"type": "data-privacy-deletion-job", "attributes": {}}}).encode(),
                 "/data/attributes/profile", id="no-profile"),
    pytest.param(json.dumps(_job({"type": "event", "id": "X", "attributes": {}})).encode(),
                 "/data/attributes/profile/data/type", id="not-a-profile"),
    pytest.param(json.dumps(_job({"type": "profile", "id": "X"})).encode(),
                 "/data/attributes/profile/data/attributes", id="no-attributes"),
    pytest.param(json.dumps(_job({"type": "profile", "attributes": {}})).encode(),
                 "/data/attributes/profile/data", id="no-identifier"),
    pytest.param(json.dumps(_job({"type": "profile", "id": "X", "attributes": {"email": "a@b.co"}})).encode(),
                 "/data/attributes/profile/data", id="two-identifiers"),
    pytest.param(json.dumps(_job({"type": "profile", "id": 7, "attributes": {}})).encode(),
                 "/data/attributes/profile/data/id", id="id-not-string"),
    pytest.param(json.dumps(_job({"type": "profile", "attributes": {"email": "nope"}})).encode(),
                 "/data/attributes/profile/data/attributes/email", id="bad-email"),
    pytest.param(json.dumps(_job({"type": "profile", "attributes": {"phone_number": "555"}})).encode(),
                 "/data/attributes/profile/data/attributes/phone_number", id="bad-phone"),
]


@pytest.mark.parametrize(("body", "pointer"), BAD_BODIES)
def test_klaviyo_stand_in_rejects_malformed_deletion_jobs_in_klaviyo_shape(
        kl: tuple[SandboxServer, KlaviyoState], body: bytes, pointer: str) -> None:
    server, state = kl
    with state.lock:
        state.create_profile({"email": "keep@example.com"})
    r = requests.post(server.url + JOBS, data=body, headers=KL_HEADERS, timeout=10)
    assert r.status_code == 400
    assert r.headers["Content-Type"] == "application/vnd.api+json"
    [error] = r.json()["errors"]
    assert {"id", "code", "title", "detail", "source"} <= set(error) and error["status"] == 400
    assert error["code"] in ("invalid", "parse_error") and error["source"]["pointer"] == pointer
    assert len(state.profiles) == 1 and state.deletion_jobs == []


def test_klaviyo_stand_in_deletes_the_profile_with_its_events_and_memberships(
        kl: tuple[SandboxServer, KlaviyoState]) -> None:
    server, state = kl
    with state.lock:
        ann = state.create_profile({"email": "ann@example.com", "phone_number": "+14155550100"})
        bob = state.create_profile({"email": "bob@example.com"})
        metric = state.metric("Placed Order")
        for n, who in enumerate((ann, bob, ann)):
            state.add_event(metric, who, 1_000 + n, {"n": n}, unique_id=f"u{n}")
        vip = state.create_list("vip")
        state.add_members(vip, [ann.id, bob.id])

    def post(profile: dict[str, Any]) -> requests.Response:
        return requests.post(server.url + JOBS, json=_job(profile), headers=KL_HEADERS, timeout=10)

    r = post({"type": "profile", "attributes": {"phone_number": "+14155550100"}})
    assert (r.status_code, r.content) == (202, b"")
    assert set(state.profiles) == {bob.id} and list(vip.members) == [bob.id]
    assert len(state.events) == 1 and state.events.profile[0] == bob.index
    assert state.find("email", "ann@example.com") is None
    events = requests.get(f"{server.url}/api/events", headers=KL_HEADERS, timeout=10).json()["data"]
    assert [e["relationships"]["profile"]["data"]["id"] for e in events] == [bob.id]
    assert post({"type": "profile", "attributes": {"email": "gone@example.com"}}).status_code == 202
    jobs = requests.get(f"{server.url}/_sandbox/klaviyo/deletion-jobs", timeout=10).json()
    assert [(j["by"], j["deleted"], j["events"]) for j in jobs] == [
        ("phone_number", [ann.id], 2), ("email", [], 0)]
    assert requests.get(f"{server.url}/_sandbox/klaviyo/stats", timeout=10).json()["deletion_jobs"] == 2
    assert requests.get(server.url + JOBS, headers=KL_HEADERS, timeout=10).status_code == 405
    assert [(e.route, e.status) for e in server.app.log if e.route == "request_profile_deletion"] == [
        ("request_profile_deletion", 202), ("request_profile_deletion", 202)]


def test_the_deletion_rate_tier_follows_the_sdk_and_is_enforced() -> None:
    from openapi_client.api.data_privacy_api import DataPrivacyApi

    doc = inspect.getdoc(DataPrivacyApi.request_profile_deletion) or ""
    assert "Burst: `3/s`" in doc and "Steady: `60/m`" in doc
    assert EXTRA_TIERS["request_profile_deletion"] == KLAVIYO_LIMITS["data_privacy"] == (3, 60, None)

    class Clock:
        t = 60 * 16_667 + 20.0

        def __call__(self) -> float:
            return self.t

    settings_ = KlaviyoSettings(clock=Clock())
    with SandboxServer(build_app(KlaviyoState(settings_), settings_)) as server:
        body = _job({"type": "profile", "attributes": {"email": "x@example.com"}})
        statuses = [requests.post(server.url + JOBS, json=body, headers=KL_HEADERS, timeout=10).status_code
                    for _ in range(4)]
    assert statuses == [202, 202, 202, 429]


def test_the_klaviyo_connector_request_matches_the_stand_in(kl: tuple[SandboxServer, KlaviyoState]) -> None:
    server, state = kl
    with state.lock:
        p = state.create_profile({"email": "sdk@example.com"})
    conn = KlaviyoConnector("pk_sandbox", server.url, budget=RateBudget(klaviyo_spec()))
    assert conn.request_deletion("email", "SDK@example.com ").status is DeletionStatus.DONE
    assert p.id not in state.profiles
    assert conn.request_deletion("id", p.id).status is DeletionStatus.DONE  # again: still accepted
    assert [(j.by, j.deleted) for j in state.deletion_jobs] == [("email", [p.id]), ("id", [])]


# ------------------------------------------------------------------------------ migration 6


def test_migrating_a_v5_store_to_v6_keeps_its_data(store_url: str, tmp_path: Path) -> None:
    engine = open_store(store_url, tmp_path, migrate=False)
    assert migrate(engine, MIGRATIONS[:5]) == [1, 2, 3, 4, 5]
    with begin_write(engine) as conn:
        cid = repo.contact_ids(conn, [("ann@example.com", "c-1")], 10)[0]
        repo.upsert_identity(conn, "hubspot", "501", cid or 0, 10, email="ann@example.com")
        forget.suppress_keys(conn, [("email", "gone@example.com")], "forget", 11)
    tables = ("contacts", "identities", "suppressions")

    def dump() -> dict[str, list[tuple[Any, ...]]]:
        with engine.connect() as conn:
            return {t: sorted(tuple(r) for r in conn.execute(select(schema.metadata.tables[t])))
                    for t in tables}

    before = dump()
    assert all(before.values())
    assert MIGRATIONS[5].version == 6 and migrate(engine, MIGRATIONS[:6]) == [6]
    assert dump() == before
    with engine.connect() as conn:
        assert current_version(conn) == 6
        assert conn.execute(select(RD)).all() == []
    migrate(engine)  # and on to the newest version, if any
    assert dump() == before
    with begin_write(engine) as conn:  # and the new table works
        ids = remote_delete.enqueue(conn, [Target("hubspot", "id", "501")], reason="forget", trigger="manual",
                                    contact_key=None, now_ms=12)
    assert [(r["id"], r["status"]) for r in _rows(engine)] == [(ids[0], "pending")]
    engine.dispose()
