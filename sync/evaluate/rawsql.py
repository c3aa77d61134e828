"""Core statements rendered once and run on the DBAPI cursor (the real-time path).

SQLAlchemy looks a statement up in its compiled cache by a key generated from the whole
expression tree, then expands ``IN (:ids)`` and processes every bound value, on every execution.
For the per-contact SELECT (hundreds of nodes) that costs more than running the query for one
contact. A :class:`RawStatement` renders its SQL once per number of ids, with the constant
bound values already processed, and runs it on the raw DBAPI cursor; result values go through
the type processors SQLAlchemy itself would apply (looked up once, from the first cursor
description).

A statement takes at most two values at execution: ``:as_of`` and the expanding ``:ids``.

With psycopg the SQL is rewritten once to PostgreSQL's own ``$n`` placeholders and run on a
``RawCursor``: psycopg parses ``%(name)s`` queries on every execution unless they are shorter
than 4 kB, and the per-contact SELECT is far longer.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Connection, Dialect
from sqlalchemy.sql.compiler import Compiled

KEEP = 32  # rendered forms kept per statement (one per distinct number of ids)
_PYFORMAT = re.compile(r"%%|%\(([^)]+)\)s")


@dataclass
class _Form:
    sql: str | bytes  # bytes: PostgreSQL's $n placeholders, for a psycopg RawCursor
    template: list[Any] | dict[str, Any]  # positional values, or named values
    as_of_at: list[Any]  # positions (or names) that take as_of
    ids_at: list[tuple[Any, int]]  # (position or name, index into ids)
    procs: list[tuple[int, Callable[[Any], Any]]] | None = None  # result processors, by column

    def params(self, as_of: int | None, ids: Sequence[int]) -> Any:
        values: Any = self.template.copy()
        for at in self.as_of_at:
            values[at] = as_of
        for at, i in self.ids_at:
            values[at] = ids[i]
        return tuple(values) if isinstance(values, list) else values


class RawStatement:
    """One Core SELECT, rendered per number of ids, executed on the DBAPI connection."""

    def __init__(self, stmt: Any, dialect: Dialect) -> None:
        self.dialect = dialect
        self.compiled: Compiled = stmt.compile(dialect=dialect)
        self.types = [c.type for c in stmt.selected_columns]
        self.expanding = "ids" in self.compiled.binds
        self._forms: OrderedDict[int, _Form] = OrderedDict()
        self._lock = threading.Lock()

    def _render(self, n: int) -> _Form:
        compiled, dialect = self.compiled, self.dialect
        values: dict[str, Any] = {"as_of": 0}
        if self.expanding:
            values["ids"] = [0] * n
        state = compiled.construct_expanded_state(values)  # type: ignore[attr-defined]
        id_names = {name: i for i, name in enumerate(state.parameter_expansion.get("ids", ()))}

        def fixed(name: str) -> Any:
            value = state.parameters[name]
            bind = compiled.binds.get(name)  # type: ignore[attr-defined]
            proc = None if bind is None else bind.type.dialect_impl(dialect).bind_processor(dialect)
            return value if proc is None else proc(value)

        names: Sequence[str]
        sql: str | bytes = state.statement
        if dialect.driver == "psycopg":
            sql, names = _dollar(state.statement)
            template: list[Any] | dict[str, Any] = [None] * len(names)
            slots: Sequence[Any] = range(len(names))
        elif state.positiontup is not None:
            names = state.positiontup
            template = [None] * len(names)
            slots = range(len(names))
        else:
            names = list(state.parameters)
            template, slots = {}, names
        as_of_at: list[Any] = []
        ids_at: list[tuple[Any, int]] = []
        for slot, name in zip(slots, names, strict=True):
            if name == "as_of":
                as_of_at.append(slot)
            elif name in id_names:
                ids_at.append((slot, id_names[name]))
            else:
                template[slot] = fixed(name)
        return _Form(sql, template, as_of_at, ids_at)

    def _form(self, n: int) -> _Form:
        with self._lock:
            form = self._forms.get(n)
            if form is not None:
                self._forms.move_to_end(n)
                return form
        form = self._render(n)
        with self._lock:
            self._forms[n] = form
            while len(self._forms) > KEEP:
                self._forms.popitem(last=False)
        return form

    def rows(self, conn: Connection, as_of: int | None = None, ids: Sequence[int] = ()) -> list[Any]:
        """All rows for ``as_of`` and ``ids``, on ``conn``'s DBAPI connection (its transaction)."""
        form = self._form(len(ids))
        raw: Any = conn.connection.driver_connection
        cur = psycopg.RawCursor(raw) if isinstance(form.sql, bytes) else raw.cursor()
        try:
            cur.execute(form.sql, form.params(as_of, ids))
            rows: list[Any] = cur.fetchall()
            if form.procs is None:
                form.procs = self._processors(cur.description)
        finally:
            cur.close()
        if form.procs:
            procs = form.procs
            out = []
            for row in rows:
                row = list(row)
                for i, proc in procs:
                    row[i] = proc(row[i])
                out.append(row)
            return out
        return rows

    def _processors(self, description: Any) -> list[tuple[int, Callable[[Any], Any]]]:
        out = []
        for i, (typ, desc) in enumerate(zip(self.types, description, strict=True)):
            proc = typ.dialect_impl(self.dialect).result_processor(self.dialect, desc[1])
            if proc is not None:
                out.append((i, proc))
        return out


def _dollar(statement: str) -> tuple[bytes, list[str]]:
    """A pyformat statement with ``$n`` placeholders instead (one per distinct name, in order of
    first use) and ``%%`` unescaped; returns it encoded, and the names."""
    names: dict[str, int] = {}

    def sub(m: re.Match[str]) -> str:
        if m.group(1) is None:
            return "%"
        n = names.setdefault(m.group(1), len(names) + 1)
        return f"${n}"

    return _PYFORMAT.sub(sub, statement).encode(), list(names)
