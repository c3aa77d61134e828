"""The status-classification table, its provider overrides, and Retry-After parsing."""

from __future__ import annotations

import pytest

from connectors.classify import (
    STATUS_TABLE,
    CallKind,
    Transport,
    Verdict,
    classify_status,
    classify_transport,
    parse_retry_after,
    retry_after_floor,
    status_table,
)

R, W, IW = CallKind.READ, CallKind.WRITE, CallKind.IDEMPOTENT_WRITE
RETRY, RATE, AUTH, PERM, AMBI = (
    Verdict.RETRY, Verdict.RATE_LIMITED, Verdict.AUTH, Verdict.PERMANENT, Verdict.AMBIGUOUS,
)


@pytest.mark.parametrize(
    ("provider", "status", "kind", "expected"),
    [
        # the base table, any provider, reads
        ("hubspot", 400, R, PERM),
        ("hubspot", 401, R, AUTH),
        ("klaviyo", 403, R, AUTH),
        ("klaviyo", 404, R, PERM),
        ("klaviyo", 408, R, RETRY),
        ("hubspot", 409, IW, PERM),
        ("klaviyo", 422, IW, PERM),
        ("hubspot", 429, R, RATE),
        ("klaviyo", 500, R, RETRY),
        ("klaviyo", 502, IW, RETRY),
        ("hubspot", 503, R, RETRY),
        ("hubspot", 504, IW, RETRY),
        # provider overrides (dict merge): HubSpot 423/477/521 retry, 522 permanent
        ("hubspot", 423, IW, RETRY),
        ("klaviyo", 423, IW, PERM),  # unknown 4xx for Klaviyo
        ("hubspot", 477, R, RETRY),
        ("hubspot", 521, IW, RETRY),
        ("hubspot", 522, R, PERM),
        ("klaviyo", 524, IW, RETRY),
        # unknown statuses: permanent for writes; for reads only an unknown 5xx is retried
        ("hubspot", 524, IW, PERM),
        ("hubspot", 524, R, RETRY),
        ("klaviyo", 599, W, PERM),
        ("klaviyo", 418, R, PERM),
        ("hubspot", 302, R, PERM),
        # non-idempotent writes: a retryable status is ambiguous unless it proves the
        # request was not processed
        ("hubspot", 500, W, AMBI),
        ("klaviyo", 502, W, AMBI),
        ("klaviyo", 504, W, AMBI),
        ("hubspot", 503, W, RETRY),
        ("hubspot", 429, W, RATE),
        ("hubspot", 423, W, RETRY),
        ("klaviyo", 401, W, AUTH),
    ],
)
def test_status_table(provider: str, status: int, kind: CallKind, expected: Verdict) -> None:
    assert classify_status(status, provider, kind) is expected


@pytest.mark.parametrize(
    ("failure", "kind", "expected"),
    [
        (Transport.CONNECT, W, RETRY),  # never sent: safe even for a non-idempotent write
        (Transport.CONNECT, R, RETRY),
        (Transport.RESET, R, RETRY),
        (Transport.RESET, IW, RETRY),
        (Transport.RESET, W, AMBI),
        (Transport.TIMEOUT, IW, RETRY),
        (Transport.TIMEOUT, W, AMBI),
        (Transport.MALFORMED, R, RETRY),
        (Transport.MALFORMED, W, AMBI),
    ],
)
def test_transport_failures(failure: Transport, kind: CallKind, expected: Verdict) -> None:
    assert classify_transport(failure, kind) is expected


def test_overrides_are_a_dict_merge_and_leave_the_base_alone() -> None:
    table = status_table("hubspot", extra={404: Verdict.RETRY})
    assert table[423] is Verdict.RETRY and table[404] is Verdict.RETRY and table[400] is Verdict.PERMANENT
    assert STATUS_TABLE[404] is Verdict.PERMANENT and 423 not in STATUS_TABLE
    assert classify_status(404, "hubspot", R, table) is Verdict.RETRY


def test_success_is_not_classified() -> None:
    with pytest.raises(ValueError, match="success"):
        classify_status(207, "hubspot", R)


def test_documented_minimum_waits() -> None:
    assert retry_after_floor("hubspot", 423) == 2.0
    assert retry_after_floor("klaviyo", 423) is None


NOW = 1_795_000_000.0  # a fixed wall clock: 2026-11-18T11:06:40Z


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("Wed, 18 Nov 2026 11:07:10 GMT", 30.0),  # HTTP-date 30 s after NOW
        ("Wed, 18 Nov 2026 11:00:00 GMT", 0.0),  # in the past
        ("soon", None),
        ("", None),
        (None, None),
        ("inf", None),
        ("nan", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, lambda: NOW) == expected
