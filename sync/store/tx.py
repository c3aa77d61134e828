"""Write transactions that take the write lock up front.

On SQLite a deferred ``BEGIN`` that reads and then writes fails at once with "database is
locked" when another connection committed in between (the busy timeout does not apply to that
case). :func:`begin_write` starts with ``BEGIN IMMEDIATE`` instead, so concurrent writers queue
on the busy timeout. On PostgreSQL it is a plain transaction.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from sqlalchemy import Connection, Engine

WRITE_OPTION = "segsync_write"


def begin_write(engine: Engine) -> AbstractContextManager[Connection]:
    """``with begin_write(engine) as conn:`` — one transaction, committed on success."""
    return engine.execution_options(**{WRITE_OPTION: True}).begin()
