"""Pull from the sandbox's HubSpot and Klaviyo stand-ins (real connectors, official SDKs, loopback
HTTP) into a real store: one contact per person, the expected events, then only the new data
after live activity; and the ``segsync pull`` command."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine

from connectors.sandbox import Sandbox, start_sandbox
from connectors.sandbox.dataset import Dataset
from mapping.config import load_project_text
from mapping.project import Project
from sync.cli import main
from sync.connect import open_connectors
from sync.pull import PullSummary, pull
from sync.store import schema
from tests.pull_support import contacts_table, count, events_of, identities

CONFIG = """
[store]
url = "{store}"

[attributes]
city = "string"
country = "string"
lifecycle_stage = "string"

[events.opened_email]
properties = {{ subject = "string" }}
aliases = {{ hubspot = ["OPEN"], klaviyo = ["Opened Email"] }}

[events.placed_order]
properties = {{ item_count = "number", items = "list" }}
aliases = {{ klaviyo = ["Placed Order"] }}

[sources.hubspot]
token = "env:SEGSYNC_SANDBOX_HS"
base_url = "{hubspot}"
[sources.hubspot.attributes]
lifecycle_stage = "lifecyclestage"

[sources.klaviyo]
api_key = "env:SEGSYNC_SANDBOX_KL"
base_url = "{klaviyo}"
"""


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    with start_sandbox(contacts=300, seed=11, rate_limits=False) as sb:
        monkeypatch.setenv("SEGSYNC_SANDBOX_HS", sb.hubspot_token)
        monkeypatch.setenv("SEGSYNC_SANDBOX_KL", sb.klaviyo_key)
        yield sb


def config(sb: Sandbox, store: str = "sqlite:///store.db") -> str:
    return CONFIG.format(store=store, hubspot=sb.hubspot_url, klaviyo=sb.klaviyo_url)


def run(engine: Engine, project: Project) -> PullSummary:
    with open_connectors(project) as connectors:
        summary = pull(engine, project, connectors)
    assert summary.ok, {k: s.error for k, s in summary.sources.items()}
    return summary


def expected_people(data: Dataset) -> tuple[set[str], int]:
    """Distinct valid emails of the people in either system, and how many records have no
    usable email (each is a contact of its own: nothing can join it to another record)."""
    emails = {p.email.strip().lower() for p in data.people
              if p.quality != "invalid" and (p.in_hubspot or p.in_klaviyo)}
    keyless = sum(p.in_hubspot for p in data.people if p.quality == "invalid") + sum(
        p.in_klaviyo for p in data.people if p.quality == "invalid")
    return emails, keyless


def expected_events(data: Dataset) -> tuple[int, int]:
    acts, people = data.activities, data.people
    hubspot = sum(people[int(i)].in_hubspot for i in acts.person[acts.select(["email_opened"])])
    klaviyo = sum(people[int(i)].in_klaviyo
                  for i in acts.person[acts.select(["email_opened", "order_placed"])])
    return hubspot, klaviyo


def live(url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{url}/_sandbox/live", json=body, timeout=10)
    response.raise_for_status()
    out: dict[str, Any] = response.json()
    return out


def test_pull_both_sources_then_only_what_is_new(sandbox: Sandbox, eval_engine: Engine) -> None:
    data = sandbox.dataset
    assert data.summary()["duplicates"] and data.summary()["invalid_emails"]  # the cases are there
    project = load_project_text(config(sandbox))
    first = run(eval_engine, project)
    hs, kl = first.sources["hubspot"], first.sources["klaviyo"]

    emails, keyless = expected_people(data)
    rows = contacts_table(eval_engine)
    assert len(rows) == len(emails) + keyless
    assert {r["email"] for r in rows if r["email"]} == emails
    ids = identities(eval_engine)
    assert len(ids) == hs.contacts_seen + kl.contacts_seen
    owner = {(p, i["email"]): i["contact_id"] for (p, _), i in ids.items() if i["email"]}
    both = {p.email.strip().lower() for p in data.people
            if p.in_hubspot and p.in_klaviyo and p.quality != "invalid"}
    assert all(owner[("hubspot", e)] == owner[("klaviyo", e)] for e in both)  # merged by email
    by_email = {r["email"]: r for r in rows}
    person = next(p for p in data.people if p.in_hubspot and p.quality == "ok")
    assert by_email[person.email]["attributes"]["lifecycle_stage"] == person.lifecycle_stage
    assert by_email[person.email]["attributes"]["city"] == person.city

    hubspot_events, klaviyo_events = expected_events(data)
    assert (hs.events_new, kl.events_new) == (hubspot_events, klaviyo_events)
    assert count(eval_engine, schema.events) == hubspot_events + klaviyo_events
    for s in (hs, kl):
        assert (s.events_unresolved, s.contacts_from_events, s.events_skipped, s.conflicts) == (0, 0, 0, [])

    hs_live = live(sandbox.hubspot_url, {"events": 40, "changes": 6, "seed": 3})["changes"]
    kl_live = live(sandbox.klaviyo_url, {"events": 40, "changes": 3, "seed": 3})["events"]
    new_contacts = sum(d["kind"] == "new_contact" for d in hs_live)
    opens = sum(d["kind"] == "email_event" and d["type"] == "OPEN" for d in hs_live)
    orders_and_opens = sum(e["metric"] in ("Opened Email", "Placed Order") for e in kl_live)
    assert opens and orders_and_opens and new_contacts
    gone = next(pid for (p, pid), i in ids.items() if p == "hubspot" and i["email"] == person.email)
    requests.delete(f"{sandbox.hubspot_url}/crm/v3/objects/contacts/{gone}", timeout=10,
                    headers={"Authorization": f"Bearer {sandbox.hubspot_token}"}).raise_for_status()

    second = run(eval_engine, project)
    hs2, kl2 = second.sources["hubspot"], second.sources["klaviyo"]
    assert hs2.contacts_archived == 1 and identities(eval_engine)[("hubspot", gone)]["archived"] is True
    assert by_email[person.email]["id"] in {r["id"] for r in contacts_table(eval_engine)}  # kept
    assert (hs2.contacts_new, hs2.events_new, kl2.contacts_new, kl2.events_new) == (
        new_contacts, opens, 0, orders_and_opens)
    # only the records modified since: the changes, and (HubSpot) the contacts whose opens and
    # clicks bumped hs_email_last_*_date
    assert hs2.contacts_seen <= 6 + 40 + 1 and 1 <= kl2.contacts_seen <= 3
    assert len(contacts_table(eval_engine)) == len(rows) + new_contacts

    third = run(eval_engine, project)
    for s in third.sources.values():
        assert (s.contacts_new, s.contacts_updated, s.events_new) == (0, 0, 0)


def test_pull_command(sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "segsync.toml"
    path.write_text(config(sandbox))
    assert main(["--config", str(path), "pull", "--source", "klaviyo", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and list(out["sources"]) == ["klaviyo"]
    klaviyo = out["sources"]["klaviyo"]
    assert klaviyo["contacts_new"] == klaviyo["contacts_seen"] == len(sandbox.klaviyo.state.profiles)

    assert main(["--config", str(path), "pull"]) == 0
    table = capsys.readouterr().out
    assert "hubspot" in table and "klaviyo" in table and "duplicate" in table and "…" not in table

    monkeypatch.setenv("SEGSYNC_SANDBOX_HS", "pat-wrong")
    assert main(["--config", str(path), "pull", "--json"]) == 1
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["ok"] is False and summary["sources"]["klaviyo"]["error"] is None
    assert "hubspot:" in summary["sources"]["hubspot"]["error"] and "pat-wrong" not in captured.err
    assert "error: hubspot:" in captured.err


def test_pull_command_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGSYNC_SANDBOX_HS", raising=False)
    path = tmp_path / "segsync.toml"
    path.write_text(CONFIG.format(store="sqlite:///s.db", hubspot="http://127.0.0.1:9", klaviyo="x"))
    assert main(["--config", str(path), "pull", "--source", "hubspot"]) == 2
    err = capsys.readouterr().err
    assert "sources.hubspot.token: environment variable SEGSYNC_SANDBOX_HS is not set" in err
    assert not (tmp_path / "s.db").exists()  # refused before the store or any request


def test_a_hubspot_merge_in_the_sandbox_joins_the_two_histories(sandbox: Sandbox,
                                                                eval_engine: Engine) -> None:
    data, project = sandbox.dataset, load_project_text(config(sandbox))
    acts = data.activities
    copied = {p.duplicate_of for p in data.people}  # their email also belongs to a duplicate
    opens = {i: len(acts.select(["email_opened"], person=i)) for i, p in enumerate(data.people)
             if p.in_hubspot and p.quality == "ok" and p.key not in copied}
    a, b = sorted(i for i, n in opens.items() if n)[:2]
    emails = [data.people[a].email, data.people[b].email]

    def pull_hubspot() -> PullSummary:
        with open_connectors(project, ["hubspot"]) as connectors:
            summary = pull(eval_engine, project, connectors, sources=["hubspot"])
        assert summary.ok, summary.sources["hubspot"].error
        return summary

    def events_per_contact() -> dict[int, int]:
        counts: dict[int, int] = {}
        for contact_id in events_of(eval_engine).values():
            counts[contact_id] = counts.get(contact_id, 0) + 1
        return counts

    pull_hubspot()
    ids = {i["email"]: (pid, i["contact_id"]) for (p, pid), i in identities(eval_engine).items()
           if p == "hubspot"}
    (survivor, kept), (merged, gone) = ids[emails[0]], ids[emails[1]]
    before = events_per_contact()
    assert kept != gone and (before[kept], before[gone]) == (opens[a], opens[b])

    requests.post(f"{sandbox.hubspot_url}/crm/v3/objects/contacts/merge", timeout=10,
                  json={"primaryObjectId": survivor, "objectIdToMerge": merged},
                  headers={"Authorization": f"Bearer {sandbox.hubspot_token}"}).raise_for_status()
    assert pull_hubspot().sources["hubspot"].merged == 1

    after = events_per_contact()
    assert after[kept] == opens[a] + opens[b] and gone not in after  # both histories, one contact
    rows = {r["id"]: r for r in contacts_table(eval_engine)}
    assert kept in rows and gone not in rows and rows[kept]["email"] == emails[0]
    assert identities(eval_engine)[("hubspot", merged)] == {"contact_id": kept, "email": emails[1],
                                                            "archived": True}
