"""Klaviyo's per-endpoint fixed-window rate limits.

Facts (developers.klaviyo.com/en/docs/rate_limits_and_error_handling, see QUIRKS.md): each
endpoint has a burst window (1 s) and a steady window (1 min), some also a daily cap; windows
are fixed, per account (private keys share the account's quota), and every request counts,
including throttled ones. Non-429 responses carry ``RateLimit-Limit``/``-Remaining``/``-Reset``
for the steady window; a 429 carries ``Retry-After`` (whole seconds) and a ``throttled`` error.

Windows are aligned to multiples of their length since the epoch (``clock() // length``), so a
test with an injected clock knows exactly where a window ends. ``scale`` multiplies the lengths,
and with them the unit of the ``Retry-After`` and ``RateLimit-Reset`` values: the real service
rounds up to whole seconds, a scaled sandbox to whole multiples of ``scale`` seconds (``0.1``
at x0.1), so a throttled client waits the same *share* of a window as it would for real
(whole seconds at x0.1 would turn a 0.1 s burst window's wait into 1 s, a sixth of the scaled
minute). At scale 1 the values are the usual integers.

``allowed`` counts the requests let through per (operation, steady window number) — the
ground truth a benchmark compares with the ceiling.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from connectors.sandbox.klaviyo.ratelimit_table import EXTRA_TIERS, TIERS

WINDOWS = (("burst", 1.0), ("steady", 60.0), ("daily", 86400.0))


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int  # steady limit
    remaining: int  # steady remaining after this request
    reset_s: float  # seconds until the steady window resets (whole units of the scale)
    retry_after_s: float  # when throttled: seconds until the blocking window resets (idem)


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
        self.tiers = {**TIERS, **EXTRA_TIERS} if tiers is None else tiers
        self._counts: dict[tuple[str, str], tuple[int, int]] = {}  # (op, window) -> (window no, count)
        self.allowed: Counter[tuple[str, int]] = Counter()  # (op, steady window no) -> let through
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self.allowed.clear()

    def _units(self, seconds: float) -> float:
        """`seconds` rounded up to whole units (1 s, or ``scale`` s when scaled)."""
        units = math.ceil(seconds / self.scale - 1e-9)
        return max(units, 0) * self.scale if self.scale != 1.0 else float(max(units, 0))

    def check(self, operation: str) -> Verdict | None:
        """Count one request to ``operation``; ``None`` when the operation has no limit."""
        tier = self.tiers.get(operation)
        if tier is None:
            return None
        now = self.clock()
        blocked_until: float | None = None
        steady = (tier[1], 0, 0.0)
        steady_no = 0
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
                    steady_no = number
            if blocked_until is None:
                self.allowed[(operation, steady_no)] += 1
        reset_s = self._units(steady[2] - now)
        retry = 0.0 if blocked_until is None else max(self._units(blocked_until - now), self._units(1e-9))
        return Verdict(blocked_until is None, steady[0], steady[1], reset_s, retry)

    @staticmethod
    def seconds_text(seconds: float) -> str:
        """A header value: ``"25"`` for whole seconds, ``"0.1"`` for a scaled fraction."""
        if seconds == int(seconds):
            return str(int(seconds))
        return f"{seconds:.6f}".rstrip("0").rstrip(".")

    @staticmethod
    def headers(v: Verdict) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(v.limit),
            "RateLimit-Remaining": str(v.remaining),
            "RateLimit-Reset": RateLimiter.seconds_text(v.reset_s),
        }
