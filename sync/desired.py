"""Desired state: from an evaluation and the provider identities, the value every managed
target should have on every destination record.

A desired value is already in the destination's wire form (:func:`encode`): HubSpot
multi-checkbox values ``"a;b"``, datetimes as epoch ms and dates at midnight UTC; Klaviyo list
properties as arrays and instants as ISO-8601 strings. An *empty* value (None, ``""``, ``[]``)
means "unset" / "not a member" and is simply absent: the store keeps only non-empty desired
values (``desired_values``), so 100k contacts outside every segment cost nothing.

A contact is written to every non-archived record it has at a destination (``identities``);
a contact without one is skipped (it has nowhere to go until a pull or import links it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, select, tuple_

from connectors.base import FieldSpec, SchemaSpec
from connectors.records import JsonValue, Provider
from mapping.destinations import ExperimentMapping
from mapping.project import Project
from mapping.targets import TargetDef, targets
from sync.evaluate import ContactResult, EvaluationResult
from sync.store import schema

DAY_MS = 86_400_000
IN_CHUNK = 500
Key = tuple[str, str, str]  # (destination, record id, target key)


@dataclass(frozen=True, slots=True)
class Desired:
    value: JsonValue
    reason: str
    contact_id: int


@dataclass
class DesiredState:
    """Desired values of the records in scope; ``records`` maps each record to its contact."""

    values: dict[Key, Desired] = field(default_factory=dict)
    records: dict[tuple[str, str], tuple[int, str | None]] = field(default_factory=dict)
    targets: dict[str, tuple[TargetDef, ...]] = field(default_factory=dict)  # per destination
    full: bool = True  # the whole population (else only ``records``)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _number(value: Any) -> JsonValue:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"not a number: {value!r}")
    return int(value) if isinstance(value, float) and value.is_integer() else value


def encode(provider: str, ttype: str, value: Any) -> JsonValue:
    """``value`` in ``provider``'s wire form for a field of type ``ttype``; None when empty."""
    if value is None or value == "" or value == []:
        return None
    if ttype in ("multi", "list"):
        items = sorted({str(v) for v in (value if isinstance(value, list | tuple) else [value])})
        return list(items) if provider == "klaviyo" else ";".join(items)
    if ttype == "bool":
        return bool(value)
    if ttype == "number":
        return _number(value)
    if ttype in ("datetime", "date"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return str(value)
        ms = int(value)
        if ttype == "date":
            ms -= ms % DAY_MS
            return ms if provider == "hubspot" else _iso(ms)[:10]
        return ms if provider == "hubspot" else _iso(ms)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


def assign_variant(experiment: str, exp: ExperimentMapping, contact_key: str) -> str:
    """A deterministic, stable variant: sha256(experiment, salt, key) mapped to [0, 1)."""
    digest = hashlib.sha256(f"{experiment}\x00{exp.salt}\x00{contact_key}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64
    if point < exp.holdout:
        return exp.holdout_value
    weights = exp.weights or [1.0] * len(exp.variants)
    scaled = (point - exp.holdout) / (1 - exp.holdout) * sum(weights)
    for variant, weight in zip(exp.variants, weights, strict=True):
        if scaled < weight:
            return variant
        scaled -= weight
    return exp.variants[-1]


def contact_values(provider: str, defs: Sequence[TargetDef], res: ContactResult,
                   entered: Mapping[str, int], as_of_ms: int) -> dict[str, JsonValue]:
    """The non-empty desired value of each target for one contact."""
    member = set(res.segments)
    out: dict[str, JsonValue] = {}
    for t in defs:
        raw: Any = None
        if t.kind == "tags":
            raw = [s for s in t.segments if s in member]
        elif t.kind == "boolean":
            raw = t.source in member
        elif t.kind == "group":
            raw = res.fields.get(t.output)
        elif t.kind == "entered_at":
            raw = entered.get(t.source, as_of_ms) if t.source in member else None
        elif t.kind == "value":
            raw = res.fields.get(t.output)
            if raw is None or raw == "" or raw == []:
                raw = t.default
        elif t.kind == "experiment" and t.experiment is not None:
            if t.experiment.segment is None or t.experiment.segment in member:
                raw = assign_variant(t.source, t.experiment, res.key or f"contact:{res.contact_id}")
        elif t.kind == "list":
            raw = True if t.source in member else None
        value = True if t.kind == "list" and raw else encode(provider, t.type, raw)
        if value is not None:
            out[t.key] = value
    return out


def _chunks(items: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(items), IN_CHUNK):
        yield items[start:start + IN_CHUNK]


def load_identities(conn: Connection, provider: str,
                    contact_ids: Sequence[int] | None) -> dict[int, list[str]]:
    """contact id -> its non-archived record ids at ``provider`` (all contacts when None)."""
    i = schema.identities
    query = select(i.c.contact_id, i.c.provider_id).where(i.c.provider == provider, i.c.archived.is_(False))
    out: dict[int, list[str]] = {}
    parts = [None] if contact_ids is None else list(_chunks(sorted(set(contact_ids))))
    for part in parts:
        q = query if part is None else query.where(i.c.contact_id.in_(part))
        for cid, rid in conn.execute(q.order_by(i.c.contact_id, i.c.provider_id)):
            out.setdefault(int(cid), []).append(str(rid))
    return out


def open_entries(conn: Connection, segments: Iterable[str],
                 contact_ids: Sequence[int] | None) -> dict[int, dict[str, int]]:
    """contact id -> {segment: entered_at} of its open memberships of ``segments``."""
    segs = sorted(set(segments))
    if not segs:
        return {}
    m = schema.memberships
    query = select(m.c.contact_id, m.c.segment, m.c.entered_at).where(
        m.c.segment.in_(segs), m.c.exited_at.is_(None))
    out: dict[int, dict[str, int]] = {}
    parts = [None] if contact_ids is None else list(_chunks(sorted(set(contact_ids))))
    for part in parts:
        q = query if part is None else query.where(m.c.contact_id.in_(part))
        for cid, seg, at in conn.execute(q):
            out.setdefault(int(cid), {})[str(seg)] = int(at)
    return out


def compute_desired(conn: Connection, project: Project, evaluation: EvaluationResult, *,
                    full: bool = True) -> DesiredState:
    """Desired values of every record of every evaluated contact at every enabled destination."""
    state = DesiredState(full=full)
    ids = None if full else [r.contact_id for r in evaluation.results]
    for provider, mapping in project.config.destinations.enabled().items():
        defs = targets(project, mapping)
        state.targets[provider] = defs
        identities = load_identities(conn, provider, ids)
        entries = open_entries(conn, [t.source for t in defs if t.kind == "entered_at"], ids)
        for res in evaluation.results:
            records = identities.get(res.contact_id)
            if not records:
                continue
            values = contact_values(provider, defs, res, entries.get(res.contact_id, {}),
                                    evaluation.as_of_ms)
            reasons = {t.key: t.reason for t in defs}
            for rid in records:
                state.records[(provider, rid)] = (res.contact_id, res.key)
                for key, value in values.items():
                    state.values[(provider, rid, key)] = Desired(value, reasons[key], res.contact_id)
    return state


def _same(a: JsonValue, b: JsonValue) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def store_desired(conn: Connection, state: DesiredState, now_ms: int) -> int:
    """Make ``desired_values`` of the records in scope equal ``state``; rows written or deleted.

    Full scope: rows of records no longer in scope and of targets no longer managed go too.
    """
    d = schema.desired_values
    stored: dict[Key, tuple[JsonValue, str | None]] = {}
    for dest, rid, target, value, reason in _stored_rows(conn, state):
        stored[(dest, rid, target)] = (value, reason)
    stale = [k for k in stored if k not in state.values]
    upserts = [
        {"destination": k[0], "record_id": k[1], "target": k[2], "contact_id": v.contact_id,
         "value": v.value, "reason": v.reason, "updated_at": now_ms}
        for k, v in state.values.items()
        if k not in stored or not _same(stored[k][0], v.value) or stored[k][1] != v.reason
    ]
    changed_keys = [(u["destination"], u["record_id"], u["target"]) for u in upserts]
    for part in range(0, len(stale + changed_keys), IN_CHUNK):
        keys = (stale + changed_keys)[part:part + IN_CHUNK]
        conn.execute(delete(d).where(tuple_(d.c.destination, d.c.record_id, d.c.target).in_(keys)))
    if upserts:
        conn.execute(d.insert(), upserts)
    return len(stale) + len(upserts)


Row = tuple[str, str, str, JsonValue, str | None]


def _stored_rows(conn: Connection, state: DesiredState) -> Iterable[Row]:
    d = schema.desired_values
    cols = (d.c.destination, d.c.record_id, d.c.target, d.c.value, d.c.reason)
    if state.full:
        yield from conn.execute(select(*cols))
        return
    by_dest: dict[str, list[str]] = {}
    for dest, rid in state.records:
        by_dest.setdefault(dest, []).append(rid)
    for dest, rids in by_dest.items():
        for start in range(0, len(rids), IN_CHUNK):
            q = select(*cols).where(and_(d.c.destination == dest,
                                         d.c.record_id.in_(bindparam("r", expanding=True))))
            yield from conn.execute(q, {"r": rids[start:start + IN_CHUNK]})


def schema_spec(provider: Provider, defs: Sequence[TargetDef], group: str = "segsync") -> SchemaSpec:
    """The fields and lists ``ensure_schema`` must provide at ``provider`` for ``defs``."""
    fields: list[FieldSpec] = []
    for t in defs:
        if t.is_list:
            continue
        ftype = t.type
        if ftype == "list":
            ftype = "list" if provider == "klaviyo" else "string"
        fields.append(FieldSpec(t.name, ftype, t.label or t.name, t.options))
    return SchemaSpec(tuple(fields), tuple(t.name for t in defs if t.is_list), group)


def schema_specs(project: Project) -> dict[str, SchemaSpec]:
    """The ``SchemaSpec`` of every enabled destination (for ``connector.ensure_schema``)."""
    return {
        provider: schema_spec(provider, targets(project, mapping), mapping.property_group)
        for provider, mapping in project.config.destinations.enabled().items()
    }
