"""The one retry policy: exact sleeps and attempt counts with a fake clock (nothing sleeps)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import openapi_client.exceptions as klaviyo_exc
import pytest

from connectors.classify import CallKind
from connectors.errors import PermanentError, RateLimited, RetryableError
from connectors.retry import RetryPolicy, RetrySettings, full_jitter

READ, IDEM, WRITE = CallKind.READ, CallKind.IDEMPOTENT_WRITE, CallKind.WRITE


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


class Script:
    """A call that raises the scripted failures in order, then returns "ok"."""

    def __init__(self, *failures: BaseException, duration: float = 0.0, time: FakeTime | None = None) -> None:
        self.failures = list(failures)
        self.calls = 0
        self.duration = duration
        self.time = time

    def __call__(self) -> str:
        self.calls += 1
        if self.time is not None:
            self.time.now += self.duration
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def api_error(status: int, retry_after: str | None = None, body: str = "") -> klaviyo_exc.ApiException:
    exc = klaviyo_exc.ApiException(status=status, reason="x", body=body)
    exc.headers = {"Retry-After": retry_after} if retry_after else {}
    return exc


def policy(
    t: FakeTime, settings: dict[str, float] | None = None, jitter: Callable[[float], float] = lambda hi: hi
) -> RetryPolicy:
    bounds = RetrySettings(**settings or {})  # type: ignore[arg-type]
    return RetryPolicy("klaviyo", bounds, sleep=t.sleep, clock=t.clock, jitter=jitter, now=lambda: 0.0)


@pytest.mark.parametrize(
    ("failures", "kind", "settings", "sleeps", "calls"),
    [
        pytest.param([api_error(503), api_error(502)], READ, {}, [0.5, 1.0], 3, id="transient-then-ok"),
        pytest.param([api_error(429, "7")], IDEM, {}, [7.0], 2, id="retry-after-wins-over-backoff"),
        pytest.param(
            [api_error(503), api_error(503), api_error(429, "1")], READ, {}, [0.5, 1.0, 2.0], 4,
            id="backoff-wins-over-short-retry-after",
        ),
        pytest.param(
            [api_error(503)] * 5, IDEM, {"max_delay": 3.0}, [0.5, 1.0, 2.0, 3.0, 3.0], 6, id="capped-backoff",
        ),
        pytest.param(
            [ConnectionResetError(104, "reset")], IDEM, {}, [0.5], 2, id="reset-on-idempotent-write",
        ),
    ],
)
def test_retries_until_success(
    failures: list[BaseException], kind: CallKind, settings: dict[str, float], sleeps: list[float], calls: int
) -> None:
    t = FakeTime()
    call = Script(*failures)
    assert policy(t, settings).call(call, kind=kind, what="get profiles") == "ok"
    assert t.sleeps == sleeps
    assert call.calls == calls


@pytest.mark.parametrize(
    ("failures", "kind", "settings", "error", "sleeps", "calls"),
    [
        pytest.param(
            [api_error(502)] * 10, READ, {}, RetryableError, [0.5, 1.0, 2.0, 4.0, 8.0], 6, id="attempt-bound",
        ),
        pytest.param(
            [api_error(502)] * 10, READ, {"max_elapsed": 5.0}, RetryableError, [0.5, 1.0, 2.0], 4,
            id="time-bound-stops-before-sleeping-past-it",
        ),
        pytest.param(
            [api_error(429, "3600")], READ, {}, RateLimited, [], 1, id="retry-after-beyond-time-bound",
        ),
        pytest.param([api_error(429, "1")], WRITE, {}, RateLimited, [], 1, id="non-idempotent-429"),
        pytest.param([api_error(503)], WRITE, {}, RetryableError, [], 1, id="non-idempotent-503"),
        pytest.param([api_error(400)], IDEM, {}, PermanentError, [], 1, id="permanent"),
        pytest.param([api_error(401)], READ, {}, PermanentError, [], 1, id="auth"),
        pytest.param([ZeroDivisionError()], READ, {}, ZeroDivisionError, [], 1, id="bug-is-not-retried"),
    ],
)
def test_gives_up(
    failures: list[BaseException], kind: CallKind, settings: dict[str, float],
    error: type[BaseException], sleeps: list[float], calls: int,
) -> None:
    t = FakeTime()
    call = Script(*failures)
    with pytest.raises(error):
        policy(t, settings).call(call, kind=kind, what="batch update")
    assert t.sleeps == sleeps
    assert call.calls == calls


def test_time_bound_counts_the_calls_own_duration() -> None:
    t = FakeTime()
    call = Script(*[api_error(503)] * 10, duration=2.0, time=t)
    with pytest.raises(RetryableError):
        policy(t, {"max_elapsed": 10.0}).call(call, kind=READ, what="search")
    # clock after each call / sleep: 2.0, 2.5, 4.5, 5.5, 7.5, 9.5, 11.5; the next sleep (4.0)
    # would end at 15.5 > 10, so it gives up after the 4th call
    assert t.sleeps == [0.5, 1.0, 2.0]
    assert call.calls == 4


def test_jitter_is_applied_to_the_backoff() -> None:
    t = FakeTime()
    call = Script(api_error(503), api_error(503))
    policy(t, jitter=lambda hi: hi / 4).call(call, kind=READ, what="x")
    assert t.sleeps == [0.125, 0.25]


def test_full_jitter_spans_zero_to_ceiling() -> None:
    samples = [full_jitter(2.0) for _ in range(500)]
    assert all(0.0 <= s <= 2.0 for s in samples)
    assert min(samples) < 0.5 and max(samples) > 1.5


class FakeBudget:
    def __init__(self) -> None:
        self.acquired = 0
        self.penalties: list[float | None] = []
        self.observed: list[Mapping[str, str] | None] = []

    def observe(self, headers: Mapping[str, str] | None) -> None:
        self.observed.append(headers)

    def acquire(self, n: int = 1) -> float:
        self.acquired += n
        return 0.0

    def penalize(self, seconds: float | None) -> None:
        self.penalties.append(seconds)


def test_each_attempt_acquires_and_429s_slow_the_budget() -> None:
    t = FakeTime()
    budget = FakeBudget()
    call = Script(api_error(429, "2"), api_error(429), api_error(503))
    assert policy(t).call(call, kind=IDEM, what="list add", budget=budget) == "ok"
    assert budget.acquired == 4
    assert budget.penalties == [2.0, None]
    assert budget.observed == [{"retry-after": "2"}, {}, {}, None]  # errors' headers; no response noted
    assert t.sleeps == [2.0, 1.0, 2.0]


def test_every_attempt_is_logged_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    t = FakeTime()
    leaked = '{"errors":[{"id":"e-1","code":"x","detail":"Authorization: Bearer pat-na1-secret-1234"}]}'
    call = Script(api_error(503, body=leaked), api_error(503, body=leaked), api_error(503, body=leaked))
    with caplog.at_level(logging.DEBUG, logger="segsync.connectors.retry"), pytest.raises(RetryableError):
        policy(t, {"max_attempts": 3}).call(call, kind=READ, what="get events")
    lines = [r.getMessage() for r in caplog.records]
    starts = [line for line in lines if "attempt" in line and "failed" not in line]
    assert starts == [f"klaviyo get events: attempt {n}/3" for n in (1, 2, 3)]
    failed = [line for line in lines if "failed" in line]
    assert len(failed) == 2 and "retrying in 0.50s" in failed[0] and "request id e-1" in failed[0]
    assert "giving up" in lines[-1]
    assert not any("pat-na1-secret-1234" in line for line in lines)


@pytest.mark.parametrize(("expected", "level"), [((), logging.WARNING), ((404,), logging.DEBUG),
                                                 ((409,), logging.WARNING)])
def test_an_expected_status_gives_up_quietly(caplog: pytest.LogCaptureFixture, expected: tuple[int, ...],
                                             level: int) -> None:
    t = FakeTime()
    with caplog.at_level(logging.DEBUG, logger="segsync.connectors.retry"), pytest.raises(PermanentError):
        policy(t).call(Script(api_error(404)), kind=READ, what="get list by name", expected=expected)
    gave_up = [r for r in caplog.records if "giving up" in r.getMessage()]
    assert [r.levelno for r in gave_up] == [level]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and level == logging.DEBUG]


def test_expected_statuses_do_not_quiet_other_failures(caplog: pytest.LogCaptureFixture) -> None:
    t = FakeTime()
    with caplog.at_level(logging.DEBUG, logger="segsync.connectors.retry"), pytest.raises(RetryableError):
        policy(t, {"max_attempts": 2}).call(Script(api_error(503), api_error(503)), kind=READ, what="get",
                                            expected=(404,))
    assert [r.levelno for r in caplog.records if r.levelno >= logging.WARNING] == [logging.WARNING] * 2


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        RetrySettings(max_attempts=0)
