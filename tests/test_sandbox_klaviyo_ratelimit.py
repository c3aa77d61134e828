"""Klaviyo rate limits: the tier table matches the spec, 429s land exactly where the fixed
windows say (injected clock), headers are right, and a client paced at the ceiling sees none."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from connectors.sandbox.klaviyo import KlaviyoSettings, KlaviyoState, build_app
from connectors.sandbox.klaviyo.ratelimit import RateLimiter
from connectors.sandbox.klaviyo.ratelimit_table import TIERS
from connectors.sandbox.server import SandboxServer
from tests.test_sandbox_klaviyo_support import operations, validate

HEADERS = {"Authorization": "Klaviyo-API-Key pk_sandbox", "revision": "2026-10-15"}


def test_table_matches_spec() -> None:
    def n(x: str | None) -> int | None:
        return int(x.split("/")[0]) if x else None

    from_spec = {}
    for op_id, (_, op) in operations().items():
        rl = op.get("x-klaviyo-ratelimit")
        if rl:
            from_spec[op_id] = (n(rl.get("burst")), n(rl.get("steady")), n(rl.get("daily")))
    assert from_spec == TIERS


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def server() -> Any:
    clock = Clock(60 * 16_667 + 20.0)  # 20 s into a steady window
    settings = KlaviyoSettings(clock=clock)
    with SandboxServer(build_app(KlaviyoState(settings), settings)) as srv:
        yield srv, clock


def get(srv: SandboxServer, path: str) -> requests.Response:
    return requests.get(srv.url + path, headers=HEADERS, timeout=5)


def test_burst_window_throttles_exactly_at_its_ceiling(server: Any) -> None:
    srv, clock = server
    statuses = [get(srv, "/api/metrics").status_code for _ in range(12)]  # get_metrics: 10/s, 150/m
    assert statuses == [200] * 10 + [429] * 2
    clock.t += 0.5  # same 1-second window
    throttled = get(srv, "/api/metrics")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "1"
    assert "RateLimit-Limit" not in throttled.headers
    err = throttled.json()["errors"][0]
    assert (err["code"], err["status"]) == ("throttled", 429)
    validate("get_metrics", 429, throttled.json())
    clock.t += 0.5  # next burst window; 13 counted so far in the steady window
    ok = get(srv, "/api/metrics")
    assert ok.status_code == 200
    assert (
        ok.headers["RateLimit-Limit"],
        ok.headers["RateLimit-Remaining"],
        ok.headers["RateLimit-Reset"],
    ) == ("150", str(150 - 14), "39")


def test_steady_window_throttles_until_the_minute_ends(server: Any) -> None:
    srv, clock = server
    seen = []
    for i in range(151):  # 10 per second for 15 s: under the burst ceiling, 151st breaks steady
        clock.t = 60 * 16_667 + 20.0 + i // 10 + 0.01 * (i % 10)
        seen.append(get(srv, "/api/metrics").status_code)
    assert seen == [200] * 150 + [429]
    last = get(srv, "/api/metrics")
    assert last.status_code == 429
    assert int(last.headers["Retry-After"]) == 60 - 35
    clock.t = 60 * 16_668 + 0.0
    assert get(srv, "/api/metrics").status_code == 200


def test_limits_are_per_endpoint_and_switchable(server: Any) -> None:
    srv, _ = server
    assert [get(srv, "/api/metrics").status_code for _ in range(11)][-1] == 429
    assert get(srv, "/api/profiles").status_code == 200  # its own window
    srv.app.settings.rate_limits = False
    assert get(srv, "/api/metrics").status_code == 200


def test_daily_cap_applies_to_create_list() -> None:
    clock = Clock(86_400 * 20_000 + 5.0)
    lim = RateLimiter(clock, tiers={"create_list": (10, 150, 150)})
    verdicts = []
    for i in range(151):
        clock.t = 86_400 * 20_000 + 5.0 + i * 61  # one per minute-window: only the daily cap binds
        verdicts.append(lim.check("create_list"))
    assert [v.allowed for v in verdicts if v] == [True] * 150 + [False]
    assert verdicts[-1] is not None and verdicts[-1].retry_after_s > 3600


def test_paced_client_at_the_ceiling_sees_no_429() -> None:
    settings = KlaviyoSettings(rate_scale=0.1)  # burst window 100 ms, steady 6 s
    with SandboxServer(build_app(KlaviyoState(settings), settings)) as srv:
        statuses = []
        for _ in range(3):
            start = time.time()
            window = (start // 0.1 + 1) * 0.1  # begin at a fresh 100 ms window
            time.sleep(max(window - time.time(), 0) + 0.005)
            statuses += [get(srv, "/api/metrics").status_code for _ in range(10)]
        assert statuses == [200] * 30


def test_scaled_windows_round_waits_to_scaled_units_and_count_what_they_let_through() -> None:
    clock = Clock(6.0 * 300_000 + 1.23)  # x0.1: 1.23 s into a 6 s steady window, 0.03 s into a burst one
    lim = RateLimiter(clock, scale=0.1)
    verdicts = [lim.check("add_profiles_to_list") for _ in range(11)]  # 10 per 0.1 s, 150 per 6 s
    ok, throttled = verdicts[9], verdicts[10]
    assert ok is not None and throttled is not None and not throttled.allowed
    assert throttled.retry_after_s == pytest.approx(0.1)  # one scaled second, not a whole real one
    assert RateLimiter.seconds_text(throttled.retry_after_s) == "0.1"
    assert ok.reset_s == pytest.approx(4.8) and RateLimiter.headers(ok)["RateLimit-Reset"] == "4.8"
    assert lim.allowed == {("add_profiles_to_list", 300_000): 10}
    assert RateLimiter.seconds_text(25.0) == "25"  # unscaled values stay whole seconds
