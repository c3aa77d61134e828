"""Identifiers and instants in Klaviyo's formats.

* Profiles, events and import jobs carry 26-character ULID-like ids (Crockford base32): the first
  10 characters encode epoch milliseconds, the last 16 a sequence number, so ids sort by creation
  time and an event id can be decoded back to its instant (``decode_ulid``).
* Metrics and lists carry 6-character ids (``"Y6Hmxn"`` style), drawn from a seeded generator.
* Instants are epoch milliseconds UTC inside the sandbox and ISO-8601 ``+00:00`` on the wire.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(CROCKFORD)}
_SHORT_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789"


def ulid(ms: int, seq: int) -> str:
    """A 26-character id: 48-bit milliseconds then an 80-bit sequence number."""
    value = ((ms & ((1 << 48) - 1)) << 80) | (seq & ((1 << 80) - 1))
    out = []
    for _ in range(26):
        out.append(CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(out))


def decode_ulid(text: str) -> tuple[int, int] | None:
    """(ms, seq) of an id made by :func:`ulid`; ``None`` when ``text`` is not one."""
    if len(text) != 26:
        return None
    value = 0
    for c in text:
        d = _DECODE.get(c)
        if d is None:
            return None
        value = (value << 5) | d
    if value >> 128:
        return None
    return value >> 80, value & ((1 << 80) - 1)


class ShortIds:
    """Seeded generator of unique 6-character ids (metrics, lists)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._used: set[str] = set()

    def new(self) -> str:
        while True:
            candidate = "".join(self._rng.choice(_SHORT_ALPHABET) for _ in range(6))
            if candidate not in self._used:
                self._used.add(candidate)
                return candidate


def iso(ms: int) -> str:
    """``2024-01-31T10:00:00+00:00`` (microseconds kept only when non-zero, as Klaviyo does)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def parse_instant(text: str) -> int:
    """Epoch ms of an ISO-8601 date or date-time (``Z`` or an offset; naive means UTC).

    Raises ``ValueError`` with the reason when ``text`` is not one.
    """
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)
