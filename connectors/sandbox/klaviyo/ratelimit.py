"""Klaviyo's per-endpoint fixed-window rate limits.

Facts (developers.klaviyo.com/en/docs/rate_limits_and_error_handling, see QUIRKS.md): each
endpoint has a burst window (1 s) and a steady window (1 min), some also a daily cap; windows
are fixed, per account (private keys share the account's quota), and every request counts,
including throttled ones. Non-429 responses carry ``RateLimit-Limit``/``-Remaining``/``-Reset``
for the steady window; a 429 carries ``Retry-After`` (whole seconds) and a ``throttled`` error.

Windows are aligned to multiples of their length since the epoch (``clock() // length``), so a
test with an injected clock knows exactly where a window ends. ``scale`` multiplies the lengths.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

from connectors.sandbox.klaviyo.ratelimit_table import TIERS

WINDOWS = (("burst", 1.0), ("steady", 60.0), ("daily", 86400.0))


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int  # steady limit
    remaining: int  # steady remaining after this request
    reset_s: int  # seconds until the steady window resets
    retry_after_s: int  # when throttled: seconds until the blocking window resets


class RateLimiter:
    def __init__(
        self,
        clock: Callable[[], float],
        scale: float = 1.0,
        tiers: dict[str, tuple[int, int, int | None]] | None = None,
    ) -> None:
        if scale <= 0:
            raise ValueError("rate limit scale must be positive")
        self.clock = clock
        self.scale = scale
        self.tiers = TIERS if tiers is None else tiers
        self._counts: dict[tuple[str, str], tuple[int, int]] = {}  # (op, window) -> (window no, count)
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def check(self, operation: str) -> Verdict | None:
        """Count one request to ``operation``; ``None`` when the operation has no limit."""
        tier = self.tiers.get(operation)
        if tier is None:
            return None
        now = self.clock()
        blocked_until: float | None = None
        steady = (tier[1], 0, 0.0)
        with self._lock:
            for (wname, base), limit in zip(WINDOWS, tier, strict=True):
                if limit is None:
                    continue
                length = base * self.scale
                number = math.floor(now / length)
                prev_no, count = self._counts.get((operation, wname), (number, 0))
                count = (count if prev_no == number else 0) + 1
                self._counts[(operation, wname)] = (number, count)
                ends = (number + 1) * length
                if count > limit:
                    blocked_until = max(blocked_until or ends, ends)
                if wname == "steady":
                    steady = (limit, max(limit - count, 0), ends)
        reset_s = max(math.ceil(steady[2] - now), 0)
        retry = 0 if blocked_until is None else max(math.ceil(blocked_until - now), 1)
        return Verdict(blocked_until is None, steady[0], steady[1], reset_s, retry)

    @staticmethod
    def headers(v: Verdict) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(v.limit),
            "RateLimit-Remaining": str(v.remaining),
            "RateLimit-Reset": str(v.reset_s),
        }
