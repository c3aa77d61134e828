"""Where each key and value of a TOML document is: TOML path -> line and column.

``tomllib`` parses but forgets positions, so :func:`scan` walks the same text once more and
records, for every key (in tables, dotted keys, inline tables, arrays and arrays of tables),
the 1-based line and column of the key and of its value, and for string values where every
character of the decoded string came from (so a problem inside a rule string is reported at its
exact place in the file, escapes and multi-line strings included).

The scanner assumes the text is valid TOML (``tomllib`` has already accepted it); on anything
unexpected it stops and returns what it found so far — positions are a help, never a failure.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

PathPart = str | int
Path = tuple[PathPart, ...]

_BARE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ESCAPES = {"b", "t", "n", "f", "r", '"', "\\", "e"}


@dataclass(frozen=True)
class Span:
    """Positions of one entry: its key, its value, and (strings) each decoded character."""

    key: tuple[int, int]
    value: tuple[int, int]
    chars: tuple[tuple[int, int], ...] | None = None


class _Stop(Exception):
    """The text is not what the scanner expected: keep what was found."""


def format_path(path: Path) -> str:
    """``("segments", "a.b", "flags", 0, "when")`` -> ``segments."a.b".flags[0].when``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if part and set(part) <= _BARE else '"' + part.replace('"', '\\"') + '"'
            out += ("." if out else "") + text
    return out


def scan(text: str) -> dict[Path, Span]:
    """Every path of the document mapped to its :class:`Span` (best effort)."""
    scanner = _Scanner(text)
    try:
        scanner.document()
    except (_Stop, IndexError, ValueError):
        return scanner.spans  # the positions found so far are still right
    return scanner.spans


