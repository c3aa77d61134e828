"""The TOML position scanner: key positions, and each decoded character of a string mapped back
to where it is written — escapes, multi-line strings and line-ending backslashes included."""

from __future__ import annotations

import tomllib

from hypothesis import given, settings
from hypothesis import strategies as st

from mapping.tomlpos import Span, format_path, scan

DOC = """\
# a comment
[a]
x = 1   # trailing
"b.c" = { d = [1, "two", { e = 'three' }], f.g = true }

[[arr]]
k = "v0"
[[arr]]
k = "v1"
[[arr.sub]]
m = 2
"""


def test_paths_and_positions() -> None:
    spans = scan(DOC)
    expected = {
        ("a",): (2, 1), ("a", "x"): (3, 1), ("a", "b.c"): (4, 1), ("a", "b.c", "d"): (4, 11),
        ("a", "b.c", "d", 1): (4, 19), ("a", "b.c", "d", 2, "e"): (4, 28), ("a", "b.c", "f", "g"): (4, 44),
        ("arr", 0, "k"): (7, 1), ("arr", 1, "k"): (9, 1), ("arr", 1, "sub", 0, "m"): (11, 1),
    }
    assert {p: spans[p].key for p in expected} == expected
    assert spans[("a", "b.c", "d", 2, "e")].value == (4, 32)
    assert format_path(("a", "b.c", "d", 2, "e")) == 'a."b.c".d[2].e'


def test_scanning_stops_quietly_on_what_it_does_not_expect() -> None:
    assert scan("[a]\nx = 1\n= oops") == {("a",): Span((1, 1), (1, 1)), ("a", "x"): Span((2, 1), (2, 5))}


# one decoded character and a way of writing it in a basic string
_piece = st.one_of(
    st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters='"\\').map(lambda c: (c, c)),
    st.characters(blacklist_categories=["Cs"]).map(lambda c: (c, f"\\u{ord(c):04X}" if ord(c) < 0x10000
                                                                  else f"\\U{ord(c):08X}")),
    st.sampled_from([("\n", "\\n"), ("\t", "\\t"), ('"', '\\"'), ("\\", "\\\\")]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_piece, max_size=12), st.lists(_piece, max_size=6), st.booleans())
def test_every_character_maps_to_where_it_is_written(first: list[tuple[str, str]],
                                                     second: list[tuple[str, str]], multi: bool) -> None:
    if multi:  # raw newlines and a line-ending backslash in a multi-line string
        written = "".join(w for _, w in first) + "\nnext \\\n   " + "".join(w for _, w in second)
        raw = '"""\n' + written + '"""'
        decoded_pieces = [*first, ("\n", "\n"), *[(c, c) for c in "next "], *second]
    else:
        raw = '"' + "".join(w for _, w in first + second) + '"'
        decoded_pieces = first + second
    text = f"[t]\nrule = {raw}\n"
    value = tomllib.loads(text)["t"]["rule"]
    assert value == "".join(c for c, _ in decoded_pieces)
    chars = scan(text)[("t", "rule")].chars
    assert chars is not None and len(chars) == len(value) + 1
    lines = text.split("\n")
    for (line, col), (_, written) in zip(chars, decoded_pieces, strict=False):
        assert lines[line - 1][col - 1:].startswith(written) or written == "\n"
