"""The proactive rate budget: exact waits with a fake clock, sustained rates, headers, threads."""

from __future__ import annotations

import math
import random
import threading
import time

import pytest

from connectors.budget import (
    REGISTRY,
    BudgetRegistry,
    BudgetSpec,
    RateBudget,
    WindowSpec,
    hubspot_spec,
    klaviyo_spec,
)
from connectors.ratewindow import MAX_FLIGHT, Window


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def budget(spec: BudgetSpec, t: FakeTime, sends: list[float] | None = None) -> RateBudget:
    def record(cls: str, n: int, ts: float) -> None:
        if sends is not None:
            sends.extend([ts] * n)

    return RateBudget(spec, clock=t.clock, sleep=t.sleep, on_send=record)


def max_in_any_window(sends: list[float], seconds: float) -> int:
    """The most sends in any half-open interval [s, s + seconds) (1 ns float slack)."""
    ordered = sorted(sends)
    best, lo = 0, 0
    for hi, ts in enumerate(ordered):
        while ordered[lo] <= ts - seconds + 1e-9:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_hubspot_rolling_window_is_exact() -> None:
    t = FakeTime()
    b = budget(hubspot_spec(), t)
    for _ in range(190):
        assert b.acquire("default") == 0.0
    assert t.sleeps == []
    assert b.acquire("default") == pytest.approx(10.1)  # the first send leaves the window
    t.now = 10.15
    assert b.acquire("default") == 0.0  # the 2nd send (at 0.0) has left as well


@pytest.mark.parametrize(
    ("spec", "cls", "window", "limit", "seconds", "step"),
    [
        (hubspot_spec(), "default", "ten_second", 190, 10.0, 0.0),
        (hubspot_spec(), "default", "ten_second", 190, 10.0, 0.013),
        (hubspot_spec(per_10s=100), "default", "ten_second", 100, 10.0, 0.05),
        (hubspot_spec(), "search", "search", 4, 1.0, 0.01),
        (klaviyo_spec(), "list_members", "list_members.steady", 150, 60.0, 0.0),
        (klaviyo_spec(), "profile_bulk_import", "profile_bulk_import.steady", 150, 60.0, 0.2),
    ],
)
def test_sustained_rate_stays_under_and_near_the_ceiling(
    spec: BudgetSpec, cls: str, window: str, limit: int, seconds: float, step: float
) -> None:
    t = FakeTime()
    sends: list[float] = []
    b = budget(spec, t, sends)
    total = limit * 12
    for _ in range(total):
        b.acquire(cls)
        t.now += step  # each request takes a little time
    assert max_in_any_window(sends, seconds + spec.margin) <= limit
    assert max_in_any_window(sends, seconds) <= limit
    # Steady state (after the first window): >= 95 % of the ceiling.
    steady = [s for s in sends if s >= seconds]
    rate = (len(steady) - 1) / (steady[-1] - steady[0])
    assert rate >= 0.95 * limit / seconds


def test_search_spends_from_both_windows() -> None:
    t = FakeTime()
    b = budget(hubspot_spec(), t)
    for _ in range(4):
        b.acquire("search")
    assert b.acquire("search") == pytest.approx(1.1)
    assert len(b.sends("ten_second")) == 5 and len(b.sends("search")) == 1


def test_klaviyo_burst_then_steady() -> None:
    t = FakeTime()
    sends: list[float] = []
    b = budget(klaviyo_spec(), t, sends)
    for _ in range(151):
        b.acquire("list_members")
    assert sends[:11] == [0.0] * 10 + [pytest.approx(1.1)]
    assert sends[149] == pytest.approx(14 * 1.1)  # 15 bursts of 10
    assert sends[150] == pytest.approx(60.1)  # then the steady window is full


def test_hubspot_headers_lower_the_limit_and_charge_foreign_use() -> None:
    t = FakeTime()
    b = budget(hubspot_spec(), t)
    b.acquire("default")
    b.observe("default", {
        "X-HubSpot-RateLimit-Max": "100", "X-HubSpot-RateLimit-Remaining": "49",
        "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
    })
    assert b.limit("ten_second") == 100
    assert len(b.sends("ten_second")) == 51  # ours (1) plus 50 spent by someone else
    for _ in range(49):
        assert b.acquire("default") == 0.0
    t.now = 1.0
    assert b.acquire("default") == pytest.approx(9.1)
    b.observe("default", {"x-hubspot-ratelimit-max": "250"})  # never above the ceiling
    assert b.limit("ten_second") == 190


def test_hubspot_headers_never_release_our_own_sends() -> None:
    t = FakeTime()
    b = budget(hubspot_spec(), t)
    for _ in range(10):
        b.acquire("default")
    b.observe("default", {"X-HubSpot-RateLimit-Remaining": "189"})  # in-flight lag: server saw 1
    assert len(b.sends("ten_second")) == 10


