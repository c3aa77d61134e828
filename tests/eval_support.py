"""Hand-built data for the evaluation tests: contacts and events written straight to a store."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select

from mapping.project import Project
from sync.store import schema

MIN = 60_000
H = 3_600_000
D = 86_400_000
AS_OF = int(datetime(2024, 6, 1, 12, 0, tzinfo=UTC).timestamp() * 1000)


@dataclass
class Ev:
    """An event of contact ``contact`` (an email), ``ago`` ms before AS_OF."""

    contact: str
    type: str
    ago: int
    value: float | None = None
    props: dict[str, Any] = field(default_factory=dict)


def clear(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in (schema.computed_values, schema.group_state, schema.memberships,
                      schema.rank_cutoffs, schema.events, schema.identities, schema.contacts,
                      schema.event_types):
            conn.execute(delete(table))


def load(engine: Engine, project: Project | Iterable[str], contacts: dict[str, dict[str, Any]],
         events: Sequence[Ev] = (), as_of: int = AS_OF) -> dict[str, int]:
    """Insert ``contacts`` (email -> attributes) and ``events``; returns email -> contact id."""
    names = list(project.events) if isinstance(project, Project) else list(project)
    with engine.begin() as conn:
        known = dict(conn.execute(select(schema.event_types.c.name, schema.event_types.c.id)).all())
        new = [n for n in names if n not in known]
        if new:
            conn.execute(insert(schema.event_types), [{"name": n} for n in new])
            known = dict(conn.execute(select(schema.event_types.c.name, schema.event_types.c.id)).all())
        ids: dict[str, int] = {}
        for email, attrs in contacts.items():
            ids[email] = conn.execute(insert(schema.contacts).values(
                email=email, attributes=attrs, created_at=0, updated_at=0)
                .returning(schema.contacts.c.id)).scalar_one()
        rows = [{"contact_id": ids[e.contact], "type_id": known[e.type], "ts": as_of - e.ago,
                 "value": e.value, "properties": e.props or None, "source": "test",
                 "source_event_id": f"e{i}"} for i, e in enumerate(events)]
        if rows:
            conn.execute(insert(schema.events), rows)
    return ids


def add_events(engine: Engine, ids: dict[str, int], events: Sequence[Ev], as_of: int = AS_OF) -> None:
    """Add events of contacts already loaded (``ids`` from :func:`load`)."""
    with engine.begin() as conn:
        known = dict(conn.execute(select(schema.event_types.c.name, schema.event_types.c.id)).all())
        start = len(conn.execute(select(schema.events.c.id)).all())
        conn.execute(insert(schema.events), [
            {"contact_id": ids[e.contact], "type_id": known[e.type], "ts": as_of - e.ago, "value": e.value,
             "properties": e.props or None, "source": "test", "source_event_id": f"add{start + i}"}
            for i, e in enumerate(events)])


def members(result: Any, segment: str) -> set[str]:
    return {r.key for r in result.results if segment in r.segments}
