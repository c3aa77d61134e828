"""Identity rules of sync.identity on a real store (SQLite and PostgreSQL): one contact per
person across providers, email changes, merges, archived marks, event references."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import Engine

from connectors.records import ContactRef
from sync import identity
from sync.identity import ContactOutcome, PulledContact
from sync.store import repo
from sync.store.tx import begin_write
from tests.pull_support import contacts_table, events_of, identities

NOW = 1_700_000_000_000


def upsert(engine: Engine, provider: str, *records: PulledContact, match: Any = "email") -> ContactOutcome:
    with begin_write(engine) as conn:
        return identity.upsert_pulled_contacts(conn, provider, list(records), NOW, match=match)


def rec(pid: str, email: str | None = None, ext: str | None = None, **attrs: Any) -> PulledContact:
    return PulledContact(pid, identity.normalised_email(email), ext, attrs)


def resolve(engine: Engine, provider: str, refs: Sequence[ContactRef]) -> list[int | None]:
    with begin_write(engine) as conn:
        return identity.resolve_refs(conn, provider, refs, NOW)[0]


def add_events(engine: Engine, source: str, contact_id: int, *ids: str) -> None:
    with begin_write(engine) as conn:
        type_id = repo.event_type_ids(conn, ["opened_email"])["opened_email"]
        repo.insert_events(conn, [repo.EventRow(contact_id, type_id, NOW, None, None, source, i)
                                  for i in ids])


def by_email(engine: Engine) -> dict[str | None, dict[str, Any]]:
    return {row["email"]: row for row in contacts_table(engine)}


@pytest.mark.parametrize("klaviyo_email", ["ann@example.com", "  Ann@Example.COM ", "ANN@EXAMPLE.COM"])
def test_same_email_in_both_providers_is_one_contact(eval_engine: Engine, klaviyo_email: str) -> None:
    first = upsert(eval_engine, "hubspot", rec("1", "ann@example.com", city="Oslo"))
    second = upsert(eval_engine, "klaviyo", rec("01K", klaviyo_email, "cust-1", plan="pro"))
    rows = contacts_table(eval_engine)
    assert len(rows) == 1
    assert rows[0]["email"] == "ann@example.com"
    assert rows[0]["external_id"] == "cust-1"  # a free key fills the contact's empty one
    assert rows[0]["attributes"] == {"city": "Oslo", "plan": "pro"}
    ids = identities(eval_engine)
    assert ids[("hubspot", "1")]["contact_id"] == ids[("klaviyo", "01K")]["contact_id"] == rows[0]["id"]
    assert (first.new, first.linked, second.new, second.updated, second.linked) == (1, 1, 0, 1, 1)


def test_email_change_on_the_same_provider_id_stays_one_contact(eval_engine: Engine) -> None:
    upsert(eval_engine, "hubspot", rec("1", "old@example.com", city="Oslo"))
    outcome = upsert(eval_engine, "hubspot", rec("1", "new@example.com", city="Rome"))
    rows = contacts_table(eval_engine)
    assert [(r["email"], r["attributes"]) for r in rows] == [("new@example.com", {"city": "Rome"})]
    assert identities(eval_engine)[("hubspot", "1")]["email"] == "new@example.com"
    assert (outcome.new, outcome.updated, outcome.conflicts) == (0, 1, [])
    # the old email is free again: a new record with it is someone new
    upsert(eval_engine, "klaviyo", rec("01K", "old@example.com"))
    assert set(by_email(eval_engine)) == {"new@example.com", "old@example.com"}


def test_email_change_to_another_contacts_email_keeps_them_apart(eval_engine: Engine) -> None:
    upsert(eval_engine, "hubspot", rec("1", "ann@example.com"))
    upsert(eval_engine, "klaviyo", rec("01K", "bob@example.com"))
    outcome = upsert(eval_engine, "hubspot", rec("1", "bob@example.com"))
    assert set(by_email(eval_engine)) == {"ann@example.com", "bob@example.com"}
    assert len(outcome.conflicts) == 1 and "bob@" not in outcome.conflicts[0]  # emails are hashed
    ann = by_email(eval_engine)["ann@example.com"]["id"]
    bob = by_email(eval_engine)["bob@example.com"]["id"]
    assert identities(eval_engine)[("hubspot", "1")] == {"contact_id": ann, "email": "bob@example.com",
                                                         "archived": False}
    # HubSpot's events to bob@ are record 1's (its current email); Klaviyo's are the other contact's
    assert resolve(eval_engine, "hubspot", [ContactRef(email="bob@example.com")]) == [ann]
    assert resolve(eval_engine, "klaviyo", [ContactRef(email="bob@example.com")]) == [bob]
    again = upsert(eval_engine, "hubspot", rec("1", "bob@example.com"))
    assert again.conflicts == [] and again.unchanged == 1  # reported once, when it happened


@pytest.mark.parametrize(("match", "contacts"), [("email", 2), ("external_id", 1)])
def test_match_order_decides_between_email_and_external_id(eval_engine: Engine, match: str,
                                                           contacts: int) -> None:
    upsert(eval_engine, "klaviyo", rec("01K", "ann@example.com", "cust-1"), match=match)
    upsert(eval_engine, "hubspot", rec("7", "ann@work.example", "cust-1"), match=match)
    assert len(contacts_table(eval_engine)) == contacts
    ids = identities(eval_engine)
    same = ids[("klaviyo", "01K")]["contact_id"] == ids[("hubspot", "7")]["contact_id"]
    assert same is (contacts == 1)


@pytest.mark.parametrize("match", ["email", "external_id"])
def test_first_key_wins_over_a_conflicting_second_key(eval_engine: Engine, match: str) -> None:
    """A record whose first key matches one contact and second key another joins the first."""
    upsert(eval_engine, "klaviyo", rec("a", "ann@example.com", "cust-1"),
           rec("b", "bob@example.com", "cust-2"))
    outcome = upsert(eval_engine, "hubspot", rec("9", "ann@example.com", "cust-2"), match=match)
    ids = identities(eval_engine)
    expected = ids[("klaviyo", "a" if match == "email" else "b")]["contact_id"]
    assert ids[("hubspot", "9")]["contact_id"] == expected
    assert len(contacts_table(eval_engine)) == 2
    assert len(outcome.conflicts) == 1


def test_merge_follows_the_surviving_id(eval_engine: Engine) -> None:
    upsert(eval_engine, "hubspot", rec("1", "ann@example.com", city="Oslo"),
           rec("2", "ann.b@example.com", plan="pro"))
    ann, ann_b = (by_email(eval_engine)[e]["id"] for e in ("ann@example.com", "ann.b@example.com"))
    add_events(eval_engine, "hubspot", ann, "e1", "e2")
    add_events(eval_engine, "hubspot", ann_b, "e3")
    merged = PulledContact("2", "ann.b@example.com", None, {"plan": "pro"}, merged_ids=("1",))
    outcome = upsert(eval_engine, "hubspot", merged)
    assert outcome.merged == 1
    rows = contacts_table(eval_engine)
    assert [(r["id"], r["email"], r["attributes"]) for r in rows] == [
        (ann_b, "ann.b@example.com", {"city": "Oslo", "plan": "pro"})]  # absorbed, attributes kept
    assert set(events_of(eval_engine).values()) == {ann_b}
    assert identities(eval_engine)[("hubspot", "1")] == {"contact_id": ann_b, "email": "ann@example.com",
                                                         "archived": True}
    # later references to the merged id or its email follow the survivor; nothing new is created
    assert resolve(eval_engine, "hubspot", [ContactRef(provider_id="1"),
                                            ContactRef(email="ann@example.com")]) == [ann_b, ann_b]
    assert upsert(eval_engine, "hubspot", merged).merged == 0  # idempotent
    assert len(contacts_table(eval_engine)) == 1


def test_merge_of_a_contact_still_in_another_provider_moves_only_that_providers_events(
        eval_engine: Engine) -> None:
    upsert(eval_engine, "hubspot", rec("1", "ann@example.com"), rec("2", "bob@example.com"))
    upsert(eval_engine, "klaviyo", rec("01K", "ann@example.com"))
    ann, bob = (by_email(eval_engine)[e]["id"] for e in ("ann@example.com", "bob@example.com"))
    add_events(eval_engine, "hubspot", ann, "h1")
    add_events(eval_engine, "klaviyo", ann, "k1")
    upsert(eval_engine, "hubspot", PulledContact("2", "bob@example.com", None, merged_ids=("1",)))
    assert events_of(eval_engine) == {("hubspot", "h1"): bob, ("klaviyo", "k1"): ann}
    assert set(by_email(eval_engine)) == {"ann@example.com", "bob@example.com"}
    assert identities(eval_engine)[("klaviyo", "01K")]["contact_id"] == ann


def test_merge_of_an_id_never_seen_is_remembered(eval_engine: Engine) -> None:
    upsert(eval_engine, "hubspot", PulledContact("2", "bob@example.com", None, merged_ids=("5", "2")))
    bob = by_email(eval_engine)["bob@example.com"]["id"]
    assert identities(eval_engine)[("hubspot", "5")] == {"contact_id": bob, "email": None, "archived": True}
    assert ("hubspot", "2") in identities(eval_engine) and not identities(eval_engine)[("hubspot", "2")][
        "archived"]


def test_archived_records_are_marked_and_the_contact_kept(eval_engine: Engine) -> None:
    upsert(eval_engine, "hubspot", rec("1", "ann@example.com"))
    upsert(eval_engine, "hubspot", PulledContact("1", "ann@example.com", None, archived=True))
    assert identities(eval_engine)[("hubspot", "1")]["archived"] is True
    assert len(contacts_table(eval_engine)) == 1


def test_attributes_set_and_clear(eval_engine: Engine) -> None:
    upsert(eval_engine, "hubspot", rec("1", "ann@example.com", city="Oslo", plan="pro"))
    outcome = upsert(eval_engine, "hubspot", rec("1", "ann@example.com", city="Oslo", plan=None))
    assert contacts_table(eval_engine)[0]["attributes"] == {"city": "Oslo"}
    assert outcome.updated == 1
    assert upsert(eval_engine, "hubspot", rec("1", "ann@example.com", city="Oslo")).unchanged == 1


def test_records_without_a_key_are_kept_by_provider_id(eval_engine: Engine) -> None:
    upsert(eval_engine, "hubspot", rec("1", "not an email"), rec("2", None))
    rows = contacts_table(eval_engine)
    assert [(r["email"], r["external_id"]) for r in rows] == [(None, None), (None, None)]
    upsert(eval_engine, "hubspot", rec("1", "ann@example.com"))  # fixed later: takes the free email
    assert {r["email"] for r in contacts_table(eval_engine)} == {"ann@example.com", None}
    assert len(contacts_table(eval_engine)) == 2


def test_unknown_event_references_create_the_contact_and_its_identity(eval_engine: Engine) -> None:
    refs = [ContactRef(provider_id="01A", email="Ann@Example.com"), ContactRef(email="ann@example.com"),
            ContactRef(provider_id="01B"), ContactRef(provider_id="01B"), ContactRef(email="broken@")]
    with begin_write(eval_engine) as conn:
        found, created = identity.resolve_refs(conn, "klaviyo", refs, NOW)
    assert created == 2
    assert found[0] == found[1] is not None and found[2] == found[3] is not None and found[4] is None
    ids = identities(eval_engine)
    assert ids[("klaviyo", "01A")] == {"contact_id": found[0], "email": "ann@example.com", "archived": False}
    assert ids[("klaviyo", "01B")]["contact_id"] == found[2]
    # the profile pulled later lands on the contact its events created, and fills its email
    upsert(eval_engine, "klaviyo", rec("01B", "bo@example.com", city="Rome"))
    assert by_email(eval_engine)["bo@example.com"]["id"] == found[2]
    assert len(contacts_table(eval_engine)) == 2


def test_duplicate_records_of_one_email_in_a_page_are_one_contact(eval_engine: Engine) -> None:
    outcome = upsert(eval_engine, "klaviyo", rec("a", "ann@example.com", city="Oslo"),
                     rec("b", " ANN@example.com", plan="pro"))
    rows = contacts_table(eval_engine)
    assert [(r["email"], r["attributes"]) for r in rows] == [
        ("ann@example.com", {"city": "Oslo", "plan": "pro"})]
    assert (outcome.new, outcome.linked) == (1, 2)
