"""HubSpot webhook request validation (pure functions, no I/O).

v3 (``X-HubSpot-Signature-v3`` + ``X-HubSpot-Request-Timestamp``)::

    base64(HMAC-SHA256(client_secret, method + decoded_uri + body + timestamp_ms))

where ``decoded_uri`` is the full URL HubSpot called with these escapes decoded (HubSpot's
request-validation page): ``%3A : %2F / %3F ? %40 @ %21 ! %24 $ %27 ' %28 ( %29 ) %2A * %2C ,
%3B ;``. A timestamp older than :data:`MAX_AGE_MS` (5 minutes) or more than the allowed skew in
the future is refused. The signature is compared in constant time.

Legacy ``X-HubSpot-Signature`` with ``X-HubSpot-Signature-Version`` ``v1``
(``sha256_hex(secret + body)``) or ``v2`` (``sha256_hex(secret + method + uri + body)``) carry no
timestamp, so they cannot be protected against replays: :func:`verify` accepts them only when
the caller allows that version explicitly. Sources: ``API_FACTS.md`` (HubSpot §7).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Collection, Mapping

from mapping.errors import InputError

__all__ = [
    "MAX_AGE_MS",
    "MAX_FUTURE_SKEW_MS",
    "InvalidSignature",
    "decode_uri",
    "signature_v1",
    "signature_v2",
    "signature_v3",
    "verify",
]

MAX_AGE_MS = 5 * 60 * 1000
MAX_FUTURE_SKEW_MS = 30 * 1000
V3_HEADER = "x-hubspot-signature-v3"
TIMESTAMP_HEADER = "x-hubspot-request-timestamp"
LEGACY_HEADER = "x-hubspot-signature"
VERSION_HEADER = "x-hubspot-signature-version"

_DECODED = {"3A": ":", "2F": "/", "3F": "?", "40": "@", "21": "!", "24": "$", "27": "'",
            "28": "(", "29": ")", "2A": "*", "2C": ",", "3B": ";"}
_ESCAPE = re.compile("%(" + "|".join(_DECODED) + ")", re.IGNORECASE)


class InvalidSignature(InputError):
    """The request is not provably from HubSpot (missing, wrong, stale or future-dated)."""


def decode_uri(uri: str) -> str:
    """``uri`` with HubSpot's listed escapes decoded (every other escape kept as sent)."""
    return _ESCAPE.sub(lambda m: _DECODED[m.group(1).upper()], uri)


def _text(body: bytes | str) -> str:
    return body if isinstance(body, str) else body.decode("utf-8", errors="surrogateescape")


def signature_v3(secret: str, method: str, uri: str, body: bytes | str, timestamp: str | int) -> str:
    message = f"{method.upper()}{decode_uri(uri)}{_text(body)}{timestamp}"
    digest = hmac.new(secret.encode(), message.encode("utf-8", errors="surrogateescape"),
                      hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signature_v2(secret: str, method: str, uri: str, body: bytes | str = b"") -> str:
    message = f"{secret}{method.upper()}{uri}{_text(body)}"
    return hashlib.sha256(message.encode("utf-8", errors="surrogateescape")).hexdigest()


def signature_v1(secret: str, body: bytes | str) -> str:
    return hashlib.sha256(f"{secret}{_text(body)}".encode("utf-8", errors="surrogateescape")).hexdigest()


def _same(expected: str, got: str) -> bool:
    return hmac.compare_digest(expected.encode(), got.strip().encode())


def _check_timestamp(raw: str | None, now_ms: int, max_age_ms: int, max_skew_ms: int) -> None:
    if raw is None or not raw.strip().isdigit():
        raise InvalidSignature(f"missing or malformed {TIMESTAMP_HEADER} header (epoch milliseconds)")
    ts = int(raw.strip())
    if now_ms - ts > max_age_ms:
        raise InvalidSignature(
            f"stale request: timestamp is {(now_ms - ts) // 1000} s old (limit {max_age_ms // 1000} s)")
    if ts - now_ms > max_skew_ms:
        raise InvalidSignature(
            f"timestamp is {(ts - now_ms) // 1000} s in the future (limit {max_skew_ms // 1000} s)")


def verify(
    headers: Mapping[str, str],
    method: str,
    uri: str,
    body: bytes,
    secret: str,
    now_ms: int,
    *,
    legacy_versions: Collection[str] = (),
    max_age_ms: int = MAX_AGE_MS,
    max_skew_ms: int = MAX_FUTURE_SKEW_MS,
) -> str:
    """Check a webhook request; returns the signature version that validated it.

    ``headers`` must have lower-case names. ``uri`` is the full URL HubSpot called (scheme,
    host, path and query, escapes as received). When a v3 signature is present it alone
    decides; otherwise a legacy signature counts only if its version is in
    ``legacy_versions``. Raises :class:`InvalidSignature` with the reason.
    """
    v3 = headers.get(V3_HEADER)
    if v3 is not None:
        _check_timestamp(headers.get(TIMESTAMP_HEADER), now_ms, max_age_ms, max_skew_ms)
        expected = signature_v3(secret, method, uri, body, headers[TIMESTAMP_HEADER].strip())
        if not _same(expected, v3):
            raise InvalidSignature("X-HubSpot-Signature-v3 does not match the request")
        return "v3"
    legacy = headers.get(LEGACY_HEADER)
    version = (headers.get(VERSION_HEADER) or "v1").strip().lower()
    if legacy is None:
        raise InvalidSignature("missing X-HubSpot-Signature-v3 header")
    if version not in legacy_versions:
        raise InvalidSignature(f"signature version {version} is not accepted (only v3 is configured)")
    if version == "v1":
        expected = signature_v1(secret, body)
    elif version == "v2":
        expected = signature_v2(secret, method, uri, body)
    else:
        raise InvalidSignature(f"unknown signature version {version!r}")
    if not _same(expected, legacy):
        raise InvalidSignature(f"X-HubSpot-Signature ({version}) does not match the request")
    return version
