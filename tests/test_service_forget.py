"""Deletion and privacy: forget removes every trace, suppression keeps the person out."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select

from sync.cli import main
from sync.service import forget
from sync.store import repo, schema
from sync.store.tx import begin_write
from tests.service_support import (
    CONFIG,
    ENV,
    NOW,
    Service,
    count,
    hs_event,
    kl_body,
    kl_headers,
    prop_change,
    start,
)


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    yield from start(tmp_path)


def _person(engine: Engine, email: str = "ann@example.com") -> int:
    """A contact in both providers with an event, a membership, values and a queued push."""
    with begin_write(engine) as conn:
        cid = repo.contact_ids(conn, [(email, "ext-ann")], NOW)[0]
        assert cid is not None
        repo.upsert_identity(conn, "hubspot", "501", cid, NOW, email=email)
        repo.upsert_identity(conn, "klaviyo", "P1", cid, NOW, email=email)
        type_id = repo.event_type_ids(conn, ["order_placed"])["order_placed"]
        repo.insert_events(conn, [repo.EventRow(cid, type_id, NOW, 5.0, None, "api", "e1")])
        conn.execute(insert(schema.memberships).values(contact_id=cid, segment="pro", entered_at=NOW,
                                                       rule_hash="x"))
        conn.execute(insert(schema.computed_values).values(contact_id=cid, name="f", value=1, updated_at=NOW))
        conn.execute(insert(schema.desired_values).values(destination="hubspot", record_id="501",
                                                          target="field:x", contact_id=cid, value=1,
                                                          updated_at=NOW))
        conn.execute(insert(schema.acked_values).values(destination="klaviyo", record_id="P1",
                                                        target="field:x", value=1, acked_at=NOW))
        conn.execute(insert(schema.outbox).values(
            destination="hubspot", record_id="501", target="field:x", op="set_field", value=2,
            idempotency_key="k", contact_id=cid, trigger="t", status="pending", attempts=0,
            next_attempt_at=NOW, created_at=NOW, updated_at=NOW))
        conn.execute(insert(schema.audit_log).values(
            at=NOW, trigger="t", contact_id=cid, contact_key=email, destination="hubspot", record_id="501",
            target="field:x", op="set_field", status="applied", attempts=1))
    return cid


TABLES = ("contacts", "identities", "events", "memberships", "computed_values", "desired_values",
          "acked_values", "outbox")


@pytest.mark.parametrize("key", ["Ann@Example.com", "hubspot:501", "klaviyo:P1", "external_id:ext-ann"])
def test_forget_removes_everything_and_suppresses_every_key(svc: Service, key: str) -> None:
    _person(svc.engine)
    report = forget.forget(svc.engine, key, now_ms=NOW)
    assert report.contacts == 1 and report.events == 1 and report.queued_pushes == 1
    assert {t: count(svc.engine, t) for t in TABLES} == dict.fromkeys(TABLES, 0)
    with svc.engine.connect() as conn:
        assert conn.execute(select(schema.audit_log.c.contact_key)).scalar_one().startswith("h:")
        stored = set(conn.execute(select(schema.suppressions.c.key_hash)).scalars())
        for kind, value in [("email", "ann@example.com"), ("hubspot", "501"), ("klaviyo", "P1"),
                            ("external_id", "ext-ann")]:
            assert forget.is_suppressed(conn, **({"email": value} if kind == "email" else
                                                 {"external_id": value} if kind == "external_id" else
                                                 {"provider": kind, "provider_id": value}))
        assert not forget.is_suppressed(conn, email="bob@example.com", provider="hubspot", provider_id="502")
    assert "ann@example.com" not in " ".join(stored)  # only hashes are kept


def test_suppressed_people_are_not_brought_back_by_webhooks_or_events(svc: Service) -> None:
    _person(svc.engine)
    forget.forget(svc.engine, "ann@example.com", now_ms=NOW)
    svc.post_hubspot([prop_change(501, "plan", "pro"), prop_change(777, "email", "ANN@example.com")])
    body = kl_body([("evt_9", "P1", "ann@example.com"), ("evt_10", "P9", "ann@example.com")])
    svc.client.post("/webhooks/klaviyo", content=body, headers=kl_headers(body))
    svc.client.post("/events", headers={"X-API-Key": "events-key-123"},
                    json={"events": [{"type": "order_placed", "email": "ann@example.com", "ts": NOW}]})
    svc.work()
    with svc.engine.connect() as conn:
        outcomes = conn.execute(select(schema.inbox.c.outcome)).scalars().all()
    assert outcomes == ["suppressed"] * 5
    assert count(svc.engine, "contacts") == 0 and count(svc.engine, "events") == 0


def test_hubspot_privacy_deletion_forgets_the_person(svc: Service) -> None:
    _person(svc.engine)
    svc.post_hubspot([hs_event("contact.privacyDeletion", 501)])
    svc.work()
    assert count(svc.engine, "contacts") == 0 and count(svc.engine, "events") == 0
    with svc.engine.connect() as conn:
        assert forget.is_suppressed(conn, email="ann@example.com")
        assert forget.is_suppressed(conn, provider="klaviyo", provider_id="P1")


def test_forget_of_an_unknown_key_still_suppresses(svc: Service) -> None:
    report = forget.forget(svc.engine, "nobody@example.com", now_ms=NOW, remote=["hubspot", "klaviyo"])
    assert report.contacts == 0 and report.suppressed == 1
    # nothing known locally but the email: both providers are asked by email
    assert [(t.provider, t.kind, t.value) for _, t in report.remote] == [
        ("hubspot", "email", "nobody@example.com"), ("klaviyo", "email", "nobody@example.com")]
    assert report.notes == [] and count(svc.engine, "remote_deletions") == 2
    unknown = forget.forget(svc.engine, "external_id:c-9", now_ms=NOW, remote=["klaviyo"])
    assert unknown.remote == [] and unknown.notes == [
        "klaviyo: deletion not requested: no klaviyo record id and no email is known for this person; "
        "request it there"]


def test_forget_command(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KLAVIYO_API_KEY", raising=False)  # [sources.klaviyo] api_key: cannot send
    config = tmp_path / "segsync.toml"
    config.write_text(f'[store]\nurl = "sqlite:///cli.db"\n{CONFIG}\nforget_remote = ["klaviyo"]\n')
    from sync.store.db import open_store

    engine = open_store(f"sqlite:///{tmp_path / 'cli.db'}")
    _person(engine)
    assert main(["--config", str(config), "forget", "hubspot:501", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["contacts"] == 1 and out["new_suppressions"] == 4
    assert out["notes"] == []
    [request] = out["remote_deletions"]  # queued with the forget, not sent: the key is missing
    assert request == {"provider": "klaviyo", "by": "id", "record": "P1", "status": "pending",
                       "error": "sources.klaviyo.api_key: environment variable KLAVIYO_API_KEY is not set"}
    assert main(["--config", str(config), "forget", "not an email@"]) == 2
    assert "forget: invalid email" in capsys.readouterr().err
    assert count(engine, "suppressions") == 4 and count(engine, "remote_deletions") == 1
    engine.dispose()
    assert os.path.exists(tmp_path / "cli.db")
