"""The engine benchmark's generator and hand-written baseline, on a tiny data set.

The generator must be deterministic and produce what its docstring promises; the hand-written
SQL must agree with a plain-Python reference on the traits it computes, and give the same rows
on SQLite, DuckDB and PostgreSQL (the baselines are only a yardstick if they are right).
"""

from __future__ import annotations

import math
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy", reason="numpy is in the bench extra")
duckdb = pytest.importorskip("duckdb", reason="duckdb is in the bench extra")

from bench.engine_gen import AS_OF_MS, DAY_MS, Spec, contacts_block, events_block, generate  # noqa: E402
from bench.engine_handsql import HALF_LIFE, POINTS, SEGMENTS, TRAITS, hand_sql, sizes_sql  # noqa: E402
from bench.engine_load import PG_URL, load_duckdb, load_postgres, load_sqlite  # noqa: E402

SPEC = Spec(contacts=400, seed=11)
COLUMNS = ("contact_id", *TRAITS, "score", "pct", "rfm_r", "rfm_f", "rfm_m", *SEGMENTS)


def _rows(con: Any) -> list[tuple[Any, ...]]:
    sql = f"SELECT {', '.join(COLUMNS)} FROM hand_result ORDER BY contact_id"
    return [tuple(r) for r in con.execute(sql).fetchall()]


def _run(con: Any, dialect: str) -> list[tuple[Any, ...]]:
    for stmt in hand_sql(dialect):  # type: ignore[arg-type]
        con.execute(stmt)
    return _rows(con)


@pytest.fixture(scope="module")
def sqlite_rows(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Any, ...]]:
    path = load_sqlite(SPEC, path=tmp_path_factory.mktemp("bench") / "s.db", log=False)
    con = sqlite3.connect(path, isolation_level=None)
    try:
        return _run(con, "sqlite")
    finally:
        con.close()


def test_generator_is_deterministic_and_well_formed() -> None:
    a, b = events_block(SPEC, 0), events_block(SPEC, 0)
    assert all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)
    assert np.array_equal(contacts_block(SPEC, 0)["ltv"], contacts_block(SPEC, 0)["ltv"])
    assert not np.array_equal(events_block(Spec(contacts=400, seed=12), 0)["ts"][:50], a["ts"][:50])
    ts, types, value = a["ts"], a["type_id"], a["value"]
    assert (ts <= AS_OF_MS).all() and (ts > AS_OF_MS - SPEC.days * DAY_MS).all()
    assert set(np.unique(types).tolist()) == {1, 2, 3, 4, 5}
    assert np.isnan(value[types <= 2]).all() and not np.isnan(value[types >= 3]).any()
    order = np.lexsort((ts, types, a["contact_id"]))
    assert np.array_equal(order, np.arange(len(ts)))  # (contact_id, type_id, ts) order
    assert 10 <= len(ts) / SPEC.contacts <= 30


@pytest.mark.parametrize("layout", ["sorted", "arrival"])
def test_layouts_hold_the_same_events(layout: str) -> None:
    blocks = list(generate(SPEC, layout))  # type: ignore[arg-type]
    ev = {k: np.concatenate([b[1][k] for b in blocks]) for k in blocks[0][1]}
    assert np.array_equal(ev["id"], np.arange(1, len(ev["id"]) + 1))
    key = np.lexsort((ev["ts"], ev["type_id"], ev["contact_id"]))
    ref = events_block(SPEC, 0)
    assert np.array_equal(ev["ts"][key], ref["ts"]) and np.array_equal(ev["pid"][key], ref["pid"])
    if layout == "arrival":
        assert (np.diff(ev["ts"]) >= 0).all()


def _reference() -> dict[int, dict[str, Any]]:
    """A few traits per contact straight from the generated arrays (ast.py semantics)."""
    ev = events_block(SPEC, 0)
    a = AS_OF_MS
    out: dict[int, dict[str, Any]] = {}
    for cid in contacts_block(SPEC, 0)["id"].tolist():
        sel = ev["contact_id"] == cid
        ts, ty, val, pid = ev["ts"][sel], ev["type_id"][sel], ev["value"][sel], ev["pid"][sel]
        orders = (ty == 5) & (val <= 5000)
        carts = ts[(ty == 4) & (ts > a - 14 * DAY_MS) & (ts <= a - 2 * DAY_MS)]
        order_ts = ts[orders]
        rev90 = val[orders & (ts > a - 90 * DAY_MS)]
        kept = (ty != 5) | orders
        recent = kept & (ts > a - 90 * DAY_MS)
        score = sum(
            POINTS[int(t)] * 0.5 ** ((a - int(x)) / HALF_LIFE)
            for t, x in zip(ty[recent], ts[recent], strict=True)
        )
        out[cid] = {
            "opens_7d": int(((ty == 1) & (ts > a - 7 * DAY_MS)).sum()),
            "opens_7_14d": int(((ty == 1) & (ts > a - 14 * DAY_MS) & (ts <= a - 7 * DAY_MS)).sum()),
            "last_open": int(ts[ty == 1].max()) if (ty == 1).any() else None,
            "orders": int(orders.sum()),
            "revenue_90d": float(rev90.sum()) if len(rev90) else None,
            "products_viewed_7d": len(set(pid[(ty == 3) & (ts > a - 7 * DAY_MS)].tolist())),
            "cart_open_48h": int(
                any(not ((order_ts >= c) & (order_ts <= c + 2 * DAY_MS)).any() for c in carts)
            ),
            "score": min(100.0, score),
        }
    return out


