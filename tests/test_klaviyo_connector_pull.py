"""Klaviyo pulls against the sandbox through klaviyo-api: profiles and events, cursors,
overlap and dedupe, the SDK's cursor bug avoided; plus the pure cursor and wire helpers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Generator
from urllib.parse import unquote

import pytest
import requests

from connectors.errors import MalformedResponse
from connectors.klaviyo.cursors import SEEN_CAP, EventCursor, Mark, ProfileCursor
from connectors.klaviyo.pull import merged
from connectors.klaviyo.wire import filter_instant, index_in_pointer, parse_instant
from connectors.sandbox import Sandbox
from mapping.errors import ConfigError, InputError
from tests.test_klaviyo_connector_support import FakeClock, clock, connector, routes, sb

__all__ = ["clock", "sb"]


def _profile_cursors(sb: Sandbox) -> list[str]:
    out = []
    for entry in routes(sb, "get_profiles"):
        for part in entry.path.split("?", 1)[-1].split("&"):
            name, _, value = part.partition("=")
            if unquote(name) == "page[cursor]":
                out.append(unquote(value))
    return out


def test_profiles_page_through_everything_with_raw_cursors(sb: Sandbox, clock: FakeClock) -> None:
    pages = list(connector(sb, clock).pull_contacts(None))
    ids = [c.provider_id for p in pages for c in p.records]
    assert len(pages) == -(-len(sb.klaviyo.state.profiles) // 100) >= 3
    assert sorted(ids) == sorted(sb.klaviyo.state.profiles)
    cursors = _profile_cursors(sb)
    assert len(cursors) == len(pages) - 1 and all(c and not c.startswith("=") for c in cursors)
    assert {e.status for e in routes(sb, "get_profiles")} == {200}
    # the sandbox really refuses what klaviyo-api 25.0.0 sends when handed links.next
    url = f"{sb.klaviyo_url}/api/profiles?page%5Bcursor%5D=%3D{cursors[0]}"
    headers = {"Authorization": f"Klaviyo-API-Key {sb.klaviyo_key}", "revision": "2026-10-15"}
    assert requests.get(url, headers=headers, timeout=5).status_code == 400


def test_profiles_incremental_with_overlap_and_dedupe(sb: Sandbox, clock: FakeClock) -> None:
    conn = connector(sb, clock)
    first = list(conn.pull_contacts(None))
    cursor = first[-1].cursor
    assert cursor is not None
    mark = json.loads(cursor)["updated"]
    state = sb.klaviyo.state
    with state.lock:
        changed = sorted(state.profiles)[:2]
        for pid in changed:
            state.update_profile(state.profiles[pid], {"properties": {"tier": "gold"}})
        late = state.create_profile({"email": "late@example.com"}, ms=mark - 1000)  # inside overlap
        early = state.create_profile({"email": "early@example.com"}, ms=mark - 3_600_000)  # before it
    again = list(conn.pull_contacts(cursor))
    got = {c.provider_id: c for p in again for c in p.records}
    assert set(got) == {*changed, late.id}
    assert early.id not in got
    assert all(got[pid].properties["tier"] == "gold" for pid in changed)
    sent = unquote(routes(sb, "get_profiles")[-1].path)
    assert f"greater-than(updated,{filter_instant(mark - 5 * 60_000)})" in sent
    assert list(c for p in conn.pull_contacts(again[-1].cursor) for c in p.records) == []
    full = [c.provider_id for p in conn.pull_contacts(again[-1].cursor, full=True) for c in p.records]
    assert len(full) == len(state.profiles)


@pytest.mark.parametrize(
    "cursor",
    ["not json", '{"kind": "klaviyo.events", "v": 1, "metrics": {}}', '{"kind": "klaviyo.profiles"}'],
)
def test_a_foreign_or_damaged_profile_cursor_is_an_input_error(
    sb: Sandbox, clock: FakeClock, cursor: str
) -> None:
    with pytest.raises(InputError, match="--full"):
        next(connector(sb, clock).pull_contacts(cursor))


def _metric_events(sb: Sandbox, names: list[str]) -> int:
    state = sb.klaviyo.state
    wanted = {state.metrics[state.metric_by_name[n]].index for n in names}
    return sum(1 for m in state.events.metric if m in wanted)


def test_events_per_metric_page_with_cursors(sb: Sandbox, clock: FakeClock) -> None:
    conn = connector(sb, clock, event_page_size=40, pull_workers=2)
    pages = list(conn.pull_events(None))
    events = [e for p in pages for e in p.records]
    assert len(events) == _metric_events(sb, ["Placed Order", "Opened Email"]) > 200
    assert len({e.provider_event_id for e in events}) == len(events)
    assert {e.type for e in events} == {"order_placed", "email_opened"}
    orders = [e for e in events if e.type == "order_placed"]
    assert all(e.value is not None and e.value == e.properties["$value"] for e in orders)
    assert all(e.contact.provider_id and e.contact.email for e in events)
    assert all("page%5Bcursor%5D=%3D" not in e.path for e in routes(sb, "get_events"))
    assert len(routes(sb, "get_events")) == len(pages) > 4
    cursor = pages[-1].cursor
    assert cursor is not None and set(EventCursor.decode(cursor).metrics) == {
        r.id for r in conn.metric_refs()
    }
    state = sb.klaviyo.state
    with state.lock:
        metric = state.metrics[state.metric_by_name["Placed Order"]]
        profile = next(iter(state.profiles.values()))
        new_id = state.add_event(metric, profile, state.now_ms(), {"$value": 12.5})
    fresh = [e for p in conn.pull_events(cursor) for e in p.records]
    assert [(e.provider_event_id, e.value, e.type) for e in fresh] == [(new_id, 12.5, "order_placed")]


def test_metric_names_resolve_once_and_unknown_names_are_config_errors(sb: Sandbox, clock: FakeClock) -> None:
    conn = connector(sb, clock)
    conn.metric_refs()
    conn.metric_refs()
    assert len(routes(sb, "get_metrics")) == 1
    conn.metrics = {"order_placed": ("Placed Ordr",), "viewed": ("Nope Nothing",)}
    conn._refs = None
    with pytest.raises(ConfigError) as info:
        conn.metric_refs()
    text = str(info.value)
    assert "events.order_placed.aliases.klaviyo" in text and "did you mean 'Placed Order'" in text
    assert "Nope Nothing" in text


def test_event_page_size_falls_back_to_200_when_1000_is_refused(
    sb: Sandbox, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectors.sandbox.klaviyo import events as sandbox_events

    real = sandbox_events.page_size  # type: ignore[attr-defined]
    monkeypatch.setattr(sandbox_events, "page_size", lambda req, default, maximum: real(req, default, 200))
    events = [e for p in connector(sb, clock, pull_workers=1).pull_events(None) for e in p.records]
    assert len(events) == _metric_events(sb, ["Placed Order", "Opened Email"])
    statuses = [(e.status, "size%5D=1000" in e.path) for e in routes(sb, "get_events")]
    assert statuses[0] == (400, True) and all(s == 200 and not big for s, big in statuses[2:])


# --- pure helpers ----------------------------------------------------------------------


def test_mark_keeps_only_the_overlap_window_and_caps_it() -> None:
    mark = Mark().advance([("a", 1_000), ("b", 50_000), ("c", 60_000)], overlap_ms=15_000)
    assert mark.at == 60_000 and set(mark.seen) == {"b", "c"}
    assert mark.delivered("b", 50_000) and not mark.delivered("b", 50_001)
    big = Mark().advance(((f"id{i}", i) for i in range(SEEN_CAP + 10)), overlap_ms=10**9)
    assert len(big.seen) == SEEN_CAP and "id0" not in big.seen
    assert ProfileCursor.decode(ProfileCursor(mark).encode()) == ProfileCursor(mark)


def test_wire_helpers() -> None:
    assert filter_instant(1_700_000_000_999) == "2023-11-14T22:13:20Z"
    assert parse_instant("2023-11-14T22:13:20.5+00:00", "x") == 1_700_000_000_500
    assert parse_instant("2023-11-14T22:13:20Z", "x") == 1_700_000_000_000
    with pytest.raises(MalformedResponse, match="not an ISO-8601"):
        parse_instant("yesterday", "x")
    assert index_in_pointer("404: not_found: no such profile: at /data/7/id", r"^/data/(\d+)") == 7
    assert index_in_pointer("400: invalid: at /data/", r"^/data/(\d+)") is None


def test_merged_interleaves_streams_and_stops_them_on_an_error() -> None:
    started, stopped = threading.Event(), threading.Event()

    def ok(tag: str) -> Generator[tuple[str, int], None, None]:
        for i in range(5):
            yield tag, i

    def endless() -> Generator[tuple[str, int], None, None]:
        started.set()
        try:
            while True:
                time.sleep(0.001)
                yield "e", 0
        finally:
            stopped.set()

    items = list(merged([lambda: ok("a"), lambda: ok("b")], workers=2))
    assert sorted(items) == sorted([("a", i) for i in range(5)] + [("b", i) for i in range(5)])
    assert [i for t, i in items if t == "a"] == list(range(5))

    def broken() -> Generator[tuple[str, int], None, None]:
        yield "x", 1
        assert started.wait(2)
        raise MalformedResponse("klaviyo", None, "rid-1", "bad page")

    with pytest.raises(MalformedResponse, match="bad page"):
        for _ in merged([broken, endless], workers=2):
            pass
    assert stopped.wait(2)
