"""What an evaluation returns."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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

    ``results`` (every evaluated contact, in contact id order) is built on first access: the
    whole-population path keeps compact rows and turns them into :class:`ContactResult` objects
    only when asked (``iter_results()`` streams them without building the list).
    """

    as_of_ms: int
    sizes: dict[str, int] = field(default_factory=dict)
    entered: dict[str, int] = field(default_factory=dict)
    exited: dict[str, int] = field(default_factory=dict)
    _results: list[ContactResult] | None = field(default=None, repr=False)
    _rows: list[Any] = field(default_factory=list, repr=False)
    _build: Callable[[Any], ContactResult] | None = field(default=None, repr=False)

    @property
    def results(self) -> list[ContactResult]:
        if self._results is None:
            self._results = list(self.iter_results())
            self._rows, self._build = [], None
        return self._results

    @results.setter
    def results(self, value: list[ContactResult]) -> None:
        self._results, self._rows, self._build = value, [], None

    def iter_results(self) -> Iterator[ContactResult]:
        if self._results is not None:
            yield from self._results
        elif self._build is not None:
            build = self._build
            for row in self._rows:
                yield build(row)

    def deferred(self, rows: list[Any], build: Callable[[Any], ContactResult]) -> None:
        """Results to build lazily from compact ``rows``."""
        self._results, self._rows, self._build = None, rows, build