def test_klaviyo_headers_follow_the_fixed_window_reset() -> None:
    t = FakeTime()
    b = budget(klaviyo_spec(), t)
    t.now = 5.0
    b.acquire("profiles")
    b.observe("profiles", {"RateLimit-Limit": "750", "RateLimit-Remaining": "0", "RateLimit-Reset": "12"})
    t.now = 5.5
    assert b.acquire("profiles") == pytest.approx(11.5)  # when the server's window resets


def test_penalize() -> None:
    t = FakeTime()
    b = budget(hubspot_spec(), t)
    b.acquire("default")
    b.penalize("default", 3.0)
    assert b.acquire("default") == pytest.approx(3.0)
    t.now = 5.0
    b.penalize("default", None)  # a 429 without Retry-After: the window is full now
    assert b.acquire("default") == pytest.approx(5.1)  # until our first send (t=0) leaves
    fresh = budget(hubspot_spec(), t).bind("search")
    fresh.penalize(1.0)
    assert fresh.acquire() == pytest.approx(1.0)


def test_rejects_impossible_requests() -> None:
    b = budget(hubspot_spec(), FakeTime())
    with pytest.raises(ValueError, match="unknown endpoint class"):
        b.acquire("batch")
    with pytest.raises(ValueError, match="cannot acquire 5"):
        b.acquire("search", 5)
    with pytest.raises(ValueError, match="unknown windows"):
        BudgetSpec("x", {"a": WindowSpec(1, 1.0)}, {"c": ("b",)})
    with pytest.raises(ValueError):
        WindowSpec(0, 1.0)


def test_klaviyo_daily_caps_and_overrides() -> None:
    spec = klaviyo_spec(overrides={"list_members": (5, 100, None)})
    assert spec.classes["list_create"] == ("list_create.burst", "list_create.steady", "list_create.daily")
    assert spec.windows["list_create.daily"] == WindowSpec(150, 86400.0)
    assert spec.windows["list_members.burst"] == WindowSpec(5, 1.0)


def test_threads_share_one_budget_without_overspending() -> None:
    spec = BudgetSpec("test", {"w": WindowSpec(10, 0.25)}, {"c": ("w",)}, margin=0.0)
    sends: list[float] = []
    lock = threading.Lock()

    def record(cls: str, n: int, ts: float) -> None:
        with lock:
            sends.extend([ts] * n)

    b = RateBudget(spec, on_send=record)

    def worker() -> None:
        for _ in range(5):
            b.acquire("c")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    started = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(sends) == 40 and b.acquired["c"] == 40
    assert max_in_any_window(sends, 0.25) <= 10
    assert time.monotonic() - started >= 0.75  # 4 windows of 10


