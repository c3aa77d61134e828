"""What an evaluation returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ContactResult:
    """One evaluated contact: its segments (sorted) and computed field values.

    ``key`` is the email when known, else the external id. Field values are JSON-ready:
    numbers (integral ones as int), strings, booleans, datetimes as epoch ms, lists, or None.
    ``fields`` holds every ``[fields]`` entry and every group's output field.
    """

    contact_id: int
    key: str | None
    segments: tuple[str, ...]
    fields: dict[str, Any]


@dataclass
class EvaluationResult:
    """The outcome of :func:`sync.evaluate.evaluate` at ``as_of_ms``.

    ``sizes`` counts the members among the evaluated contacts; ``entered`` / ``exited`` count the
    membership changes against the stored state (written only when ``persist`` was true).
    """

    as_of_ms: int
    results: list[ContactResult] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    entered: dict[str, int] = field(default_factory=dict)
    exited: dict[str, int] = field(default_factory=dict)
