"""HTTP and transport outcomes classified by a table, with per-provider overrides.

`classify_status(status, provider, kind)` looks the status up in `STATUS_TABLE` merged with
`PROVIDER_OVERRIDES[provider]` (a plain dict merge: the provider wins). Then:

- A status the table does not know is **permanent for writes** (never retry-by-default);
  for reads an unknown 5xx is retried and anything else is permanent.
- A retryable status on a **non-idempotent write** (`CallKind.WRITE`) is *ambiguous*: the
  server may have applied the write before failing. Only the statuses in `NOT_PROCESSED`
  (the server refused before doing anything: 429, 503, HubSpot's 423/477, ...) stay
  retryable.

`classify_transport(failure, kind)` does the same for failures without a response. A
connection that was never made (`Transport.CONNECT`) is always safe to send again. A reset,
a read timeout or an unreadable response after the request went out is retryable only for
idempotent calls; for a non-idempotent write it is *ambiguous*.

Idempotency is declared by the caller, per call (`CallKind`). segsync's pushes are
idempotent by construction: property *set*/upsert, list add/remove (adding a member twice or
removing an absent one is a no-op) are `IDEMPOTENT_WRITE`; creating an event or a list is a
`WRITE` unless the provider dedupes it (e.g. by a unique id the caller supplies).
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable, Mapping
from enum import StrEnum

__all__ = [
    "NOT_PROCESSED",
    "PROVIDER_OVERRIDES",
    "RETRY_AFTER_FLOOR",
    "STATUS_TABLE",
    "CallKind",
    "Transport",
    "Verdict",
    "classify_status",
    "classify_transport",
    "parse_retry_after",
    "retry_after_floor",
    "status_table",
]


class Verdict(StrEnum):
    """What the caller must do with an outcome."""

    RETRY = "retry"
    RATE_LIMITED = "rate_limited"
    AUTH = "auth"
    PERMANENT = "permanent"
    AMBIGUOUS = "ambiguous"


class CallKind(StrEnum):
    """How safe a call is to repeat; declared by the caller."""

    READ = "read"
    IDEMPOTENT_WRITE = "idempotent_write"
    WRITE = "write"

    @property
    def idempotent(self) -> bool:
        return self is not CallKind.WRITE

    @property
    def is_write(self) -> bool:
        return self is not CallKind.READ


class Transport(StrEnum):
    """A failure without a usable HTTP response."""

    CONNECT = "connect"  # no connection (refused, DNS, TLS handshake): request not sent
    RESET = "reset"  # connection dropped after the request went out
    TIMEOUT = "timeout"  # no response in time after the request went out
    MALFORMED = "malformed"  # a response came but its body could not be read


STATUS_TABLE: Mapping[int, Verdict] = {
    400: Verdict.PERMANENT,
    401: Verdict.AUTH,
    403: Verdict.AUTH,
    404: Verdict.PERMANENT,
    405: Verdict.PERMANENT,
    407: Verdict.AUTH,
    408: Verdict.RETRY,
    409: Verdict.PERMANENT,
    410: Verdict.PERMANENT,
    411: Verdict.PERMANENT,
    413: Verdict.PERMANENT,
    414: Verdict.PERMANENT,
    415: Verdict.PERMANENT,
    422: Verdict.PERMANENT,
    425: Verdict.RETRY,
    429: Verdict.RATE_LIMITED,
    500: Verdict.RETRY,
    502: Verdict.RETRY,
    503: Verdict.RETRY,
    504: Verdict.RETRY,
}

PROVIDER_OVERRIDES: Mapping[str, Mapping[int, Verdict]] = {
    # https://developers.hubspot.com/docs/api-reference/error-handling (seen 2026-11-22):
    # 423 "Locks will last for 2 seconds"; 477 "Migration in Progress" with Retry-After;
    # 521 "web server is down ... pause, then retry"; 522 "reach out to HubSpot support".
    "hubspot": {423: Verdict.RETRY, 477: Verdict.RETRY, 521: Verdict.RETRY, 522: Verdict.PERMANENT},
    # klaviyo-api 25.0.0 retries {429, 503, 504, 524} itself (klaviyo_api/wrapper.py:24-36).
    "klaviyo": {524: Verdict.RETRY},
}

# Statuses that say the request was refused before it was processed: safe to resend even
# when the call is not idempotent.
NOT_PROCESSED: frozenset[int] = frozenset({408, 423, 425, 429, 477, 503})

# Minimum wait before resending, when the provider documents one and sends no Retry-After.
RETRY_AFTER_FLOOR: Mapping[str, Mapping[int, float]] = {"hubspot": {423: 2.0}}


def status_table(provider: str, extra: Mapping[int, Verdict] | None = None) -> dict[int, Verdict]:
    """The table for `provider`: base, then the provider's overrides, then `extra`."""
    return {**STATUS_TABLE, **PROVIDER_OVERRIDES.get(provider, {}), **(extra or {})}


def classify_status(
    status: int, provider: str, kind: CallKind, table: Mapping[int, Verdict] | None = None
) -> Verdict:
    """The verdict for an error `status` from `provider` on a call of `kind`."""
    if 200 <= status < 300:
        raise ValueError(f"status {status} is a success, not an error")
    verdict = (table if table is not None else status_table(provider)).get(status)
    if verdict is None:
        verdict = Verdict.RETRY if (500 <= status < 600 and not kind.is_write) else Verdict.PERMANENT
    if verdict is Verdict.RETRY and not kind.idempotent and status not in NOT_PROCESSED:
        return Verdict.AMBIGUOUS
    return verdict


def classify_transport(failure: Transport, kind: CallKind) -> Verdict:
    """The verdict for a failure without a usable response on a call of `kind`."""
    if failure is Transport.CONNECT or kind.idempotent:
        return Verdict.RETRY
    return Verdict.AMBIGUOUS


def retry_after_floor(provider: str, status: int) -> float | None:
    """The documented minimum wait for `status` from `provider`, if any."""
    return RETRY_AFTER_FLOOR.get(provider, {}).get(status)


def parse_retry_after(value: str | None, now: Callable[[], float]) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date.

    `now` is the wall clock (epoch seconds) an HTTP-date is measured against. Returns None
    for a missing or unparseable value, and never a negative number.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        return None
    return max(0.0, when.timestamp() - now())