class _Scanner:
    def __init__(self, text: str):
        self.text, self.i = text, 0
        self.spans: dict[Path, Span] = {}
        self.starts = [0] + [n + 1 for n, c in enumerate(text) if c == "\n"]
        self.arrays: dict[Path, int] = {}  # array-of-tables path -> number of elements

    def at(self, i: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.starts, i)
        return line, i - self.starts[line - 1] + 1

    def peek(self, n: int = 1) -> str:
        return self.text[self.i : self.i + n]

    def skip(self, newlines: bool) -> None:
        while self.i < len(self.text):
            c = self.text[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.i += 1
            elif c == "#":
                end = self.text.find("\n", self.i)
                self.i = len(self.text) if end < 0 else end
            else:
                return

    def expect(self, s: str) -> None:
        if not self.text.startswith(s, self.i):
            raise _Stop
        self.i += len(s)

    # ------------------------------------------------------------------ structure

    def document(self) -> None:
        table: Path = ()
        while True:
            self.skip(newlines=True)
            if self.i >= len(self.text):
                return
            start = self.i
            if self.peek(2) == "[[":
                self.i += 2
                table = self.resolve(self.key(), True, start)
                self.skip(False)
                self.expect("]]")
                self.spans.setdefault(table, Span(self.at(start), self.at(start)))
            elif self.peek() == "[":
                self.i += 1
                table = self.resolve(self.key(), False, start)
                self.skip(False)
                self.expect("]")
                self.spans.setdefault(table, Span(self.at(start), self.at(start)))
            else:
                self.keyval(table)

    def resolve(self, keys: list[str], array: bool, start: int) -> Path:
        """A header's keys -> the concrete path (array-of-tables elements get their index)."""
        path: Path = ()
        for n, key in enumerate(keys):
            path = (*path, key)
            self.spans.setdefault(path, Span(self.at(start), self.at(start)))
            last = n == len(keys) - 1
            if last and array:
                index = self.arrays.get(path, 0)
                self.arrays[path] = index + 1
                path = (*path, index)
            elif path in self.arrays:
                path = (*path, self.arrays[path] - 1)
        return path

    def key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.skip(False)
            c = self.peek()
            if c in ('"', "'"):
                parts.append(self.string()[0])
            else:
                start = self.i
                while self.i < len(self.text) and self.text[self.i] in _BARE:
                    self.i += 1
                if self.i == start:
                    raise _Stop
                parts.append(self.text[start : self.i])
            self.skip(False)
            if self.peek() != ".":
                return parts
            self.i += 1

    def keyval(self, table: Path) -> None:
        key_start = self.i
        keys = self.key()
        for n in range(1, len(keys)):
            self.spans.setdefault((*table, *keys[:n]), Span(self.at(key_start), self.at(key_start)))
        path = (*table, *keys)
        self.skip(False)
        self.expect("=")
        self.skip(False)
        self.value(path, self.at(key_start))

    def value(self, path: Path, key: tuple[int, int]) -> None:
        start = self.i
        c = self.peek()
        if c in ('"', "'"):
            _, chars = self.string()
            self.spans[path] = Span(key, self.at(start), chars)
            return
        self.spans[path] = Span(key, self.at(start))
        if c == "[":
            self.i += 1
            index = 0
            while True:
                self.skip(True)
                if self.peek() == "]":
                    self.i += 1
                    return
                self.value((*path, index), self.at(self.i))
                index += 1
                self.skip(True)
                if self.peek() == ",":
                    self.i += 1
        elif c == "{":
            self.i += 1
            while True:
                self.skip(True)
                if self.peek() == "}":
                    self.i += 1
                    return
                self.keyval(path)
                self.skip(True)
                if self.peek() == ",":
                    self.i += 1
        else:  # number, bool, date: up to the next delimiter
            while self.i < len(self.text) and self.text[self.i] not in ",]}\n#":
                self.i += 1

    # ------------------------------------------------------------------ strings

    def string(self) -> tuple[str, tuple[tuple[int, int], ...]]:
        """A string token at ``self.i``: its decoded text and each character's position."""
        quote = self.peek()
        multi = self.peek(3) == quote * 3
        self.i += 3 if multi else 1
        if multi and self.peek() == "\n":
            self.i += 1
        elif multi and self.peek(2) == "\r\n":
            self.i += 2
        out: list[str] = []
        where: list[tuple[int, int]] = []
        while True:
            if self.i >= len(self.text):
                raise _Stop
            c = self.text[self.i]
            if c == quote and (not multi or self.peek(3) == quote * 3):
                if multi:  # up to two quotes may precede the closing delimiter
                    run = len(self.text[self.i :]) - len(self.text[self.i :].lstrip(quote))
                    for _ in range(min(run - 3, 2)):
                        out.append(quote)
                        where.append(self.at(self.i))
                        self.i += 1
                    end = self.i
                    self.i += 3
                else:
                    end = self.i
                    self.i += 1
                where.append(self.at(end))
                return "".join(out), tuple(where)
            pos = self.at(self.i)
            if c == "\\" and quote == '"':
                self.escape(out, where, pos, multi)
                continue
            if c == "\r" and self.peek(2) == "\r\n":
                self.i += 1
                c = "\n"
            out.append(c)
            where.append(pos)
            self.i += 1

    def escape(self, out: list[str], where: list[tuple[int, int]], pos: tuple[int, int], multi: bool) -> None:
        nxt = self.text[self.i + 1]
        if nxt in _ESCAPES:
            decoded = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", "e": "\x1b"}.get(nxt, nxt)
            out.append(decoded)
            where.append(pos)
            self.i += 2
        elif nxt in "uUx":
            size = {"u": 4, "U": 8, "x": 2}[nxt]
            out.append(chr(int(self.text[self.i + 2 : self.i + 2 + size], 16)))
            where.append(pos)
            self.i += 2 + size
        elif multi:  # a line-ending backslash: drop it and all whitespace after it
            self.i += 1
            while self.i < len(self.text) and self.text[self.i] in " \t\r\n":
                self.i += 1
        else:
            raise _Stop
