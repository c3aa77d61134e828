"""A proactive rate budget: requests wait here so that 429s stay rare.

A `RateBudget` holds named windows (``limit`` requests per ``seconds``) and endpoint
classes, each of which spends from one or more windows (HubSpot ``search`` spends from its
4/s window *and* the account's 10 s window). ``acquire(cls, n)`` blocks, with the injected
`sleep` and `clock`, until every window of the class has room, then records the sends.

Every window is a **sliding log of sends**: at most ``limit`` sends in any interval of
``seconds + margin``. That models HubSpot's *rolling* 10 s window exactly, and is also safe
against Klaviyo's *fixed* 1 s / 60 s windows whatever their alignment (any fixed window is
one such interval) while still sustaining ``limit`` per window in the long run.

A send is **in flight from `acquire` until it is answered**, and counts until ``seconds +
margin`` after the answer. The server counts a request when it *arrives*, at some unknown
moment between our `acquire` and the answer; a log of acquire times alone is wrong whenever
that delay varies (several threads serialising large bodies under the GIL, a garbage-collector
pause of a second between `acquire` and the socket write: the delayed requests then arrive in
the same server window as the next ones, and the burst window overflows). Counting every
request from its acquire until ``seconds`` after its answer is exact whatever the delay:
requests that arrive in one server window [a, a + seconds) were all acquired before the last
of them, and each was answered after a, so when the last one is acquired the others are in
flight or answered less than ``seconds`` ago. The margin (default 0.1 s) is extra slack for
servers whose windows are a little longer than their nominal length (e.g. counted in whole
seconds). A request is answered when its thread calls `observe` (`connectors.retry` does so
after every attempt, response or error) or its next `acquire` (a thread sends one request at
a time); one never answered (a thread that died in a call) counts as answered
``ratewindow.MAX_FLIGHT`` seconds after it was sent.

Windows of servers with **fixed windows that announce their reset** (Klaviyo's steady
window, ``RateLimit-Reset``) also learn where the server's windows begin, so that after a
stall of ours the full limit is used again as soon as the server's window has rolled over
(the sliding log alone would give the skipped slots back only a whole window later); see
`connectors.ratewindow`. ``BudgetSpec.reset_unit`` is the unit the server rounds its reset to
(whole seconds for Klaviyo).

Responses keep the model honest (``observe(cls, headers)``):

- HubSpot ``X-HubSpot-RateLimit-Max`` / ``-Remaining`` / ``-Interval-Milliseconds``:
  a lower Max lowers the window's limit (never above the configured ceiling); a Remaining
  lower than ours (another app spending the same account's quota) is charged to the window
  as sends made now.
- Klaviyo ``RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` describe the steady window: the
  same, except the extra sends are charged so that they expire when the server's fixed
  window resets (``Reset`` seconds from now).

A 429 (``penalize``) blocks the class's windows for ``Retry-After`` seconds, or, without one,
marks them full now, and makes them forget the server's window boundaries (a second 429 stops
them using boundaries at all). Budgets are shared by all threads of a process through `REGISTRY`,
keyed by (provider, account); they are not shared across processes.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from connectors.ratewindow import Window

__all__ = [
    "KLAVIYO_LIMITS",
    "REGISTRY",
    "BudgetRegistry",
    "BudgetSpec",
    "ClassBudget",
    "RateBudget",
    "WindowSpec",
    "hubspot_spec",
    "klaviyo_spec",
]

HeaderStyle = Literal["hubspot", "klaviyo", "none"]


@dataclass(frozen=True)
class WindowSpec:
    """At most `limit` requests in any `seconds`-long interval (the configured ceiling)."""

    limit: int
    seconds: float

    def __post_init__(self) -> None:
        if self.limit < 1 or self.seconds <= 0:
            raise ValueError(f"a rate window needs limit >= 1 and seconds > 0, got {self}")


@dataclass(frozen=True)
class BudgetSpec:
    """The windows of one provider account and which windows each endpoint class spends."""

    provider: str
    windows: Mapping[str, WindowSpec]
    classes: Mapping[str, tuple[str, ...]]
    headers: HeaderStyle = "none"
    margin: float = 0.1
    reset_unit: float = 1.0  # the rounding of the server's reset header, seconds

    def __post_init__(self) -> None:
        for cls, names in self.classes.items():
            unknown = [n for n in names if n not in self.windows]
            if not names or unknown:
                raise ValueError(f"endpoint class {cls!r} names unknown windows {unknown}")


def hubspot_spec(per_10s: int = 190, search_per_second: int = 4, margin: float = 0.1) -> BudgetSpec:
    """HubSpot: 190 (Professional/Enterprise) or 100 (Free/Starter) per rolling 10 s;
    CRM search additionally 4/s (it is counted against the 10 s window too, to be safe)."""
    return BudgetSpec(
        provider="hubspot",
        windows={"ten_second": WindowSpec(per_10s, 10.0), "search": WindowSpec(search_per_second, 1.0)},
        classes={"default": ("ten_second",), "search": ("search", "ten_second")},
        headers="hubspot",
        margin=margin,
    )


# Klaviyo per-endpoint (burst per 1 s, steady per 60 s, daily or None), from the
# x-klaviyo-ratelimit values of spec 2026-07-15 / klaviyo-api 25.0.0 docstrings.
KLAVIYO_LIMITS: Mapping[str, tuple[int, int, int | None]] = {
    "profiles": (75, 750, None),  # get/create/update profile, profile-import
    "profile_bulk_import": (10, 150, None),  # bulk import jobs, job status, import errors
    "events": (350, 3500, None),  # get_events, create_event
    "event_bulk_create": (10, 150, None),  # bulk_create_events, get_event
    "metrics": (10, 150, None),
    "metric_aggregates": (3, 60, None),
    "lists_read": (75, 750, None),  # get_lists, get_profiles_for_list, ...
    "list_create": (10, 150, 150),
    "list_members": (10, 150, None),  # add/remove profiles to/from a list (<= 1000 ids)
    "segments_read": (75, 750, None),
    "segment_write": (1, 15, 100),
    "profile_memberships": (3, 60, None),  # get_lists_for_profile, get_segments_for_profile
    "tags": (3, 60, None),
    "webhooks": (1, 15, None),
    "data_privacy": (3, 60, None),  # request_profile_deletion (data_privacy.json, not vendored)
}


def klaviyo_spec(
    overrides: Mapping[str, tuple[int, int, int | None]] | None = None,
    margin: float = 0.1,
    reset_unit: float = 1.0,
) -> BudgetSpec:
    """Klaviyo: one burst (1 s) and one steady (60 s) window per endpoint class, plus a
    rolling 24 h window for the classes with a daily cap."""
    windows: dict[str, WindowSpec] = {}
    classes: dict[str, tuple[str, ...]] = {}
    for cls, (burst, steady, daily) in {**KLAVIYO_LIMITS, **(overrides or {})}.items():
        windows[f"{cls}.burst"] = WindowSpec(burst, 1.0)
        windows[f"{cls}.steady"] = WindowSpec(steady, 60.0)
        names = [f"{cls}.burst", f"{cls}.steady"]
        if daily is not None:
            windows[f"{cls}.daily"] = WindowSpec(daily, 86400.0)
            names.append(f"{cls}.daily")
        classes[cls] = tuple(names)
    return BudgetSpec("klaviyo", windows, classes, headers="klaviyo", margin=margin, reset_unit=reset_unit)


def _first_int(value: str | None) -> int | None:
    match = re.match(r"\s*(\d+)", value or "")
    return int(match.group(1)) if match else None


def _first_float(value: str | None) -> float | None:
    match = re.match(r"\s*(\d+(?:\.\d+)?)", value or "")
    return float(match.group(1)) if match else None


class RateBudget:
    """Thread-safe windows of one provider account (see the module docstring)."""

    def __init__(
        self,
        spec: BudgetSpec,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_send: Callable[[str, int, float], None] | None = None,
    ) -> None:
        self.spec = spec
        self._clock = clock
        self._sleep = sleep
        self._on_send = on_send  # (class, n, clock time), called under the lock
        self._lock = threading.Lock()
        self._windows = {
            name: Window(w.limit, w.seconds, spec.margin, spec.reset_unit) for name, w in spec.windows.items()
        }
        self._flying: dict[int, list[Window]] = {}  # thread id -> windows it has a send in flight in
        self.acquired: dict[str, int] = dict.fromkeys(spec.classes, 0)
        self.waited: dict[str, float] = dict.fromkeys(spec.classes, 0.0)

    def _of(self, cls: str) -> list[Window]:
        try:
            return [self._windows[name] for name in self.spec.classes[cls]]
        except KeyError:
            known = ", ".join(sorted(self.spec.classes))
            raise ValueError(f"{self.spec.provider}: unknown endpoint class {cls!r} ({known})") from None

    def acquire(self, cls: str, n: int = 1) -> float:
        """Block until `n` requests of class `cls` may be sent; return the seconds waited."""
        windows = self._of(cls)
        if n < 1 or any(n > w.ceiling for w in windows):
            raise ValueError(f"cannot acquire {n} at once from {cls!r}")
        waited = 0.0
        me = threading.get_ident()
        while True:
            with self._lock:
                now = self._clock()
                self._answered(me, now)  # this thread's previous request is over
                wait = max(w.wait(n, now) for w in windows)
                if wait <= 0:
                    for w in windows:
                        w.record(n, now, me)
                    self._flying[me] = windows
                    self.acquired[cls] += n
                    self.waited[cls] += waited
                    if self._on_send is not None:
                        self._on_send(cls, n, now)
                    return waited
            self._sleep(wait)
            waited += wait

    def _answered(self, key: int, now: float) -> dict[int, float]:
        """Answer `key`'s sends in flight; id(window) -> their acquire time."""
        acquired: dict[int, float] = {}
        for w in self._flying.pop(key, ()):
            ts = w.answer(key, now)
            if ts is not None:
                acquired[id(w)] = ts
        return acquired

    def penalize(self, cls: str, seconds: float | None) -> None:
        """After a 429: block `cls`'s windows for `seconds`, or mark them full now."""
        windows = self._of(cls)
        with self._lock:
            now = self._clock()
            for w in windows:
                w.throttled()
                if seconds is not None:
                    w.blocked_until = max(w.blocked_until, now + seconds)
                else:
                    w.charge(0, now, None)

    def observe(self, cls: str, headers: Mapping[str, str] | None) -> None:
        """The calling thread's request was answered (or failed); update `cls`'s windows from
        the response's rate-limit headers (any case), if any."""
        with self._lock:
            acquired = self._answered(threading.get_ident(), self._clock())
        if not headers or self.spec.headers == "none":
            return
        h = {str(k).lower(): str(v) for k, v in headers.items()}
        windows = self._of(cls)
        if self.spec.headers == "hubspot":
            limit = _first_int(h.get("x-hubspot-ratelimit-max"))
            remaining = _first_int(h.get("x-hubspot-ratelimit-remaining"))
            interval_ms = _first_int(h.get("x-hubspot-ratelimit-interval-milliseconds"))
            seconds = interval_ms / 1000 if interval_ms else None
            reset: float | None = None
        else:
            limit = _first_int(h.get("ratelimit-limit"))
            remaining = _first_int(h.get("ratelimit-remaining"))
            reset = _first_float(h.get("ratelimit-reset"))
            seconds = None
        matching = [w for w in windows if seconds is not None and abs(w.seconds - seconds) < 0.5]
        steady = [w for w in windows if w.seconds <= 60.0] or windows
        window = matching[0] if matching else max(steady, key=lambda w: w.seconds)
        with self._lock:
            now = self._clock()
            if limit:
                window.limit = min(window.ceiling, limit)
            if remaining is not None:
                window.charge(remaining, now, None if reset is None else now + reset)
            sent = acquired.get(id(window))
            if reset is not None and sent is not None:  # Klaviyo: fixed windows, reset announced
                window.learn(sent, now, reset)

    def bind(self, cls: str) -> ClassBudget:
        """This budget seen from one endpoint class (what `RetryPolicy.call` takes)."""
        self._of(cls)
        return ClassBudget(self, cls)

    def phase(self, window: str) -> tuple[float, float] | None:
        """Where a boundary of the server's `window` lies, once learned (for tests)."""
        with self._lock:
            return self._windows[window].phase

    def sends(self, window: str) -> list[float]:
        """Sends still counted by `window`, for tests and benchmarks: the answer times of
        answered sends (oldest first), then the acquire times of those in flight."""
        with self._lock:
            return self._windows[window].times(self._clock())

    def limit(self, window: str) -> int:
        """The window's current limit (the ceiling, or lower if the provider said so)."""
        with self._lock:
            return self._windows[window].limit


@dataclass(frozen=True)
class ClassBudget:
    """A `RateBudget` bound to one endpoint class."""

    budget: RateBudget
    cls: str

    def acquire(self, n: int = 1) -> float:
        return self.budget.acquire(self.cls, n)

    def penalize(self, seconds: float | None) -> None:
        self.budget.penalize(self.cls, seconds)

    def observe(self, headers: Mapping[str, str] | None) -> None:
        self.budget.observe(self.cls, headers)


@dataclass
class BudgetRegistry:
    """The process-wide budgets, one per (provider, account)."""

    _budgets: dict[tuple[str, str], RateBudget] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, spec: BudgetSpec, account: str = "default") -> RateBudget:
        """The shared budget for (spec.provider, account), created from `spec` on first use.

        Asking again with a different spec is a configuration mistake and raises ValueError.
        """
        key = (spec.provider, account)
        with self._lock:
            if key not in self._budgets:
                self._budgets[key] = RateBudget(spec)
            budget = self._budgets[key]
        if budget.spec != spec:
            raise ValueError(f"the {spec.provider} budget for account {account!r} already has other limits")
        return budget

    def clear(self) -> None:
        with self._lock:
            self._budgets.clear()


REGISTRY = BudgetRegistry()
