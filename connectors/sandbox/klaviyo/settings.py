"""Per-instance settings of the Klaviyo stand-in."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class KlaviyoSettings:
    """What differs between sandbox instances (tests, ``segsync sandbox``, ``segsync demo``)."""

    api_keys: frozenset[str] = frozenset({"pk_sandbox"})
    """Private keys accepted in ``Authorization: Klaviyo-API-Key <key>``; others get 401."""
    account_id: str = "SbxAcc"
    rate_limits: bool = True
    """Apply the per-endpoint burst/steady/daily windows of the spec (``ratelimit.py``)."""
    rate_scale: float = 1.0
    """Multiplies every window length (0.05 = a 50 ms burst window, a 3 s steady one) for tests."""
    webhook_url: str | None = None
    """Where event webhooks are POSTed (``None`` = webhooks off)."""
    webhook_secret: str = "sandbox-webhook-secret"
    webhook_id: str = "01SBXWEBH00K0000000000000"
    webhook_topics: frozenset[str] | None = None
    """Topics to deliver (``event:klaviyo.opened_email`` ...); ``None`` = every known topic."""
    webhook_max_attempts: int = 3
    """Deliveries retried on a non-2xx answer or a connection error, with backoff (our choice: the
    real retry policy of system webhooks is undocumented, see QUIRKS.md)."""
    webhook_backoff_s: float = 0.5
    bulk_import_delay_s: float = 0.2
    """Time an import job stays ``queued`` before the worker processes it."""
    bulk_import_chunk: int = 1000
    """Profiles processed per step; ``completed_count`` grows step by step while ``processing``."""
    tolerate_cursor_equals: bool = False
    """Accept ``page[cursor]==<cursor>`` (what klaviyo-api 25.0.0 sends when given a full
    ``links.next`` URL). Off by default: the real server's behaviour is unverified (QUIRKS.md)."""
    clock: Callable[[], float] = field(default=time.time)
    """Seconds since the epoch; injectable so rate-limit tests are exact."""
    seed: int = 0
