"""sync.pull with scripted connectors: cursors advance only with committed data, re-reads add
nothing, a crash at any page resumes without loss or duplicates, a provider failure stops
only its source."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine, select

from connectors.base import Connector
from mapping.errors import ConfigError
from sync import identity
from sync.pull import PullProgress, PullSummary, pull
from sync.store import schema
from tests.pull_support import (
    FakeConnector,
    contact,
    contacts_table,
    count,
    cursor_of,
    event,
    events_of,
    identities,
    project,
)

T0 = 1_700_000_000_000
PROJECT = project()


def hubspot() -> FakeConnector:
    people = [contact("hubspot", str(n), f"p{n}@example.com", city=f"c{n}") for n in range(10)]
    events = [event("hubspot", f"h{n}", "opened_email", T0 + n, email=f"p{n % 10}@example.com",
                    campaign="spring") for n in range(14)]
    return FakeConnector("hubspot", people, events)


def klaviyo() -> FakeConnector:
    people = [contact("klaviyo", f"k{n}", f"P{n}@example.com", f"cust-{n}", plan="pro") for n in range(5, 12)]
    events = [event("klaviyo", f"o{n}", "Placed Order", T0 + n, pid=f"k{5 + n % 7}", value=10.0 * n,
                    items=n) for n in range(8)]
    return FakeConnector("klaviyo", people, events, page_size=4, overlap=2)


def run(engine: Engine, *sources: FakeConnector, **kw: Any) -> PullSummary:
    connectors: dict[str, Connector] = {s.provider: s for s in sources}
    return pull(engine, PROJECT, connectors, now=lambda: T0, **kw)


def runs(engine: Engine) -> list[tuple[str, str]]:
    r = schema.runs
    with engine.connect() as conn:
        return [(row.kind, row.status) for row in conn.execute(select(r.c.kind, r.c.status).order_by(r.c.id))]


def expected_state() -> tuple[set[str | None], set[tuple[str, str]]]:
    emails = {f"p{n}@example.com" for n in range(12)}
    ids = {("hubspot", f"h{n}") for n in range(14)} | {("klaviyo", f"o{n}") for n in range(8)}
    return emails, ids


def assert_complete(engine: Engine) -> None:
    emails, ids = expected_state()
    rows = contacts_table(engine)
    assert {r["email"] for r in rows} == emails and len(rows) == len(emails)
    assert set(events_of(engine)) == ids and count(engine, schema.events) == len(ids)
    assert len(identities(engine)) == 17


def test_first_pull_stores_everything_and_saves_each_streams_cursor(eval_engine: Engine) -> None:
    summary = run(eval_engine, hubspot(), klaviyo())
    assert summary.ok
    assert_complete(eval_engine)
    hs, kl = summary.sources["hubspot"], summary.sources["klaviyo"]
    assert (hs.contacts_new, hs.contact_pages, hs.events_new, hs.event_pages) == (10, 4, 14, 5)
    assert (kl.contacts_new, kl.contacts_updated, kl.identities_linked) == (2, 5, 7)  # 5 by email
    assert (kl.events_new, kl.events_duplicate) == (8, 0)
    assert [json.loads(cursor_of(eval_engine, s, t) or "") for s, t in (
        ("hubspot", "contacts"), ("hubspot", "events"), ("klaviyo", "contacts"), ("klaviyo", "events"))
    ] == [{"n": 10}, {"n": 14}, {"n": 7}, {"n": 8}]
    people = {r["email"]: r for r in contacts_table(eval_engine)}
    assert people["p7@example.com"]["attributes"] == {"city": "c7", "plan": "pro"}
    assert people["p7@example.com"]["external_id"] == "cust-7"


def test_a_second_pull_with_no_changes_adds_nothing(eval_engine: Engine) -> None:
    sources = hubspot(), klaviyo()
    run(eval_engine, *sources)
    before = contacts_table(eval_engine), events_of(eval_engine), identities(eval_engine)
    again = run(eval_engine, *sources)
    hs, kl = again.sources["hubspot"], again.sources["klaviyo"]
    assert (hs.contacts_new, hs.contacts_updated, hs.events_new) == (0, 0, 0)
    assert (kl.contacts_new, kl.contacts_updated, kl.events_new) == (0, 0, 0)
    assert (hs.events_duplicate, kl.events_duplicate) == (1, 2)  # the look-back re-read
    assert (hs.contacts_unchanged, kl.contacts_unchanged) == (1, 2)
    assert (contacts_table(eval_engine), events_of(eval_engine), identities(eval_engine)) == before
    assert sources[0].calls[-2:] == [("contacts", '{"n": 10}', False), ("events", '{"n": 14}', False)]


def test_full_pull_rereads_everything_and_changes_nothing(eval_engine: Engine) -> None:
    source = hubspot()
    run(eval_engine, source)
    summary = run(eval_engine, source, full=True)
    hs = summary.sources["hubspot"]
    assert source.calls[-2:] == [("contacts", '{"n": 10}', True), ("events", None, False)]
    assert (hs.contacts_seen, hs.contacts_unchanged, hs.events_duplicate, hs.events_new) == (10, 10, 14, 0)


def test_only_new_records_after_the_cursor_are_new(eval_engine: Engine) -> None:
    source = hubspot()
    run(eval_engine, source)
    source.contacts.append(contact("hubspot", "99", "new@example.com"))
    source.events.append(event("hubspot", "h99", "OPEN", T0 + 99, email="new@example.com"))
    hs = run(eval_engine, source).sources["hubspot"]
    assert (hs.contacts_new, hs.contacts_unchanged, hs.events_new, hs.events_duplicate) == (1, 1, 1, 1)


class Crash(Exception):
    """The process dies (nothing below catches it)."""


@pytest.mark.parametrize("after_pages", [1, 3, 6, 9, 12])
def test_a_crash_after_a_committed_page_resumes_without_loss_or_duplicates(
        eval_engine: Engine, after_pages: int) -> None:
    sources = hubspot(), klaviyo()
    seen: list[PullProgress] = []

    def crash(update: PullProgress) -> None:
        seen.append(update)
        if sum(not u.done for u in seen) == after_pages:
            raise Crash

    with pytest.raises(Crash):
        run(eval_engine, *sources, progress=crash)
    assert runs(eval_engine) == [("pull", "running")]  # it never finished
    last = seen[-1]
    assert json.loads(cursor_of(eval_engine, last.source, last.stream) or "") == {
        "n": sum(len(c) for c in _delivered(sources, last))}
    summary = run(eval_engine, *sources)
    assert summary.ok
    assert_complete(eval_engine)


def _delivered(sources: tuple[FakeConnector, ...], last: PullProgress) -> list[list[Any]]:
    source = next(s for s in sources if s.provider == last.source)
    items = source.contacts if last.stream == "contacts" else source.events
    return [items[i : i + source.page_size] for i in range(0, len(items), source.page_size)][: last.pages]


@pytest.mark.parametrize("failing_call", [1, 2, 4])
def test_a_failure_while_storing_a_page_rolls_back_its_cursor_too(
        eval_engine: Engine, monkeypatch: pytest.MonkeyPatch, failing_call: int) -> None:
    source = hubspot()
    real = identity.upsert_pulled_contacts
    calls = {"n": 0}

    def flaky(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        out = real(*args, **kw)  # the page's rows are written ...
        if calls["n"] == failing_call:
            raise Crash  # ... and the transaction dies before it commits
        return out

    monkeypatch.setattr(identity, "upsert_pulled_contacts", flaky)
    with pytest.raises(Crash):
        run(eval_engine, source)
    committed = (failing_call - 1) * source.page_size
    assert len(contacts_table(eval_engine)) == committed
    assert cursor_of(eval_engine, "hubspot", "contacts") == (
        json.dumps({"n": committed}) if committed else None)
    monkeypatch.setattr(identity, "upsert_pulled_contacts", real)
    run(eval_engine, source)
    assert {r["email"] for r in contacts_table(eval_engine)} == {f"p{n}@example.com" for n in range(10)}
    assert count(eval_engine, schema.events) == 14


def test_a_provider_failure_stops_its_source_only(eval_engine: Engine) -> None:
    broken = hubspot()
    broken.fail_after = 2
    summary = run(eval_engine, broken, klaviyo())
    assert not summary.ok
    assert summary.sources["hubspot"].error == "hubspot: the fake is down (HTTP 503, request id req-1)"
    assert summary.sources["klaviyo"].error is None and summary.sources["klaviyo"].events_new == 8
    assert cursor_of(eval_engine, "hubspot", "contacts") == '{"n": 6}'
    assert cursor_of(eval_engine, "hubspot", "events") is None
    broken.fail_after = None
    assert run(eval_engine, broken).ok
    assert_complete(eval_engine)
    assert runs(eval_engine) == [("pull", "partial"), ("pull", "ok")]


def test_sources_selects_and_an_unconfigured_source_is_a_config_error(eval_engine: Engine) -> None:
    summary = run(eval_engine, hubspot(), klaviyo(), sources=["klaviyo"])
    assert list(summary.sources) == ["klaviyo"]
    with pytest.raises(ConfigError, match="'hubspot' is not configured"):
        run(eval_engine, klaviyo(), sources=["hubspot"])
