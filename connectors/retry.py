"""The one retry policy of segsync (tenacity), used for every provider call.

``RetryPolicy(provider).call(fn, kind=..., what=...)`` runs `fn` (one SDK or HTTP call):

- every failure is translated once, at this boundary (`connectors.errors.boundary`);
- only `RetryableError` is retried, and only when the call is idempotent (`kind`); a
  non-idempotent call (`CallKind.WRITE`) is never repeated, whatever the error;
- the wait before attempt n+1 is full-jitter exponential backoff,
  ``uniform(0, min(max_delay, base_delay * 2**(n-1)))``, but never less than the error's
  ``retry_after`` (the server's ``Retry-After``, seconds or HTTP-date);
- it is bounded by `max_attempts` and by `max_elapsed` seconds: it gives up at once, without
  sleeping, when the next wait would end past the time bound (a 24 h ``Retry-After`` is
  not waited out);
- `sleep`, `clock` (monotonic seconds) and `jitter` are injected, so tests never sleep;
- with a `budget` (see `connectors.budget`), each attempt first acquires from the rate
  budget, the budget then reads the response's rate-limit headers (noted by the clients of
  `connectors.sdk`, or carried by the error), and a 429 slows down every thread of the
  process sharing that budget;
- each attempt is logged (what, attempt number, error class, status, request id, wait);
  messages are redacted and the call's arguments are never logged. Giving up is a WARNING,
  except for a status the caller named in ``expected`` (e.g. ``expected=(404,)`` for "look
  the list up by name; it may not exist yet"): that outcome is part of the caller's plan and
  is logged at DEBUG. The error is raised all the same.

The last error is re-raised as itself (a `ConnectorError`), never as tenacity's
``RetryError``. SDK retries are switched off (`connectors.sdk`) so nothing retries twice.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception

from connectors.classify import CallKind
from connectors.errors import ConnectorError, RateLimited, RetryableError, boundary, last_response_headers

__all__ = ["BudgetLike", "RetryPolicy", "RetrySettings", "full_jitter"]

LOG = logging.getLogger("segsync.connectors.retry")
T = TypeVar("T")


class BudgetLike(Protocol):
    """What the policy needs from a rate budget bound to one endpoint class."""

    def acquire(self, n: int = 1) -> float: ...

    def penalize(self, seconds: float | None) -> None: ...

    def observe(self, headers: Mapping[str, str] | None) -> None: ...


@dataclass(frozen=True)
class RetrySettings:
    """Bounds of the policy. Defaults suit batch pushes and paged pulls."""

    max_attempts: int = 6
    max_elapsed: float = 120.0  # seconds, from the first attempt
    base_delay: float = 0.5
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_elapsed <= 0 or self.base_delay <= 0:
            raise ValueError("max_attempts >= 1, max_elapsed > 0 and base_delay > 0 are required")


def full_jitter(ceiling: float) -> float:
    """A uniformly random wait in [0, ceiling] (AWS "full jitter")."""
    return random.uniform(0.0, ceiling)


class RetryPolicy:
    """Bounded, Retry-After-aware, jittered retries for one provider."""

    def __init__(
        self,
        provider: str,
        settings: RetrySettings | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[float], float] = full_jitter,
        now: Callable[[], float] = time.time,
        logger: logging.Logger = LOG,
    ) -> None:
        self.provider = provider
        self.settings = settings or RetrySettings()
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._now = now
        self._log = logger

    def backoff(self, attempt: int) -> float:
        """The jittered wait after failed attempt number `attempt` (1-based)."""
        s = self.settings
        return self._jitter(min(s.max_delay, s.base_delay * 2 ** (attempt - 1)))

    def _wait(self, state: RetryCallState) -> float:
        wait = self.backoff(state.attempt_number)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            wait = max(wait, exc.retry_after)
        return wait

    def call(
        self,
        fn: Callable[[], T],
        *,
        kind: CallKind,
        what: str,
        budget: BudgetLike | None = None,
        expected: Collection[int] = (),
    ) -> T:
        """Run `fn` under the policy; `what` names the call in logs (no data, no secrets).
        A final error whose status is in `expected` is logged at DEBUG, not WARNING."""
        settings = self.settings
        start = self._clock()
        label = f"{self.provider} {what}"

        def attempt() -> T:
            if budget is None:
                with boundary(self.provider, kind, self._now):
                    return fn()
            budget.acquire()
            try:
                with boundary(self.provider, kind, self._now):
                    result = fn()
            except ConnectorError as exc:
                budget.observe(exc.headers)
                if isinstance(exc, RateLimited):
                    budget.penalize(exc.retry_after)
                raise
            budget.observe(last_response_headers())
            return result

        def should_stop(state: RetryCallState) -> bool:
            if state.attempt_number >= settings.max_attempts:
                return True
            return self._clock() - start + state.upcoming_sleep > settings.max_elapsed

        def before(state: RetryCallState) -> None:
            self._log.debug("%s: attempt %d/%d", label, state.attempt_number, settings.max_attempts)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            self._log.warning(
                "%s: attempt %d/%d failed: %s; retrying in %.2fs",
                label, state.attempt_number, settings.max_attempts, _describe(exc), state.upcoming_sleep,
            )

        retrying = Retrying(
            sleep=self._sleep,
            stop=should_stop,
            wait=self._wait,
            retry=retry_if_exception(lambda e: kind.idempotent and isinstance(e, RetryableError)),
            before=before,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except ConnectorError as exc:
            level = logging.DEBUG if exc.status is not None and exc.status in expected else logging.WARNING
            self._log.log(level, "%s: giving up: %s", label, _describe(exc))
            raise


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, ConnectorError):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__
