"""The root of segsync's error tree, named by what the caller must do::

    SegsyncError
    ├── ConfigError            fix the configuration / rules / input file; exit code 2
    │   └── RuleError          a rule expression is wrong (carries its location)
    ├── InputError             a data file (CSV/JSONL) or request body is wrong; exit code 2
    ├── ConnectorError         (connectors.errors) a provider call failed
    │   ├── RetryableError(retry_after)
    │   ├── PermanentError
    │   └── RecordRejected(record_id)
    └── StoreError             (sync.store) the database refused; nothing was half-written

User errors are shown as one clear message with their location, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class SegsyncError(Exception):
    """Base of every error segsync raises on purpose."""

    exit_code = 1


@dataclass(frozen=True)
class Location:
    """Where in a file something is: 1-based line and column, and the TOML path."""

    file: str | None = None
    line: int | None = None
    column: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        parts = []
        if self.file:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            parts.append(where)
        if self.path:
            parts.append(self.path)
        return " ".join(parts)


@dataclass(frozen=True)
class Problem:
    """One user error: where and why, and an optional hint ("did you mean ...")."""

    location: Location
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if str(self.location) else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class ConfigError(SegsyncError):
    """The configuration (or a rule in it) is wrong. Carries every problem found at once."""

    exit_code = 2

    def __init__(self, message: str | None = None, problems: list[Problem] | None = None):
        self.problems: list[Problem] = list(problems or [])
        if message is not None and not self.problems:
            self.problems.append(Problem(Location(), message))
        super().__init__("\n".join(str(p) for p in self.problems))


class RuleError(ConfigError):
    """A rule expression is malformed or does not type-check."""


class InputError(SegsyncError):
    """A data file or request body is malformed. Carries every problem found."""

    exit_code = 2

    def __init__(self, message: str | None = None, problems: list[Problem] | None = None):
        self.problems: list[Problem] = list(problems or [])
        if message is not None and not self.problems:
            self.problems.append(Problem(Location(), message))
        super().__init__("\n".join(str(p) for p in self.problems))
