"""The synthetic data set: determinism, data-quality cases, behavioural consistency, shapes."""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np
import pytest

from connectors.sandbox.dataset import KINDS, LIFECYCLE_STAGES, SHOP_URL, Dataset, generate
from connectors.sandbox.live import live_activity, live_changes

NOW = 1_750_000_000_000
EMAIL_RE = re.compile(r"^[a-z0-9.]+@[a-z0-9-]+(\.[a-z0-9-]+)+$")


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return generate(3000, seed=7, now_ms=NOW)


def _columns(d: Dataset) -> tuple[np.ndarray, ...]:
    a = d.activities
    return a.person, a.kind, a.ts, a.value


def test_same_seed_same_data(ds: Dataset) -> None:
    again = generate(3000, seed=7, now_ms=NOW)
    assert again.people == ds.people
    assert all(np.array_equal(x, y) for x, y in zip(_columns(again), _columns(ds), strict=True))
    sample = [0, 17, len(ds.activities) // 2, len(ds.activities) - 1]
    assert [again.activities[i] for i in sample] == [ds.activities[i] for i in sample]


def test_other_seed_other_data(ds: Dataset) -> None:
    other = generate(3000, seed=8, now_ms=NOW)
    assert [p.email for p in other.people] != [p.email for p in ds.people]
    assert not np.array_equal(other.activities.ts[:1000], ds.activities.ts[:1000])


def test_now_only_shifts_time(ds: Dataset) -> None:
    shifted = generate(3000, seed=7, now_ms=NOW + 5 * 86_400_000)
    assert [p.email for p in shifted.people] == [p.email for p in ds.people]
    assert shifted.people[3].created_at - ds.people[3].created_at == 5 * 86_400_000
    assert np.all(shifted.activities.ts - ds.activities.ts == 5 * 86_400_000)


def test_data_quality_cases_present(ds: Dataset) -> None:
    by_key = {p.key: p for p in ds.people}
    dups = [p for p in ds.people if p.quality == "duplicate"]
    invalid = [p for p in ds.people if p.quality == "invalid"]
    assert len(dups) >= 10 and len(invalid) >= 10
    for p in dups:
        original = by_key[p.duplicate_of or ""]
        assert p.email != original.email
        assert p.email.strip().lower() == original.email
        assert (p.first_name, p.last_name) == (original.first_name, original.last_name)
    assert {p.email == "" for p in invalid} == {True, False}
    assert not any(EMAIL_RE.match(p.email) for p in invalid)
    assert all(EMAIL_RE.match(p.email) for p in ds.people if p.quality == "ok")
    ok_emails = [p.email for p in ds.people if p.quality == "ok"]
    assert len(set(ok_emails)) == len(ok_emails)
    only_hs = [p for p in ds.people if p.in_hubspot and not p.in_klaviyo]
    only_kl = [p for p in ds.people if p.in_klaviyo and not p.in_hubspot]
    both = [p for p in ds.people if p.in_klaviyo and p.in_hubspot]
    assert len(only_hs) > 100 and len(only_kl) > 100 and len(both) > len(ds.people) * 0.7
    assert all(p.in_hubspot or p.in_klaviyo for p in ds.people)


def test_invalid_emails_get_no_email_events(ds: Dataset) -> None:
    invalid = [i for i, p in enumerate(ds.people) if p.quality == "invalid"]
    email_codes = [KINDS.index(k) for k in KINDS if k.startswith("email_")]
    rows = np.isin(ds.activities.person, invalid) & np.isin(ds.activities.kind, email_codes)
    assert not rows.any()


def test_events_inside_window_and_after_creation(ds: Dataset) -> None:
    a = ds.activities
    assert np.all(np.diff(a.ts) >= 0)
    assert a.ts.min() >= NOW - ds.days * 86_400_000 and a.ts.max() < NOW
    created = np.array([p.created_at for p in ds.people])
    assert np.all(a.ts >= created[a.person])


def test_lifecycle_consistent_with_orders(ds: Dataset) -> None:
    buyers = set(ds.activities.person[ds.activities.select(["order_placed"])].tolist())
    carts = set(ds.activities.person[ds.activities.select(["added_to_cart"])].tolist())
    for i, p in enumerate(ds.people):
        assert p.lifecycle_stage in LIFECYCLE_STAGES
        assert (p.lifecycle_stage == "customer") == (i in buyers), p
        if p.lifecycle_stage == "opportunity":
            assert i in carts
        if i in buyers:
            assert p.external_id is not None


def test_orders_match_their_carts(ds: Dataset) -> None:
    a = ds.activities
    lines: dict[str, list[tuple[str, int, float, int]]] = defaultdict(list)
    for i in a.select(["added_to_cart"]):
        act = a[int(i)]
        lines[act.properties["cart_id"]].append(
            (act.properties["product"], act.properties["quantity"], act.value, act.ts)
        )
    orders = [a[int(i)] for i in a.select(["order_placed"])]
    assert len(orders) > 50
    for o in orders:
        cart = lines[o.properties["cart_id"]]
        assert sorted(o.properties["items"]) == sorted(name for name, *_ in cart)
        assert o.properties["item_count"] == sum(q for _, q, _, _ in cart)
        assert o.value == pytest.approx(sum(v for _, _, v, _ in cart), abs=0.01)
        assert o.ts > max(ts for *_, ts in cart)
    repeat: dict[str, int] = defaultdict(int)
    for o in orders:
        repeat[o.person_key] += 1
    assert max(repeat.values()) >= 3  # repeat buyers
    abandoned = set(lines) - {o.properties["cart_id"] for o in orders}
    assert len(abandoned) > len(orders)  # most carts are abandoned


def test_order_values_have_rare_outliers() -> None:
    d = generate(20000, seed=3, now_ms=NOW)
    values = d.activities.value[d.activities.select(["order_placed"])]
    assert values.max() > 15 * np.median(values)
    assert (values > 10 * np.median(values)).mean() < 0.02


def test_clicks_follow_opens_follow_deliveries(ds: Dataset) -> None:
    a = ds.activities
    first: dict[tuple[str, str, int], int] = {}
    for kind in ("email_delivered", "email_opened", "email_clicked"):
        for i in a.select([kind]):
            act = a[int(i)]
            first.setdefault((kind, act.person_key, act.properties["campaign_id"]), act.ts)
    clicks = [k for k in first if k[0] == "email_clicked"]
    assert clicks
    for _, who, campaign in clicks:
        assert first[("email_delivered", who, campaign)] < first[("email_opened", who, campaign)]
        assert first[("email_opened", who, campaign)] < first[("email_clicked", who, campaign)]


def test_personas_differ_in_engagement(ds: Dataset) -> None:
    rows = ds.activities.select(["email_opened"])
    opens = np.bincount(ds.activities.person[rows], minlength=len(ds.people))
    per = {name: opens[[i for i, p in enumerate(ds.people) if p.persona == name]].mean()
           for name in ("engaged", "casual", "dormant")}  # fmt: skip
    assert per["engaged"] > 2 * per["casual"] > 4 * per["dormant"]


def test_unsubscribed_people_get_no_later_sends(ds: Dataset) -> None:
    a = ds.activities
    unsub_rows = a.select(["email_unsubscribed"])
    assert len(unsub_rows) > 0
    for i in unsub_rows[:50]:
        person, ts = int(a.person[i]), int(a.ts[i])
        assert len(a.select(["email_sent"], since=ts + 1, person=person)) == 0


@pytest.mark.parametrize(
    ("kind", "props"),
    [
        ("email_sent", {"campaign_id", "email_id", "subject"}),
        ("email_delivered", {"campaign_id", "email_id", "subject"}),
        ("email_opened", {"campaign_id", "email_id", "subject"}),
        ("email_bounced", {"campaign_id", "email_id", "subject"}),
        ("email_unsubscribed", {"campaign_id", "email_id", "subject"}),
        ("email_clicked", {"campaign_id", "email_id", "subject", "url", "product"}),
        ("product_viewed", {"product", "product_id", "category", "price", "url"}),
        ("added_to_cart", {"product", "product_id", "category", "price", "url", "quantity", "cart_id"}),
        ("order_placed", {"order_id", "items", "item_count", "cart_id"}),
    ],
)
def test_activity_shapes(ds: Dataset, kind: str, props: set[str]) -> None:
    rows = ds.activities.select([kind])
    assert len(rows) > 0
    for i in rows[:: max(1, len(rows) // 25)]:
        act = ds.activities[int(i)]
        assert act.kind == kind and act.id == int(i)
        assert set(act.properties) == props
        assert ds.person(act.person_key).key == act.person_key
        if "url" in props:
            assert act.properties["url"].startswith(SHOP_URL)
        if kind == "product_viewed":
            assert act.value == act.properties["price"] > 0
        if kind == "added_to_cart":
            assert act.value == pytest.approx(act.properties["price"] * act.properties["quantity"])
        if kind.startswith("email_") and kind != "email_clicked":
            assert act.value == 0.0


def test_select_matches_brute_force(ds: Dataset) -> None:
    a = ds.activities
    since, until = NOW - 30 * 86_400_000, NOW - 10 * 86_400_000
    got = a.select(["product_viewed", "order_placed"], since=since, until=until)
    codes = [KINDS.index("product_viewed"), KINDS.index("order_placed")]
    want = np.flatnonzero(np.isin(a.kind, codes) & (a.ts >= since) & (a.ts < until))
    assert np.array_equal(got, want)
    person = 42
    mine = a.select(person=person)
    assert np.array_equal(mine, np.flatnonzero(a.person == person))
    assert [x.id for x in a.for_person(person)] == mine.tolist()


@pytest.mark.parametrize("target", [10, 40, 200])
def test_events_per_contact_is_honoured(target: int) -> None:
    d = generate(2000, seed=1, now_ms=NOW, events_per_contact=target)
    assert 0.7 * target < len(d.activities) / 2000 < 1.3 * target


def test_summary_counts(ds: Dataset) -> None:
    s = ds.summary()
    assert s["contacts"] == 3000 and s["activities"] == len(ds.activities)
    assert sum(s["by_kind"].values()) == len(ds.activities)
    assert s["in_both"] == sum(p.in_hubspot and p.in_klaviyo for p in ds.people)


def test_live_activity_is_seeded_and_continues_ids(ds: Dataset) -> None:
    first = len(ds.activities)
    one = live_activity(ds, 30, now_ms=NOW + 1000, seed=5, first_id=first)
    assert one == live_activity(ds, 30, now_ms=NOW + 1000, seed=5, first_id=first)
    assert one != live_activity(ds, 30, now_ms=NOW + 1000, seed=6, first_id=first)
    assert [x.id for x in one] == list(range(first, first + 30))
    assert all(NOW + 1000 - 60_000 < x.ts <= NOW + 1000 for x in one)
    only = live_activity(ds, 20, now_ms=NOW, seed=1, first_id=0, people=[5, 6])
    assert {x.person_key for x in only} <= {ds.people[5].key, ds.people[6].key}


def test_live_changes_move_lifecycle_forward_only(ds: Dataset) -> None:
    changes = live_changes(ds, 300, seed=2)
    assert changes == live_changes(ds, 300, seed=2)
    fields = {c.field for c in changes}
    assert {"city", "country", "phone", "lifecycle_stage"} <= fields
    for c in changes:
        if c.field == "lifecycle_stage":
            before = LIFECYCLE_STAGES.index(ds.person(c.person_key).lifecycle_stage)
            assert LIFECYCLE_STAGES.index(c.value) >= before
            assert c.value != "customer" or before == LIFECYCLE_STAGES.index("customer")


@pytest.mark.parametrize(("n", "days"), [(0, 110), (10, 0)])
def test_bad_arguments(n: int, days: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        generate(n, days=days)


@pytest.mark.slow
def test_100k_contacts_10m_events_fit() -> None:
    d = generate(100_000, seed=0, now_ms=NOW, events_per_contact=100)  # time: bench/bench_sandbox.py
    assert len(d.activities) > 9_000_000
    assert d.activities.nbytes < 3 * 1024**3
    last = d.activities[len(d.activities) - 1]
    assert last.ts < NOW
