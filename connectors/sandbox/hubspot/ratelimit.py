"""HubSpot rate limits as a guard: a rolling 10-second window per token (an exact rolling count of
accepted request timestamps), search separately at N per second, and a daily quota (reset at
midnight UTC; HubSpot uses the account's time zone).

* Non-search responses carry ``X-HubSpot-RateLimit-Max``, ``-Remaining``,
  ``-Interval-Milliseconds``, ``-Daily``, ``-Daily-Remaining`` (added by :meth:`headers`).
* A refused request gets 429 ``{"status": "error", "errorType": "RATE_LIMIT", "policyName":
  "TEN_SECONDLY_ROLLING" | "SECONDLY" | "DAILY", "category": "RATE_LIMITS", ...}``.
* Refused requests do not count toward the windows (a client paced at the ceiling never sees a
  429, one that keeps hammering recovers as soon as the window rolls).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from connectors.sandbox.server import Request, Response, Route

from . import errors
from .settings import RateLimitSettings

DAY_S = 86_400


class RateLimiter:
    def __init__(
        self,
        settings: RateLimitSettings,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        self.settings = settings
        self.clock = clock
        self.wall = wall
        self._lock = threading.Lock()
        # accepted request instants per token, integer microseconds (exact window arithmetic)
        self._standard: dict[str, deque[int]] = {}
        self._search: dict[str, deque[int]] = {}
        self._daily: dict[str, tuple[int, int]] = {}

    def _now_us(self) -> int:
        return round(self.clock() * 1_000_000)

    def reset(self) -> None:
        with self._lock:
            self._standard.clear()
            self._search.clear()
            self._daily.clear()

    def guard(self, req: Request, route: Route) -> Response | None:
        s = self.settings
        if not s.enabled or route.rate_class is None:
            return None
        token = req.client_key
        search = route.rate_class == "search"
        now = self._now_us()
        day = int(self.wall() // DAY_S)
        with self._lock:
            used_day, used = self._daily.get(token, (day, 0))
            if used_day != day:
                used = 0
            if used >= s.daily_limit:
                return self._refuse("DAILY", "You have reached your daily limit.", token, search)
            if search:
                window, limit, table = s.search_window_ms * 1000, s.search_per_second, self._search
            else:
                window, limit, table = s.window_ms * 1000, s.max_requests, self._standard
            stamps = table.setdefault(token, deque())
            edge = now - window
            while stamps and stamps[0] <= edge:
                stamps.popleft()
            if len(stamps) >= limit:
                policy = "SECONDLY" if search else "TEN_SECONDLY_ROLLING"
                message = (
                    "You have reached your secondly limit."
                    if search
                    else ("You have reached your ten_secondly_rolling limit.")
                )
                return self._refuse(policy, message, token, search)
            stamps.append(now)
            self._daily[token] = (day, used + 1)
        return None

    def headers(self, token: str) -> dict[str, str]:
        """The ``X-HubSpot-RateLimit-*`` headers for a (non-search) response to ``token``."""
        s = self.settings
        now = self._now_us()
        day = int(self.wall() // DAY_S)
        with self._lock:
            stamps = self._standard.get(token, deque())
            edge = now - s.window_ms * 1000
            in_window = sum(1 for t in stamps if t > edge)
            used_day, used = self._daily.get(token, (day, 0))
        if used_day != day:
            used = 0
        return {
            "X-HubSpot-RateLimit-Max": str(s.max_requests),
            "X-HubSpot-RateLimit-Remaining": str(max(0, s.max_requests - in_window)),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(s.window_ms),
            "X-HubSpot-RateLimit-Daily": str(s.daily_limit),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, s.daily_limit - used)),
        }

    def _refuse(self, policy: str, message: str, token: str, search: bool) -> Response:
        body = errors.error_body(message, errors.RATE_LIMITS)
        body["errorType"] = "RATE_LIMIT"
        body["policyName"] = policy
        resp = Response.json(429, body)
        if not search:
            # the lock is held by the caller; compute headers without re-locking
            s = self.settings
            used = self._daily.get(token, (0, 0))[1]
            resp.headers.update(
                {
                    "X-HubSpot-RateLimit-Max": str(s.max_requests),
                    "X-HubSpot-RateLimit-Remaining": "0"
                    if policy != "DAILY"
                    else str(max(0, s.max_requests - len(self._standard.get(token, ())))),
                    "X-HubSpot-RateLimit-Interval-Milliseconds": str(s.window_ms),
                    "X-HubSpot-RateLimit-Daily": str(s.daily_limit),
                    "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, s.daily_limit - used)),
                }
            )
        return resp
