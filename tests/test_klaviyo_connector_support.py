"""Fixtures of the Klaviyo connector tests: the sandbox over loopback, a fake clock, a factory.

No tests here; the ``test_klaviyo_connector_*`` modules import from it. Time is fake: the
retry policy, the rate budget and job polling all sleep on `FakeClock`, so nothing waits.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest

from connectors.budget import RateBudget, klaviyo_spec
from connectors.klaviyo import KlaviyoConnector, KlaviyoOptions
from connectors.retry import RetryPolicy
from connectors.sandbox import Dataset, Sandbox, generate, start_sandbox

METRICS = {"order_placed": ["Placed Order"], "email_opened": ["Opened Email"]}


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


@cache
def dataset() -> Dataset:
    return generate(250, seed=7, events_per_contact=20)


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with start_sandbox(dataset=dataset(), rate_limits=False) as sandbox:
        sandbox.klaviyo.settings.bulk_import_delay_s = 0.02
        yield sandbox


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def connector(
    target: Sandbox | str, clock: FakeClock, key: str | None = None, **options: Any
) -> KlaviyoConnector:
    """A connector on fake time for the sandbox (or a base URL), with `KlaviyoOptions`."""
    opts = {"job_poll_initial": 0.05, **options}
    url = target if isinstance(target, str) else target.klaviyo_url
    default_key = "pk_test" if isinstance(target, str) else target.klaviyo_key
    return KlaviyoConnector(
        key or default_key,
        url,
        metrics=METRICS,
        budget=RateBudget(klaviyo_spec(), clock=clock.now, sleep=clock.sleep),
        retry=RetryPolicy("klaviyo", sleep=clock.sleep, clock=clock.now, jitter=lambda ceiling: ceiling),
        clock=clock.now,
        sleep=clock.sleep,
        options=KlaviyoOptions(**opts),
    )


def routes(sb: Sandbox, name: str) -> list[Any]:
    """The sandbox's request log entries of one operation (oldest first)."""
    with sb.klaviyo.app.lock:
        return [e for e in sb.klaviyo.app.log if e.route == name]
