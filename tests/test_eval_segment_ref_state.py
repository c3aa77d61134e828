"""Stateful segments whose rule parts are negated and/or (``not (x or y)``, ``not (x and y)``).

A segment with ``min_dwell`` is stateful, and so is every segment that references it: their
rules are decided in Python over SQL *atoms* (the parts that do not reference a stateful
segment). SQLAlchemy gives ``NOT (x OR y)`` / ``NOT (x AND y)`` no type (NullType), so such an
atom came back from the store as whatever the driver returned -- 0/1 on SQLite, and text
('0', 'false') once the whole-population path had stored it in its result table -- and a false
``not (...)`` counted as true there. The whole-population path and the subset (real-time) path
must both give each segment its verdict per docs/rules.md, from the same (empty) state.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from mapping.config import load_project_text
from sync.evaluate import evaluate
from tests.eval_support import AS_OF, load

CONFIG = """
[attributes]
n = "number"
[events.a]
[segments.s]
rule = 'n > 0'
min_dwell = "1m"
[segments.t]
rule = 'segment("s") and not (n > 5 or n < 0)'
[segments.u]
rule = 'not (n > 5 and n < 0)'
min_dwell = "1m"
[segments.v]
rule = 'n > 0'
min_dwell = "1m"
exclude = 'not (n < 5 and n > 0)'
[fields]
small = 'segment("s") and not (n > 5 or n < 0)'
"""

# contact -> (n, expected segments, expected field "small")
CASES = {
    "big": (10, ("s", "u"), False),  # not (true or false) is false: not in t; v is excluded
    "small": (3, ("s", "t", "u", "v"), True),
    "negative": (-1, ("u",), False),  # s does not hold, so neither do t nor v
}


@pytest.mark.parametrize("subset", [False, True], ids=["full", "subset"])
def test_negated_and_or_parts_of_stateful_rules(eval_engine: Engine, subset: bool) -> None:
    project = load_project_text(CONFIG, "negated.toml")
    ids = load(eval_engine, project, {name: {"n": n} for name, (n, _, _) in CASES.items()})
    result = evaluate(eval_engine, project, AS_OF, contact_ids=list(ids.values()) if subset else None,
                      persist=False)
    got = {r.key: (r.segments, r.fields["small"]) for r in result.results}
    assert got == {name: (segs, small) for name, (_, segs, small) in CASES.items()}
