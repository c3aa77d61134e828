"""The mass-removal guard: hold removals back before they are sent when they look like a
broken source rather than real exits. Pure.

A *container* is a list (``list:<name>``) or one tag of a tags field (``tag:<field>:<tag>``).
Its removals are the planned list removals, or the planned tags-field writes that drop the
tag. The guard holds every removal of a container when

* they exceed ``max(minimum, share x members)`` (members = the acknowledged members now), or
* a source returned no contacts although the previous run had some (every removal of any
  kind is held then: list removals, unsets, dropped tags, booleans turning false),

unless removals are explicitly allowed. Held changes are not sent; the dry run shows them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from connectors.records import ChangeOp, JsonValue
from sync.plan import Key, PlannedChange, tag_set

Container = tuple[str, str]  # (destination, "list:<name>" | "tag:<field>:<tag>")


@dataclass(frozen=True)
class Guard:
    minimum: int = 1000
    share: float = 0.10
    allow_mass_removal: bool = False


def _removed_from(p: PlannedChange, tag_fields: Mapping[str, frozenset[str]]) -> list[Container]:
    c = p.change
    if c.op is ChangeOp.LIST_REMOVE:
        return [(c.destination, f"list:{c.target}")]
    if c.op in (ChangeOp.SET_FIELD, ChangeOp.UNSET_FIELD) and c.target in tag_fields.get(c.destination, ()):
        gone = tag_set(p.old_value) - tag_set(c.value)
        return [(c.destination, f"tag:{c.target}:{t}") for t in sorted(gone)]
    return []


def is_removal(p: PlannedChange, tag_fields: Mapping[str, frozenset[str]]) -> bool:
    """Does the change take something away (a membership, a value, a tag, a true flag)?"""
    c = p.change
    if c.op in (ChangeOp.LIST_REMOVE, ChangeOp.UNSET_FIELD):
        return True
    return bool(_removed_from(p, tag_fields)) or (p.old_value is True and c.value is False)


def members(acked: Mapping[Key, JsonValue],
            tag_fields: Mapping[str, frozenset[str]]) -> dict[Container, int]:
    """Acknowledged members of every list and every tag."""
    out: dict[Container, int] = {}
    for (dest, _rid, target), value in acked.items():
        kind, _, name = target.partition(":")
        if kind == "list" and value is not None:
            out[(dest, target)] = out.get((dest, target), 0) + 1
        elif kind == "field" and name in tag_fields.get(dest, ()):
            for tag in tag_set(value):
                k = (dest, f"tag:{name}:{tag}")
                out[k] = out.get(k, 0) + 1
    return out


def check(changes: Sequence[PlannedChange], current: Mapping[Container, int],
          tag_fields: Mapping[str, frozenset[str]], guard: Guard,
          empty_sources: Iterable[str] = ()) -> tuple[list[PlannedChange], list[PlannedChange], list[str]]:
    """Split ``changes`` into (to send, held) and say why anything is held."""
    if guard.allow_mass_removal:
        return list(changes), [], []
    problems: list[str] = []
    empty = sorted(set(empty_sources))
    if empty:
        problems.append(
            f"{', '.join(empty)} returned no contacts although the previous run had some: "
            "every removal is held (allow_mass_removal to send them)")
    removals: dict[Container, int] = {}
    for p in changes:
        for k in _removed_from(p, tag_fields):
            removals[k] = removals.get(k, 0) + 1
    blocked: set[Container] = set()
    for k, n in sorted(removals.items()):
        have = current.get(k, 0)
        limit = max(guard.minimum, guard.share * have)
        if n > limit:
            blocked.add(k)
            dest, what = k
            problems.append(
                f"{dest} {what}: {n:,} removals of {have:,} members exceed the guard "
                f"(max({guard.minimum:,}, {guard.share:.0%})): held (allow_mass_removal to send them)")
    send: list[PlannedChange] = []
    held: list[PlannedChange] = []
    for p in changes:
        hold = (bool(empty) and is_removal(p, tag_fields)) or any(
            k in blocked for k in _removed_from(p, tag_fields))
        (held if hold else send).append(p)
    return send, held, problems
