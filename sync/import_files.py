"""Reading import files: CSV (with a header) or JSONL (one JSON object per line), as a stream
of ``(line number, row)`` with per-line parse failures kept as reasons.

File-level failures (unreadable file, unknown format, bad header, undecodable bytes midway) raise
:class:`mapping.errors.InputError`; the importer then rolls its transaction back.
"""

from __future__ import annotations

import csv
import difflib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

from mapping.errors import InputError, Location, Problem

Format = Literal["csv", "jsonl"]
Row = dict[str, Any]
_EXTENSIONS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def detect_format(path: Path, given: str | None) -> Format:
    """``given`` (``csv`` / ``jsonl``) or the format named by the file's extension."""
    if given is not None:
        if given.lower() in ("csv", "jsonl"):
            return "csv" if given.lower() == "csv" else "jsonl"
        raise InputError(f"{path}: unknown format {given!r} (use csv or jsonl)")
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _EXTENSIONS:
        return _EXTENSIONS[suffixes[-1]]
    raise InputError(
        f"{path}: cannot tell the format from the extension: name it .csv or .jsonl, "
        "or pass --format csv|jsonl"
    )


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


class RowSource:
    """An open import file. ``columns`` is the CSV header (None for JSONL). Iterating yields
    ``(line, row)`` or ``(line, reason)`` when the line itself cannot be parsed."""

    def __init__(self, path: Path, fmt: Format) -> None:
        self.path = path
        self.format = fmt
        self.columns: list[str] | None = None
        self._handle = self._open()
        if fmt == "csv":
            try:
                self._read_header()
            except InputError:
                self.close()
                raise

    def _read_header(self) -> None:
        self._reader = csv.reader(self._handle)
        header = self._guard(lambda: next(self._reader, None))
        if header is None:
            raise InputError(f"{self.path}: the file is empty (a CSV file starts with a header row)")
        self.columns = [h.strip() for h in header]
        seen: set[str] = set()
        for column in self.columns:
            if column in seen or not column:
                what = f"column {column!r} appears twice" if column else "a column has no name"
                raise InputError(f"{self.path}:1: header: {what}")
            seen.add(column)

    def _open(self) -> IO[str]:
        try:
            if self.path.suffix.lower() == ".gz":
                import gzip

                return gzip.open(self.path, "rt", encoding="utf-8-sig", newline="")
            return self.path.open("r", encoding="utf-8-sig", newline="")
        except OSError as e:
            raise InputError(f"{self.path}: cannot read the file: {e.strerror or e}") from None

    def _guard(self, read: Any) -> Any:
        try:
            return read()
        except UnicodeDecodeError as e:
            raise InputError(f"{self.path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        except csv.Error as e:
            raise InputError(f"{self.path}: malformed CSV: {e}") from None
        except OSError as e:
            raise InputError(f"{self.path}: cannot read the file: {e}") from None

    def __iter__(self) -> Iterator[tuple[int, Row | str]]:
        return self._csv_rows() if self.format == "csv" else self._jsonl_rows()

    def _csv_rows(self) -> Iterator[tuple[int, Row | str]]:
        assert self.columns is not None
        columns = self.columns
        width = len(columns)
        reader = self._reader
        while True:
            cells = self._guard(lambda: next(reader, None))
            if cells is None:
                return
            line = reader.line_num
            if not cells:
                continue  # blank line
            if len(cells) > width:
                yield line, f"{len(cells)} fields but the header has {width}"
                continue
            yield line, dict(zip(columns, cells, strict=False))

    def _jsonl_rows(self) -> Iterator[tuple[int, Row | str]]:
        line = 0
        while True:
            text = self._guard(self._handle.readline)
            if not text:
                return
            line += 1
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                yield line, f"invalid JSON: {e.msg} (column {e.colno})"
                continue
            if not isinstance(row, dict):
                yield line, "expected a JSON object"
                continue
            yield line, row

    def problem(self, line: int, message: str, hint: str | None = None) -> Problem:
        return Problem(Location(file=str(self.path), line=line), message, hint)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> RowSource:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
