"""Support for the real-time tests: a shop project with time-windowed segments and transition
events, a populated store, and helpers to read memberships and the outbox."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from mapping.config import load_project_text
from mapping.project import Project
from sync.store import schema

CONFIG = """
[attributes]
last_cart_item = "string"
recommended_product = "string"

[events.opened_email]
[events.added_to_cart]
properties = { product = "string" }
[events.placed_order]

[scores.engagement]
points = [{ event = "opened_email", points = 5 }, { event = "added_to_cart", points = 15 }]
window = "30d"

[segments.recent_openers]
rule = 'exists("opened_email", within="7d")'

[segments.cart_abandoners]
rule = 'sequence("added_to_cart", not_followed_by="placed_order", gap="48h", within="14d", latest=true)'
{dwell}

[fields]
cart_item = "last_cart_item"
recommended_product = "recommended_product"
engagement = 'score("engagement")'

[destinations.hubspot]
booleans = { recent_opener = "recent_openers", cart_abandoner = "cart_abandoners" }

[destinations.klaviyo]
tags = { field = "Segments" }

[[destinations.klaviyo.events]]
segment = "cart_abandoners"
on = "enter"
fields = ["cart_item", "recommended_product", "engagement"]

[[destinations.klaviyo.events]]
segment = "cart_abandoners"
on = "exit"
"""

ENTER = "Entered segment: cart_abandoners"
EXIT = "Exited segment: cart_abandoners"


def shop(dwell: str = "") -> Project:
    """The shop project; ``dwell`` adds lines to ``[segments.cart_abandoners]``."""
    return load_project_text(CONFIG.replace("{dwell}", dwell), "realtime.toml")


def open_members(engine: Engine, segment: str) -> set[int]:
    m = schema.memberships.c
    with engine.connect() as conn:
        return {int(c) for c in conn.execute(
            select(m.contact_id).where(m.segment == segment, m.exited_at.is_(None))).scalars()}


def memberships(engine: Engine) -> list[tuple[int, str, int, int | None]]:
    m = schema.memberships.c
    with engine.connect() as conn:
        return [(int(r[0]), str(r[1]), int(r[2]), None if r[3] is None else int(r[3])) for r in conn.execute(
            select(m.contact_id, m.segment, m.entered_at, m.exited_at)
            .order_by(m.contact_id, m.segment, m.entered_at))]


def outbox_events(engine: Engine) -> list[dict[str, Any]]:
    """The transition events waiting in the outbox: record, metric and properties."""
    o = schema.outbox.c
    with engine.connect() as conn:
        rows = conn.execute(select(o.record_id, o.target, o.value, o.trigger)
                            .where(o.op == "event").order_by(o.id)).all()
    return [{"record": r[0], "metric": str(r[1]).split(":", 1)[1].rsplit("#", 1)[0], "properties": r[2],
             "trigger": r[3]} for r in rows]


def outbox_fields(engine: Engine, destination: str) -> dict[tuple[str, str], Any]:
    o = schema.outbox.c
    with engine.connect() as conn:
        rows = conn.execute(select(o.record_id, o.target, o.value)
                            .where(o.destination == destination, o.op != "event")).all()
    return {(r[0], r[1]): r[2] for r in rows}
