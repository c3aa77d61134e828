"""Settings of one HubSpot stand-in instance (mutable at runtime through ``/_sandbox/hubspot/settings``).

Defaults are those of a Professional/Enterprise private app: 190 requests per rolling 10 s per token,
search 5 per second, 1,000,000 requests per day (see ``connectors/hubspot/QUIRKS.md``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class RateLimitSettings:
    enabled: bool = True
    max_requests: int = 190  # per token in the rolling window (100 for Free/Starter)
    window_ms: int = 10_000
    search_per_second: int = 5  # HubSpot documents 4, later 5
    search_window_ms: int = 1_000
    daily_limit: int = 1_000_000


@dataclass
class WebhookSettings:
    url: str | None = None  # where change notifications are POSTed; None = webhooks off
    client_secret: str = "sandbox-client-secret"
    app_id: int = 1_000_001
    portal_id: int = 62_515
    max_batch: int = 100  # events per request
    linger_s: float = 0.05  # how long the sender waits to fill a batch
    max_attempts: int = 10  # HubSpot retries a failed notification up to 10 times
    retry_base_s: float = 0.2  # sandbox-short exponential backoff: base * 2**attempt
    retry_max_s: float = 5.0
    timeout_s: float = 5.0
    properties: frozenset[str] | None = None  # propertyChange only for these; None = every property


@dataclass
class HubSpotSettings:
    tokens: set[str] = field(default_factory=lambda: {"pat-sandbox"})
    rate_limit: RateLimitSettings = field(default_factory=RateLimitSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    batch_limit: int = 100
    # "per_input": invalid inputs of a batch fail alone in a 207 (what the issue asks for);
    # "whole_batch": any invalid property value rejects the whole batch with a 400.
    batch_validation: str = "per_input"
    # the unified events API (GET /events/v3/events) is Enterprise-only: False answers 403
    unified_events: bool = True

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["tokens"] = len(self.tokens)  # never echo credentials
        props = self.webhooks.properties
        out["webhooks"]["properties"] = sorted(props) if props is not None else None
        out["webhooks"]["client_secret"] = "***"
        return out

    def update(self, patch: dict[str, Any]) -> None:
        """Apply a partial update such as ``{"rate_limit": {"enabled": false}}``; raises ValueError."""
        for key, value in patch.items():
            if key == "rate_limit":
                _update_dataclass(self.rate_limit, value, key)
            elif key == "webhooks":
                _update_dataclass(self.webhooks, value, key)
            elif key == "batch_validation":
                if value not in ("per_input", "whole_batch"):
                    raise ValueError("batch_validation must be 'per_input' or 'whole_batch'")
                self.batch_validation = value
            elif key == "unified_events":
                if not isinstance(value, bool):
                    raise ValueError("unified_events must be true or false")
                self.unified_events = value
            elif key == "batch_limit" and isinstance(value, int) and value > 0:
                self.batch_limit = value
            else:
                raise ValueError(f"unknown or invalid setting {key!r}")


def _update_dataclass(target: Any, patch: Any, where: str) -> None:
    if not isinstance(patch, dict):
        raise ValueError(f"{where} must be an object")
    known = {f.name: f for f in fields(target)}
    for key, value in patch.items():
        if key not in known:
            raise ValueError(f"unknown setting {where}.{key}")
        current = getattr(target, key)
        if key == "properties":
            value = frozenset(value) if value is not None else None
        elif key == "url":
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{where}.url must be a string or null")
        elif isinstance(current, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{where}.{key} must be true or false")
        elif isinstance(current, int | float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{where}.{key} must be a number")
        elif isinstance(current, str) and not isinstance(value, str):
            raise ValueError(f"{where}.{key} must be a string")
        setattr(target, key, value)
