"""Typed values of imported cells: text (CSV) or JSON (JSONL) -> the stored form.

Each function raises ``ValueError`` with the reason, phrased for the user, when a value does not
fit its declared type. Stored forms: see :mod:`sync.store.repo` (dates and datetimes as epoch
ms UTC, lists as lists of strings).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from mapping.rules.ast import Type

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_INT_RE = re.compile(r"[+-]?\d+")
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def parse_instant(text: str) -> int:
    """ISO-8601 date-time with a UTC offset (``Z`` or ``+02:00``) -> epoch ms UTC.

    A timestamp without an offset is refused: its instant would depend on the machine's
    time zone.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 timestamp (e.g. 2024-05-01T09:30:00Z)") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset: add one, e.g. 'Z' or '+02:00'")
    return (moment - _EPOCH) // _MS


def parse_date(text: str) -> int:
    """``YYYY-MM-DD`` -> epoch ms of that day's midnight UTC."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a date (expected YYYY-MM-DD)") from None
    return (datetime(day.year, day.month, day.day, tzinfo=UTC) - _EPOCH) // _MS


def _number_from_text(text: str) -> int | float:
    cleaned = text.strip()
    if _INT_RE.fullmatch(cleaned):
        return int(cleaned)
    try:
        number = float(cleaned)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{text!r} is not a finite number")
    return number


def number(value: Any) -> int | float:
    """A number from CSV text or a JSON number (booleans are not numbers)."""
    if isinstance(value, str):
        return _number_from_text(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {_describe(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return repr(value)


def typed_value(value: Any, type_: Type, *, is_date: bool = False, from_text: bool = False) -> Any:
    """``value`` (a CSV cell when ``from_text``, else a JSON value, never None) in its stored
    form for ``type_``. ``is_date``: a DATETIME declared as ``date`` (YYYY-MM-DD)."""
    if type_ is Type.STRING:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {_describe(value)}")
        return value
    if type_ is Type.NUMBER:
        return number(value)
    if type_ is Type.BOOL:
        if isinstance(value, bool):
            return value
        if from_text and isinstance(value, str):
            word = value.strip().lower()
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
            raise ValueError(f"{value!r} is not a boolean (true/false, yes/no, 1/0)")
        raise ValueError(f"expected true or false, got {_describe(value)}")
    if type_ is Type.DATETIME:
        if not isinstance(value, str):
            raise ValueError(f"expected an ISO-8601 string, got {_describe(value)}")
        return parse_date(value) if is_date else parse_instant(value)
    if type_ is Type.LIST:
        if from_text and isinstance(value, str):
            return [part.strip() for part in value.split(";") if part.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ValueError(f"expected a list of strings, got {_describe(value)}")
    raise ValueError(f"values of type {type_} cannot be imported")
