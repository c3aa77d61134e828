"""The proactive rate budget: exact waits with a fake clock, sustained rates, headers, threads."""

from __future__ import annotations

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