def test_registry_shares_per_provider_and_account() -> None:
    registry = BudgetRegistry()
    got: list[RateBudget] = []

    def get() -> None:
        got.append(registry.get(hubspot_spec()))

    threads = [threading.Thread(target=get) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert all(b is got[0] for b in got)
    assert registry.get(hubspot_spec(), account="portal-2") is not got[0]
    assert registry.get(klaviyo_spec()) is not got[0]
    with pytest.raises(ValueError, match="already has other limits"):
        registry.get(hubspot_spec(per_10s=100))
    registry.clear()
    assert registry.get(hubspot_spec()) is not got[0]
    assert isinstance(REGISTRY, BudgetRegistry)


# --- sends in flight, and the server's fixed-window phase (connectors.ratewindow) ----------


def test_a_send_counts_from_its_acquire_until_a_span_after_its_answer() -> None:
    t = FakeTime()
    b = budget(BudgetSpec("test", {"w": WindowSpec(1, 1.0)}, {"c": ("w",)}, margin=0.1), t)
    b.acquire("c")
    t.now = 3.0  # the call took 3 s (a GC pause between acquire and the socket write, say)
    b.observe("c", None)  # answered: counted until 3.0 + 1.1, whenever the server saw it
    assert b.acquire("c") == pytest.approx(1.1)


def test_sends_in_flight_hold_their_slots_until_answered() -> None:
    w = Window(2, 1.0, 0.1)
    w.record(1, 0.0, key=1)
    w.record(1, 0.0, key=2)
    assert w.wait(1, 5.0) == pytest.approx(1.1)  # nothing can leave before a span after an answer
    assert w.answer(1, 5.5) == 0.0  # the acquire time
    assert w.wait(1, 6.0) == pytest.approx(0.6)
    w.record(1, 7.0, key=2)  # a sender's next send answers its previous one
    assert w.used(7.0) == 2 and w.times(7.0) == [7.0, 7.0]  # key 1 has left; key 2 answered at 7
    assert w.used(7.0 + MAX_FLIGHT + 1.2) == 0  # never answered: counted as answered after MAX_FLIGHT


def test_klaviyo_resets_place_the_server_windows_and_allow_a_catch_up() -> None:
    w = Window(150, 60.0, 0.1, reset_unit=1.0)
    for i in range(150):
        w.record(1, 10.0, key=i)
        w.answer(i, 10.2)
    w.learn(10.0, 10.2, 20.0)  # the server's window ends 20 s after the arrival (whole seconds)
    assert w.phase == pytest.approx((29.0, 31.2))
    assert w.wait(1, 12.0) == pytest.approx(31.2 - 12.0)  # surely rolled over at 31.2, not at 70.3
    assert w.wait(1, 31.2) == 0.0
    w.learn(40.0, 40.1, 50.0)  # the same boundary one window later: narrows it
    assert w.phase == pytest.approx((29.0, 31.1))


def test_contradicting_resets_and_repeated_429s_switch_the_phase_rule_off() -> None:
    w = Window(150, 60.0, 0.1)
    w.learn(0.0, 0.1, 10.0)
    w.learn(20.0, 20.1, 10.0)  # the window cannot end at both 10 and 30 (+ k * 60)
    assert (w.phase, w.fixed) == (None, False)
    w.learn(30.0, 30.1, 10.0)
    assert w.phase is None  # off for good
    v = Window(150, 60.0, 0.1)
    v.learn(0.0, 0.1, 10.0)
    v.throttled()
    assert v.phase is None and v.fixed  # forgotten, learned again from the next answer
    v.learn(0.0, 0.1, 10.0)
    v.throttled()
    assert not v.fixed


def test_only_klaviyo_headers_teach_the_phase() -> None:
    t = FakeTime()
    k = budget(klaviyo_spec(), t)
    k.acquire("list_members")
    headers = {"RateLimit-Limit": "150", "RateLimit-Remaining": "149", "RateLimit-Reset": "42"}
    k.observe("list_members", headers)
    assert k.phase("list_members.steady") == pytest.approx((41.0, 43.0))
    assert k.phase("list_members.burst") is None
    h = budget(hubspot_spec(), t)
    h.acquire("default")
    h.observe("default", {"X-HubSpot-RateLimit-Remaining": "189"})
    assert h.phase("ten_second") is None


def _simulate(seed: int, phase_rule: bool) -> list[int]:
    """Four senders share Klaviyo's list windows (10 per 1 s, 150 per 60 s) against a server
    with fixed windows at a random offset; latencies vary, and the client sometimes stalls
    (a GC pause) before a send or between acquire and arrival. Returns the arrivals per
    server steady window; asserts that no burst window is overrun on the way."""
    rng = random.Random(seed)
    offset = rng.uniform(0, 60.0)
    burst, steady = Window(10, 1.0, 0.1), Window(150, 60.0, 0.1, reset_unit=1.0)
    steady.fixed = phase_rule
    per_window: dict[int, int] = {}
    per_burst: dict[int, int] = {}
    arrived: dict[int, float] = {}
    events = [(0.0, k, False, 0.0) for k in range(4)]  # (time, sender, is an answer, acquired at)
    sent, paused_until = 0, 0.0  # a pause stops the whole client (every thread)
    while events:
        events.sort()
        now, k, answer, acquired = events.pop(0)
        if now < paused_until:
            events.append((paused_until, k, answer, acquired))
            continue
        if answer:
            burst.answer(k, now)
            steady.answer(k, now)
            end = (math.floor((arrived[k] - offset) / 60.0) + 1) * 60.0 + offset
            steady.learn(acquired, now, math.ceil(end - arrived[k]))
            if rng.random() < 0.02:
                paused_until = now + rng.uniform(1.0, 4.0)
            events.append((now, k, False, 0.0))
            continue
        if sent == 3000:
            continue
        wait = max(burst.wait(1, now), steady.wait(1, now))
        if wait > 0:
            events.append((now + wait, k, False, 0.0))
            continue
        burst.record(1, now, k)
        steady.record(1, now, k)
        sent += 1
        arrival = now + rng.uniform(0.005, 0.05) + (rng.uniform(0.5, 2.0) if rng.random() < 0.02 else 0.0)
        arrived[k] = arrival
        no = math.floor((arrival - offset) / 60.0)
        per_window[no] = per_window.get(no, 0) + 1
        per_burst[math.floor(arrival - offset)] = per_burst.get(math.floor(arrival - offset), 0) + 1
        events.append((arrival + rng.uniform(0.005, 0.05), k, True, now))
    assert max(per_burst.values()) <= 10
    nos = sorted(per_window)
    return [per_window.get(n, 0) for n in range(nos[0], nos[-1] + 1)]


def test_fixed_windows_are_never_overrun_and_stalls_are_caught_up() -> None:
    def mean_full(counts: list[int]) -> float:
        return sum(counts[1:-1]) / len(counts[1:-1])  # leave out the partial first and last

    with_phase, sliding = [], []
    for seed in range(1, 6):
        runs = _simulate(seed, phase_rule=True), _simulate(seed, phase_rule=False)
        assert max(runs[0]) <= 150 and max(runs[1]) <= 150  # no steady window overrun either
        with_phase.append(mean_full(runs[0]))
        sliding.append(mean_full(runs[1]))
    assert min(with_phase) >= 0.99 * 150
    assert sum(with_phase) > sum(sliding) and min(sliding) < 0.99 * 150  # the catch-up pays