def test_hand_sql_matches_the_python_reference(sqlite_rows: list[tuple[Any, ...]]) -> None:
    ref = _reference()
    assert len(sqlite_rows) == SPEC.contacts
    checked = 0
    for row in sqlite_rows:
        got = dict(zip(COLUMNS, row, strict=True))
        want = ref[got["contact_id"]]
        for name, value in want.items():
            if isinstance(value, float):
                assert got[name] == pytest.approx(value, rel=1e-9), (got["contact_id"], name)
            else:
                assert got[name] == value, (got["contact_id"], name)
        checked += 1
    assert checked == SPEC.contacts
    sizes = {s: sum(r[COLUMNS.index(s)] for r in sqlite_rows) for s in SEGMENTS}
    assert 0 < sizes["cart_no_order_48h"] < SPEC.contacts and 0 < sizes["loyal"] < SPEC.contacts
    assert sizes["top_engaged"] + sizes["middle_engaged"] + sizes["bottom_engaged"] == SPEC.contacts


def _same(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> None:
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        for col, x, y in zip(COLUMNS, ra, rb, strict=True):
            if isinstance(x, float) or isinstance(y, float):
                assert x is not None and y is not None and math.isclose(x, y, rel_tol=1e-9), (
                    ra[0],
                    col,
                    x,
                    y,
                )
            else:
                assert (x if x is None else int(x)) == (y if y is None else int(y)), (ra[0], col, x, y)


def test_duckdb_agrees_with_sqlite(sqlite_rows: list[tuple[Any, ...]], tmp_path: Path) -> None:
    con = duckdb.connect(str(load_duckdb(SPEC, path=tmp_path / "d.duckdb", log=False)))
    try:
        _same(_run(con, "duckdb"), sqlite_rows)
    finally:
        con.close()


@pytest.fixture
def pg_schema() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    raw = PG_URL.replace("+psycopg", "")
    try:
        psycopg.connect(raw, connect_timeout=3).close()
    except psycopg.OperationalError as e:
        pytest.skip(f"PostgreSQL is not reachable at {raw}: {e}")
    name = f"t_bench_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(raw, autocommit=True) as con:
        con.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.mark.postgres
def test_postgres_agrees_with_sqlite(sqlite_rows: list[tuple[Any, ...]], pg_schema: str) -> None:
    import psycopg

    load_postgres(SPEC, schema_name=pg_schema, log=False)
    with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as con:
        con.execute(f"SET search_path = {pg_schema}")
        _same(_run(con, "postgresql"), sqlite_rows)
        assert [int(x) for x in con.execute(sizes_sql()).fetchone() or ()] == [
            sum(r[COLUMNS.index(s)] for r in sqlite_rows) for s in SEGMENTS
        ]


def test_onepass_style_agrees_with_pertype(sqlite_rows: list[tuple[Any, ...]], tmp_path: Path) -> None:
    con = sqlite3.connect(load_sqlite(SPEC, path=tmp_path / "o.db", log=False), isolation_level=None)
    try:
        for stmt in hand_sql("sqlite", style="onepass"):
            con.execute(stmt)
        _same(_rows(con), sqlite_rows)
    finally:
        con.close()


def test_segsync_agrees_with_the_hand_written_verdicts(
    sqlite_rows: list[tuple[Any, ...]], tmp_path: Path
) -> None:
    """The compiled SQL and the yardstick give the same members for all 30 segments."""
    from mapping.config import load_project
    from sync.evaluate import evaluate
    from sync.store.db import open_store

    store = open_store(f"sqlite:///{load_sqlite(SPEC, path=tmp_path / 'e.db', log=False)}")
    try:
        project = load_project(Path(__file__).resolve().parent.parent / "bench" / "engine_bench.toml")
        result = evaluate(store, project, AS_OF_MS, persist=True)
    finally:
        store.dispose()
    hand = {s: sum(r[COLUMNS.index(s)] for r in sqlite_rows) for s in SEGMENTS}
    assert {s: result.sizes.get(s, 0) for s in SEGMENTS} == hand
    members = {s: {r.contact_id for r in result.results if s in r.segments} for s in SEGMENTS}
    want = {s: {r[0] for r in sqlite_rows if r[COLUMNS.index(s)]} for s in SEGMENTS}
    assert members == want
