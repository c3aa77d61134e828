"""Errors of the store: the database refused, or its schema is not one this code can use.

``StoreError`` is the ``StoreError`` leaf of the tree in :mod:`mapping.errors`. When it is raised
the transaction in flight was rolled back: nothing was half-written.
"""

from __future__ import annotations

from mapping.errors import SegsyncError


class StoreError(SegsyncError):
    """The store cannot be opened or used as asked (unreachable, newer schema, foreign tables)."""

    exit_code = 1
