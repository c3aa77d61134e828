"""The plan is data: desired and acknowledged state -> frozen change records. Pure.

State maps ``(destination, record id, target key)`` to a value in the destination's wire
form; an absent key means "unset" (a field) or "not a member" (a list). Target keys are
``field:<property>`` and ``list:<list name>``. :func:`diff` returns the changes that make the
acknowledged state equal the desired one, and :func:`apply` is what the destination's
confirmation of those changes does to the acknowledged state, so for every pair of states::

    apply(acked, diff(desired, acked)) == desired      (restricted to the keys in scope)
    diff(s, s) == []

:class:`Plan` bundles the changes of one run with what the executor, the audit log and
``segsync plan`` need to know about each (contact, old value, reason, segments), the safety
verdict and the API cost estimate; :func:`sync.planning.plan_run` builds it from the store.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.records import Change, ChangeOp, JsonValue, Provider

Key = tuple[str, str, str]  # (destination, record id, target key)
State = Mapping[Key, JsonValue]
_LIST_OPS = (ChangeOp.LIST_ADD, ChangeOp.LIST_REMOVE)


def canonical(value: JsonValue) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def same(a: JsonValue, b: JsonValue) -> bool:
    """Equal as JSON (``True`` differs from ``1``; ``1.0`` equals ``1``)."""
    if isinstance(a, float) and a.is_integer():
        a = int(a)
    if isinstance(b, float) and b.is_integer():
        b = int(b)
    return canonical(a) == canonical(b)


def target_key(change: Change) -> str:
    """The state key of a change's target: ``list:<name>``, ``field:<name>`` or ``event:<...>``."""
    if change.op in _LIST_OPS:
        return f"list:{change.target}"
    if change.op is ChangeOp.EVENT:
        return f"event:{change.target}"
    return f"field:{change.target}"


def change_for(key: Key, desired: JsonValue, acked: JsonValue) -> Change | None:
    """The change that moves ``key`` from ``acked`` to ``desired`` (None when they agree)."""
    if same(desired, acked):
        return None
    dest, record, target = key
    kind, _, name = target.partition(":")
    provider: Provider = "hubspot" if dest == "hubspot" else "klaviyo"
    if kind == "list":
        op = ChangeOp.LIST_ADD if desired is not None else ChangeOp.LIST_REMOVE
        return Change(provider, record, op, name)
    if kind != "field":
        raise ValueError(f"unknown target kind in {target!r}")
    if desired is None:
        return Change(provider, record, ChangeOp.UNSET_FIELD, name)
    return Change(provider, record, ChangeOp.SET_FIELD, name, desired)


def diff(desired: State, acked: State, keys: Iterable[Key] | None = None) -> list[Change]:
    """The changes that make ``acked`` equal ``desired`` on ``keys`` (default: every key of
    either), in key order. A list membership's desired value is ``True`` (or absent)."""
    scope = sorted(set(desired) | set(acked) if keys is None else set(keys))
    out = []
    for key in scope:
        change = change_for(key, desired.get(key), acked.get(key))
        if change is not None:
            out.append(change)
    return out


def apply(acked: State, changes: Iterable[Change]) -> dict[Key, JsonValue]:
    """The acknowledged state after the destination confirmed ``changes`` (events leave no state)."""
    out = dict(acked)
    for c in changes:
        if c.op is ChangeOp.EVENT:
            continue
        key = (c.destination, c.record_id, target_key(c))
        if c.op in (ChangeOp.UNSET_FIELD, ChangeOp.LIST_REMOVE):
            out.pop(key, None)
        else:
            out[key] = True if c.op is ChangeOp.LIST_ADD else c.value
    return out


def tag_set(value: JsonValue) -> frozenset[str]:
    """The names in a tags value: HubSpot ``"a;b"``, Klaviyo ``["a", "b"]``, or unset."""
    if value is None:
        return frozenset()
    if isinstance(value, list):
        return frozenset(str(v) for v in value)
    return frozenset(t for t in str(value).split(";") if t)


@dataclass(frozen=True, slots=True)
class PlannedChange:
    """One change with what the audit log and the plan printout say about it."""

    change: Change
    contact_id: int | None
    contact_key: str | None
    old_value: JsonValue
    reason: str  # "segment:vip@<rule hash>" (comma-separated when several)
    segments: tuple[str, ...] = ()  # the segments the change is about (for grouping, filters)

    @property
    def target(self) -> str:
        return target_key(self.change)

    @property
    def group(self) -> str:
        """What ``segsync plan`` groups it under: its segments, else its reason's source."""
        if self.segments:
            return ", ".join(self.segments)
        return self.reason.split("@", 1)[0]

    def to_json(self) -> dict[str, Any]:
        c = self.change
        return {
            "destination": c.destination, "record_id": c.record_id, "op": str(c.op),
            "target": self.target, "old": self.old_value, "new": c.value,
            "contact": self.contact_key, "reason": self.reason, "segments": list(self.segments),
        }


@dataclass(frozen=True)
class Plan:
    """The changes of one run, grouped and checked; ``held`` are withheld by the safety guard."""

    as_of_ms: int
    changes: tuple[PlannedChange, ...]
    held: tuple[PlannedChange, ...] = ()
    full: bool = True  # planned for the whole population (else ``records`` only)
    records: Mapping[str, frozenset[str]] = field(default_factory=dict)  # destination -> ids
    problems: tuple[str, ...] = ()  # safety guard verdicts ("list VIP: 1,500 removals > ...")
    cost: Mapping[str, Any] = field(default_factory=dict)  # destination -> estimate (JSON)

    def counts(self) -> dict[tuple[str, str, str], int]:
        """(destination, group, op) -> number of changes (held ones included)."""
        out: dict[tuple[str, str, str], int] = {}
        for p in (*self.changes, *self.held):
            k = (p.change.destination, p.group, str(p.change.op))
            out[k] = out.get(k, 0) + 1
        return dict(sorted(out.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of_ms,
            "changes": [p.to_json() for p in self.changes],
            "held": [p.to_json() for p in self.held],
            "counts": [{"destination": d, "group": g, "op": o, "count": n}
                       for (d, g, o), n in self.counts().items()],
            "problems": list(self.problems),
            "cost": dict(self.cost),
        }
