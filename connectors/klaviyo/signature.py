"""Klaviyo system-webhook request validation (pure functions, no I/O).

Headers ``Klaviyo-Webhook-Id``, ``Klaviyo-Timestamp`` and ``Klaviyo-Signature`` =
lowercase hex ``HMAC-SHA256(secret_key, raw_body + timestamp_header)`` (body first, no
separator), compared in constant time. The body's ``meta.klaviyo_webhook_id`` must equal the
``Klaviyo-Webhook-Id`` header ("If these values do not match … you should not process the
webhook"). Klaviyo sets no replay window; we refuse a timestamp more than :data:`WINDOW_MS`
away from now in either direction. The timestamp's format is not documented for sure
(RFC 1123 and ISO-8601 are both seen), so it is hashed as the opaque header string and parsed
leniently (ISO-8601, RFC 1123, or epoch seconds / milliseconds) for the window only.
Sources: ``API_FACTS.md`` (Klaviyo §6).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from mapping.errors import InputError

__all__ = ["WINDOW_MS", "InvalidSignature", "parse_timestamp", "sign", "verify"]

WINDOW_MS = 5 * 60 * 1000
ID_HEADER = "klaviyo-webhook-id"
TIMESTAMP_HEADER = "klaviyo-timestamp"
SIGNATURE_HEADER = "klaviyo-signature"


class InvalidSignature(InputError):
    """The request is not provably from Klaviyo (signature, webhook id or timestamp)."""


def sign(secret: str, body: bytes, timestamp: str) -> str:
    return hmac.new(secret.encode(), body + timestamp.encode(), hashlib.sha256).hexdigest()


def parse_timestamp(text: str) -> int:
    """Epoch ms of a ``Klaviyo-Timestamp`` value; ValueError when it is none of the forms."""
    raw = text.strip()
    if raw.isdigit():
        number = int(raw)
        return number if number >= 100_000_000_000 else number * 1000
    iso = raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        try:
            moment = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            raise ValueError(f"unreadable {TIMESTAMP_HEADER} {raw[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _body_webhook_id(body: bytes) -> object:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    meta = doc.get("meta") if isinstance(doc, dict) else None
    return meta.get("klaviyo_webhook_id") if isinstance(meta, dict) else None


def verify(headers: Mapping[str, str], body: bytes, secret: str, now_ms: int,
           *, window_ms: int = WINDOW_MS) -> None:
    """Check a webhook request (``headers`` with lower-case names); raises
    :class:`InvalidSignature` with the reason."""
    signature = headers.get(SIGNATURE_HEADER)
    timestamp = headers.get(TIMESTAMP_HEADER)
    webhook_id = headers.get(ID_HEADER)
    for name, value in ((SIGNATURE_HEADER, signature), (TIMESTAMP_HEADER, timestamp),
                        (ID_HEADER, webhook_id)):
        if not value:
            raise InvalidSignature(f"missing {name} header")
    assert signature is not None and timestamp is not None and webhook_id is not None
    try:
        sent = parse_timestamp(timestamp)
    except ValueError as e:
        raise InvalidSignature(str(e)) from None
    if abs(now_ms - sent) > window_ms:
        direction = "old" if sent < now_ms else "in the future"
        raise InvalidSignature(f"timestamp is {abs(now_ms - sent) // 1000} s {direction} "
                               f"(window {window_ms // 1000} s)")
    if not hmac.compare_digest(sign(secret, body, timestamp).encode(), signature.strip().lower().encode()):
        raise InvalidSignature("Klaviyo-Signature does not match the request")
    if _body_webhook_id(body) != webhook_id:
        raise InvalidSignature("Klaviyo-Webhook-Id does not match the body's meta.klaviyo_webhook_id")
