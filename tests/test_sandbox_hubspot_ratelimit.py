"""HubSpot rate limits: the rolling window per token, search per second, the daily quota, headers and
429 bodies. Burst tests hit the real server; the paced tests drive the limiter's clock so they are
exact and fast."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from connectors.sandbox.hubspot import HubSpotSettings, RateLimitSettings
from tests.sandbox_hubspot_support import Running, assert_hubspot_error, start

CONTACTS = "/crm/v3/objects/contacts"
SEARCH = "/crm/v3/objects/contacts/search"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limited(request: pytest.FixtureRequest) -> Iterator[Running]:
    limits: RateLimitSettings = request.param
    server, running = start(HubSpotSettings(rate_limit=limits), rate_limits=True)
    try:
        yield running
    finally:
        server.stop()
        running.app.close()
        running.http.close()


def burst(hs: Running, n: int, path: str = CONTACTS) -> list[int]:
    if path == SEARCH:
        return [hs.post(path, {}).status_code for _ in range(n)]
    return [hs.get(path).status_code for _ in range(n)]


@pytest.mark.parametrize("limited", [RateLimitSettings(max_requests=10, window_ms=1000)], indirect=True)
def test_burst_sees_429_exactly_after_the_ceiling_with_headers(limited: Running) -> None:
    first = limited.get(CONTACTS)
    assert first.headers["X-HubSpot-RateLimit-Max"] == "10"
    assert first.headers["X-HubSpot-RateLimit-Remaining"] == "9"
    assert first.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "1000"
    assert first.headers["X-HubSpot-RateLimit-Daily"] == "1000000"
    assert first.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "999999"
    statuses = burst(limited, 12)
    assert statuses == [200] * 9 + [429] * 3
    refused = limited.get(CONTACTS)
    body = assert_hubspot_error(refused, 429, "RATE_LIMITS")
    assert body["errorType"] == "RATE_LIMIT" and body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert refused.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    time.sleep(1.05)  # the window rolls: the ceiling is available again
    assert burst(limited, 10) == [200] * 10


@pytest.mark.parametrize("limited", [RateLimitSettings(max_requests=10, window_ms=1000)], indirect=True)
def test_paced_at_the_ceiling_in_real_time_sees_none(limited: Running) -> None:
    # request k goes out just after the response to request k - 10 is a full window old: the
    # server stamped k - 10 before that response, so k is never inside its window
    answered: list[float] = []
    statuses = []
    for k in range(25):
        if k >= 10:
            delay = answered[k - 10] + 1.001 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        statuses.append(limited.get(CONTACTS).status_code)
        answered.append(time.monotonic())
    assert statuses == [200] * 25
    assert answered[-1] - answered[0] < 3.0  # it really ran at (about) the ceiling


@pytest.mark.parametrize("limited", [RateLimitSettings()], indirect=True)
def test_real_config_190_per_10s(limited: Running) -> None:
    clock = FakeClock()
    limited.app.limiter.clock = clock
    assert burst(limited, 191) == [200] * 190 + [429]
    # paced exactly at the ceiling (19 per second) for 30 s of limiter time: never refused
    base = clock.now + 10.0
    statuses = []
    for k in range(570):
        clock.now = base + (k * 10_000_000 // 190) / 1e6  # microsecond instants, 190 per 10 s exactly
        statuses.append(limited.get(CONTACTS).status_code)
    assert statuses == [200] * 570


@pytest.mark.parametrize("limited", [RateLimitSettings(search_per_second=4)], indirect=True)
def test_search_limit_is_separate_and_has_no_headers(limited: Running) -> None:
    clock = FakeClock()
    limited.app.limiter.clock = clock
    ok = limited.post(SEARCH, {})
    assert ok.status_code == 200 and "X-HubSpot-RateLimit-Max" not in ok.headers
    assert burst(limited, 4, SEARCH) == [200, 200, 200, 429]
    body = assert_hubspot_error(limited.post(SEARCH, {}), 429, "RATE_LIMITS")
    assert body["policyName"] == "SECONDLY"
    assert limited.get(CONTACTS).status_code == 200  # the general window is untouched
    clock.now += 1.0
    assert burst(limited, 4, SEARCH) == [200] * 4


@pytest.mark.parametrize("limited", [RateLimitSettings(daily_limit=5)], indirect=True)
def test_daily_quota(limited: Running) -> None:
    assert burst(limited, 6) == [200] * 5 + [429]
    resp = limited.get(CONTACTS)
    body = assert_hubspot_error(resp, 429, "RATE_LIMITS")
    assert body["policyName"] == "DAILY" and resp.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    limited.app.limiter.wall = lambda: time.time() + 86_400  # next day
    assert limited.get(CONTACTS).status_code == 200


@pytest.mark.parametrize("limited", [RateLimitSettings(max_requests=2, window_ms=60_000)], indirect=True)
def test_limits_are_per_token_and_control_routes_are_free(limited: Running) -> None:
    limited.settings.tokens.add("pat-other")
    assert burst(limited, 3) == [200, 200, 429]
    other = limited.http.get(limited.url + CONTACTS, headers={"Authorization": "Bearer pat-other"})
    assert other.status_code == 200
    assert all(limited.get("/_sandbox/hubspot/stats").status_code == 200 for _ in range(5))
