"""Support for the sync tests: a mapped project, a populated store and a strict fake Connector."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, insert, select, update

from connectors.base import Page, SchemaReport, SchemaSpec
from connectors.errors import ConnectorError
from connectors.records import Change, ChangeOp, Contact, Event, JsonValue, Provider, PushResult
from mapping.config import load_project_text
from mapping.project import Project
from sync.store import schema
from tests.eval_support import AS_OF, load

CONFIG = """
[attributes]
plan = "string"
ltv = "number"

[events.placed_order]
properties = { sku = "string" }

[segments.vip]
rule = 'ltv >= 1000'
[segments.big]
rule = 'ltv >= 500'
[segments.pro]
rule = 'plan == "pro"'

[groups.tier]
kind = "exclusive"
segments = ["vip", "big"]

[fields]
ltv_out = "ltv"

[destinations.hubspot]
tags = { field = "segsync_segments" }
booleans = { is_vip = "vip" }
groups = { segsync_tier = "tier" }
entered_at = { vip_since = "vip" }
values = { lifetime_value = { source = "ltv_out", default = 0 } }
lists = { "VIP customers" = "vip" }

[destinations.hubspot.experiments.subject]
field = "subject_variant"
holdout = 0.1
segment = "big"

[destinations.klaviyo]
tags = { field = "Segments", segments = ["vip", "pro"] }
lists = { "Pro users" = "pro" }

[[destinations.klaviyo.events]]
segment = "vip"
fields = ["ltv_out"]
"""


def project(extra: str = "") -> Project:
    return load_project_text(CONFIG + extra, "sync.toml")


def populate(engine: Engine, proj: Project, people: dict[str, dict[str, Any]],
             providers: Sequence[str] = ("hubspot", "klaviyo")) -> dict[str, int]:
    """Contacts (email -> attributes) with one identity per provider: ``hs-<email>``, ``kl-<email>``."""
    ids = load(engine, proj, people)
    with engine.begin() as conn:
        for email, cid in ids.items():
            for provider in providers:
                conn.execute(insert(schema.identities).values(
                    provider=provider, provider_id=record_id(provider, email), contact_id=cid,
                    email=email, archived=False, updated_at=0))
    return ids


def record_id(provider: str, email: str) -> str:
    return f"{provider[:2]}-{email}"


def set_ltv(engine: Engine, ids: dict[str, int], email: str, ltv: float) -> None:
    with engine.begin() as conn:
        attrs = conn.execute(select(schema.contacts.c.attributes).where(
            schema.contacts.c.id == ids[email])).scalar_one()
        conn.execute(update(schema.contacts).where(schema.contacts.c.id == ids[email]).values(
            attributes={**attrs, "ltv": ltv}))


def acked(engine: Engine, events: bool = False) -> dict[tuple[str, str, str], JsonValue]:
    """Acknowledged values (confirmed events too with ``events``)."""
    a = schema.acked_values
    with engine.connect() as conn:
        return {(r[0], r[1], r[2]): r[3] for r in conn.execute(
            select(a.c.destination, a.c.record_id, a.c.target, a.c.value))
            if events or not r[2].startswith("event:")}


def desired(engine: Engine) -> dict[tuple[str, str, str], JsonValue]:
    d = schema.desired_values
    with engine.connect() as conn:
        return {(r[0], r[1], r[2]): r[3] for r in conn.execute(
            select(d.c.destination, d.c.record_id, d.c.target, d.c.value))}


Verdict = Callable[[Change], PushResult]


@dataclass
class FakeConnector:
    """A strict in-memory Connector: only ``apply`` may be called, every change must be for
    its destination, no change twice in one call; each call is recorded. ``verdict`` decides
    each change's result (default: applied with a request id); ``raises`` makes the next
    call raise. ``state`` is what the destination holds after the applied changes."""

    provider: Provider
    verdict: Verdict | None = None
    raises: ConnectorError | None = None
    calls: list[list[Change]] = field(default_factory=list)
    state: dict[tuple[str, str], JsonValue] = field(default_factory=dict)
    events: list[Change] = field(default_factory=list)

    def pull_contacts(self, cursor: str | None, *, full: bool = False) -> Iterator[Page[Contact]]:
        raise AssertionError("unexpected pull_contacts")

    def pull_events(self, cursor: str | None) -> Iterator[Page[Event]]:
        raise AssertionError("unexpected pull_events")

    def ensure_schema(self, spec: SchemaSpec, *, dry_run: bool = False) -> SchemaReport:
        raise AssertionError("unexpected ensure_schema")

    def apply(self, changes: Sequence[Change]) -> list[PushResult]:
        assert changes, "apply called with no changes"
        assert all(c.destination == self.provider for c in changes), changes
        keys = [c.idempotency_key for c in changes]
        assert len(set(keys)) == len(keys), "the same change twice in one call"
        self.calls.append(list(changes))
        if self.raises is not None:
            error, self.raises = self.raises, None
            raise error
        out = []
        for c in changes:
            result = self.verdict(c) if self.verdict else PushResult.applied(c, f"req-{len(self.calls)}")
            if result.status == "applied":
                self._apply(c)
            out.append(result)
        return out

    def _apply(self, c: Change) -> None:
        if c.op is ChangeOp.EVENT:
            self.events.append(c)
            return
        is_list = c.op in (ChangeOp.LIST_ADD, ChangeOp.LIST_REMOVE)
        key = (c.record_id, ("list:" if is_list else "field:") + c.target)
        if c.op is ChangeOp.SET_FIELD:
            self.state[key] = c.value
        elif c.op is ChangeOp.LIST_ADD:
            self.state[key] = True
        else:
            self.state.pop(key, None)

    @property
    def sent(self) -> list[Change]:
        return [c for call in self.calls for c in call]


__all__ = ["AS_OF", "CONFIG", "FakeConnector", "acked", "desired", "populate", "project", "record_id",
           "set_ltv"]
