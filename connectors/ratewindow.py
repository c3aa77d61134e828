"""One rate-limit window of `connectors.budget`: at most ``limit`` requests per ``seconds``.

Not thread-safe: `connectors.budget.RateBudget` guards every window with its lock. Times are
the budget's clock (monotonic seconds).

**Two admission rules**; a send is admitted when either says yes (each is safe on its own):

- *Sliding* (every server): a request counts from its `record` (acquire) until ``span`` =
  ``seconds + margin`` after its answer; at most ``limit`` count at once. Safe against any
  window alignment (fixed or rolling) and any delay between our acquire and the server's
  arrival, see the `connectors.budget` docstring.
- *Phase* (servers with fixed windows that say when they reset): once `learn` has placed the
  server's window boundaries (some boundary lies in ``phase = (lo, hi)``, then every
  ``seconds``), a request needs room only among the requests that may have *arrived in the
  current server window*: those in flight, those answered after the window's earliest
  possible start, and the foreign sends the server reported. The sliding rule never lets a
  client catch up after a stall (a garbage-collector pause, a slow batch boundary): the
  slots it skipped come back a whole window later. The phase rule gives the full limit
  again as soon as the server's window has surely rolled over. A reset that contradicts the
  boundaries learned so far (the windows are not fixed, or not ``seconds`` long) switches
  the rule off for good; a 429 forgets the boundaries, and a second one switches it off.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

__all__ = ["MAX_FLIGHT", "Window"]

MAX_FLIGHT = 300.0  # seconds after which a send never answered counts as answered
_EPSILON = 1e-9  # float slack so that a wait computed as expiry - now always suffices


@dataclass(frozen=True, order=True)
class _Entry:
    expires: float  # the sliding rule stops counting it then
    n: int
    own: bool  # our answered send (answered at expires - span), else a foreign charge


class Window:
    def __init__(self, limit: int, seconds: float, margin: float, reset_unit: float = 1.0) -> None:
        self.ceiling = limit
        self.limit = limit
        self.seconds = seconds
        self.span = seconds + margin
        self.reset_unit = reset_unit
        self.blocked_until = -math.inf
        self.phase: tuple[float, float] | None = None
        self.fixed = True  # False once the server's resets contradicted fixed windows
        self._strikes = 0
        self._log: list[_Entry] = []  # sorted by expiry
        self._flying: dict[int, tuple[float, int]] = {}  # sender key -> (acquired at, n)
        self._count = 0  # log + flying

    # -- bookkeeping -----------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        for key, (ts, n) in list(self._flying.items()):
            if ts + MAX_FLIGHT <= now:
                del self._flying[key]
                bisect.insort(self._log, _Entry(ts + MAX_FLIGHT + self.span, n, True))
        cut = 0
        for entry in self._log:
            if entry.expires > now + _EPSILON:
                break
            cut += 1
            self._count -= entry.n
        del self._log[:cut]

    def used(self, now: float) -> int:
        """Sends the sliding rule counts at `now`."""
        self._expire(now)
        return self._count

    def record(self, n: int, now: float, key: int) -> None:
        """`n` sends acquired at `now` by sender `key` (in flight until `answer`)."""
        self.answer(key, now)
        self._flying[key] = (now, n)
        self._count += n

    def answer(self, key: int, now: float) -> float | None:
        """The sends in flight under `key` were answered at `now`; returns their acquire time."""
        flying = self._flying.pop(key, None)
        if flying is None:
            return None
        bisect.insort(self._log, _Entry(max(now, flying[0]) + self.span, flying[1], True))
        return flying[0]

    def charge(self, remaining: int, now: float, expires_at: float | None) -> None:
        """Align with a server that says only `remaining` sends are left (until `expires_at`)."""
        deficit = self.limit - self.used(now) - max(0, remaining)
        if deficit > 0:
            until = now + self.span if expires_at is None else min(now + self.span, expires_at)
            bisect.insort(self._log, _Entry(until, deficit, False))
            self._count += deficit

    def times(self, now: float) -> list[float]:
        """Answer times of the answered (and charged) sends, then acquire times of those in flight."""
        self._expire(now)
        answered = [(e.expires - self.span, e.n) for e in self._log]
        return [ts for ts, n in [*answered, *sorted(self._flying.values())] for _ in range(n)]

    # -- admission -------------------------------------------------------------------------

    def wait(self, n: int, now: float) -> float:
        """Seconds until `n` more sends fit (0 when they fit now; when only answers still to
        come can make room, a lower bound: the caller asks again)."""
        self._expire(now)
        blocked = max(0.0, self.blocked_until - now)
        return max(blocked, min(self._sliding_wait(n, now), self._phase_wait(n, now)))

    def _sliding_wait(self, n: int, now: float) -> float:
        excess = self._count + n - self.limit if n <= self.limit else self._count
        if excess <= 0:
            return 0.0
        freed = 0
        for entry in self._log:
            freed += entry.n
            if freed >= excess:
                return entry.expires - now
        return self.span  # in-flight sends must be answered first: none leaves sooner

    def _phase_wait(self, n: int, now: float) -> float:
        if self.phase is None:
            return math.inf
        lo, hi = self.phase
        k = math.floor((now - hi) / self.seconds)  # boundary k has surely passed
        start = lo + k * self.seconds  # the current server window began no earlier
        count = sum(m for _, m in self._flying.values())
        count += sum(e.n for e in self._log if not e.own or e.expires - self.span > start)
        if count + n <= self.limit:
            return 0.0
        return hi + (k + 1) * self.seconds - now  # ask again when the next boundary has passed

    # -- what the server says --------------------------------------------------------------

    def learn(self, acquired: float, now: float, reset: float) -> None:
        """A request acquired at `acquired`, answered at `now`, said the server's window resets
        in `reset` seconds (rounded to `reset_unit`, either way): place the boundaries."""
        if not self.fixed or reset < 0 or reset > self.seconds + self.reset_unit:
            return
        lo, hi = acquired + reset - self.reset_unit, now + reset + self.reset_unit
        if self.phase is not None:
            old_lo, old_hi = self.phase
            shift = round(((old_lo + old_hi) - (lo + hi)) / 2 / self.seconds) * self.seconds
            lo, hi = max(old_lo, lo + shift), min(old_hi, hi + shift)
            if lo > hi:
                self.phase, self.fixed = None, False
                return
        self.phase = (lo, hi)

    def throttled(self) -> None:
        """A 429 for this window's class: forget the boundaries; twice, stop using them."""
        self.phase = None
        self._strikes += 1
        if self._strikes >= 2:
            self.fixed = False
