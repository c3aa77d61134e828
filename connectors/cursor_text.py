"""The stored form of a connector's cursor: versioned JSON tagged with the stream it belongs to."""

from __future__ import annotations

import json
from typing import Any

from mapping.errors import InputError


def load_cursor(text: str, kind: str) -> dict[str, Any]:
    """The cursor object stored as ``text`` for stream ``kind``; a clear error for anything else."""
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if not isinstance(obj, dict) or obj.get("kind") != kind or obj.get("v") != 1:
        raise InputError(
            f"the stored {kind} cursor is not one this version wrote: {text[:80]!r} "
            "(pull with --full to start again)"
        )
    return obj
