"""Deterministic synthetic data for the engine benchmark, bulk-loaded into the store tables.

``generate`` yields the data in blocks of contacts as numpy arrays (same seed -> same data,
whatever the block size); the loaders write those blocks straight into the tables of
:mod:`sync.store.schema` (the store is created with ``sync.store.db.open_store``):

* SQLite: one transaction, ``synchronous=OFF``, a large page cache, ``executemany`` in large
  batches; the JSON properties are built by SQLite itself (``json_object``) from small integer
  columns, and the secondary indexes are built once, after the load.
* PostgreSQL: binary ``COPY`` of a compact staging table (the rows are built as one numpy
  record array, no per-row Python), then one ``INSERT ... SELECT`` that builds the JSON, then
  the indexes, ``VACUUM ANALYZE`` (index-only scans need the visibility map).
* DuckDB (for the single-machine baseline only): the numpy blocks are scanned directly.

The data (N contacts, on average ``events_per_contact`` events each, over ``days`` days up to
``AS_OF_MS``): five event types with a realistic mix, skewed activity (many idle contacts, a
few very active ones), contacts that went quiet some time ago, ~40 % of contacts who never
buy, order values with 0.1 % outliers above 5,000. Properties per type are in ``PROPS_SQL``.

``layout`` chooses the physical order of the events table, the subject of the layout study
in ``bench/README.md``: ``"arrival"`` (ids and rows in time order, as a live store receives
them) or ``"sorted"`` (rows ordered by (contact_id, type_id, ts), as after a rebuild).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

AS_OF_MS = 1_740_787_200_000  # 2025-03-01T00:00:00Z
DAY_MS = 86_400_000
EVENT_TYPES = ("opened_email", "clicked_email", "viewed_product", "added_to_cart", "placed_order")
TYPE_MIX = (0.40, 0.12, 0.30, 0.12, 0.06)
COUNTRIES = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "SE", "CA", "AU", "BR", "JP")
COUNTRY_MIX = (0.30, 0.12, 0.10, 0.09, 0.06, 0.06, 0.05, 0.04, 0.06, 0.05, 0.04, 0.03)
STAGES = ("lead", "trial", "customer", "churned")
STAGE_MIX = (0.45, 0.15, 0.30, 0.10)
BLOCK_CONTACTS = 50_000
PREMIUM_PRODUCTS = 50  # products p0..p49 are "premium": their click urls contain /premium/

Layout = Literal["arrival", "sorted"]
Arrays = dict[str, npt.NDArray[Any]]

# The JSON properties of an event, built by the database from the staging columns
# (id, type_id, value, k = campaign, pid = product, n = items). One expression per dialect,
# all producing the same JSON.
_URL = (
    f"CASE WHEN pid < {PREMIUM_PRODUCTS} THEN 'https://shop.example/premium/p' || pid "
    "ELSE 'https://shop.example/p/p' || pid END"
)
PROPS_SQL = {
    "sqlite": (
        "CASE type_id WHEN 1 THEN json_object('campaign', 'c' || k) "
        f"WHEN 2 THEN json_object('campaign', 'c' || k, 'url', {_URL}) "
        "WHEN 3 THEN json_object('product', 'p' || pid, 'price', value, 'category', 'cat' || (pid % 20)) "
        "WHEN 4 THEN json_object('product', 'p' || pid, 'price', value) "
        "ELSE json_object('order_id', 'o' || id, 'items', n, 'total', value) END"
    ),
    "postgresql": (
        "CASE type_id WHEN 1 THEN json_build_object('campaign', 'c' || k) "
        f"WHEN 2 THEN json_build_object('campaign', 'c' || k, 'url', {_URL}) "
        "WHEN 3 THEN json_build_object('product', 'p' || pid, 'price', value, "
        "'category', 'cat' || (pid % 20)) "
        "WHEN 4 THEN json_build_object('product', 'p' || pid, 'price', value) "
        "ELSE json_build_object('order_id', 'o' || id, 'items', n, 'total', value) END"
    ),
    "duckdb": (
        "CASE type_id WHEN 1 THEN json_object('campaign', 'c' || k) "
        f"WHEN 2 THEN json_object('campaign', 'c' || k, 'url', {_URL}) "
        "WHEN 3 THEN json_object('product', 'p' || pid, 'price', value, 'category', 'cat' || (pid % 20)) "
        "WHEN 4 THEN json_object('product', 'p' || pid, 'price', value) "
        "ELSE json_object('order_id', 'o' || id, 'items', n, 'total', value) END"
    ),
}


@dataclass(frozen=True)
class Spec:
    contacts: int = 1_000_000
    events_per_contact: float = 20.0
    days: int = 110
    seed: int = 20250301
    as_of_ms: int = AS_OF_MS

    @property
    def tag(self) -> str:
        """A short name for cached files: ``c1000000_e20_d110_s20250301``."""
        return f"c{self.contacts}_e{self.events_per_contact:g}_d{self.days}_s{self.seed}"


def _block_rng(spec: Spec, block: int, part: str) -> np.random.Generator:
    return np.random.default_rng([spec.seed, block, 0 if part == "contacts" else 1])


def contacts_block(spec: Spec, block: int) -> Arrays:
    """Contacts ``block*BLOCK_CONTACTS + 1 ..`` (ids are 1-based)."""
    first = block * BLOCK_CONTACTS + 1
    n = min(BLOCK_CONTACTS, spec.contacts - first + 1)
    rng = _block_rng(spec, block, "contacts")
    signup_days = rng.integers(1, 3 * 365, n)
    return {
        "id": np.arange(first, first + n, dtype=np.int64),
        "country": rng.choice(len(COUNTRIES), n, p=COUNTRY_MIX),
        "signup_date": (spec.as_of_ms // DAY_MS - signup_days) * DAY_MS,
        "stage": rng.choice(len(STAGES), n, p=STAGE_MIX),
        "vip": rng.random(n) < 0.05,
        "ltv": np.round(rng.lognormal(5.0, 1.2, n), 2),
    }


def events_block(spec: Spec, block: int) -> Arrays:
    """The events of one block of contacts, ordered by (contact_id, type_id, ts); no ids yet."""
    c = contacts_block(spec, block)
    n = len(c["id"])
    rng = _block_rng(spec, block, "events")
    activity = rng.lognormal(0.0, 1.0, n) * (rng.random(n) >= 0.08)
    counts = rng.poisson(activity * spec.events_per_contact / np.exp(0.5) / 0.92)
    buyer = rng.random(n) < 0.6
    quiet_since = np.minimum(rng.exponential(12.0, n), spec.days - 1.0)  # days idle before as_of
    total = int(counts.sum())
    contact = np.repeat(c["id"], counts)
    who = np.repeat(np.arange(n), counts)
    type_idx = rng.choice(5, total, p=TYPE_MIX)
    type_idx[(type_idx == 4) & ~buyer[who]] = 2  # non-buyers view instead of ordering
    span = (spec.days - quiet_since[who]) * DAY_MS
    age = quiet_since[who] * DAY_MS + rng.random(total) ** 1.4 * span
    ts = spec.as_of_ms - np.maximum(age.astype(np.int64), 1)
    pid = (rng.random(total) ** 2 * 2000).astype(np.int32)
    prices = np.round(np.exp(3.5 + (np.arange(2000) * 7919 % 1000) / 1000 * 2.5), 2)
    value = np.full(total, np.nan)
    shop = (type_idx == 2) | (type_idx == 3)
    value[shop] = prices[pid[shop]]
    order = type_idx == 4
    totals = np.round(rng.lognormal(4.5, 0.8, total), 2)
    outlier = rng.random(total) < 0.001
    totals[outlier] = np.round(5000 + rng.random(int(outlier.sum())) * 15000, 2)
    value[order] = totals[order]
    k = rng.integers(0, 200, total).astype(np.int32)
    items = (1 + rng.poisson(1.5, total)).astype(np.int32)
    type_id = (type_idx + 1).astype(np.int16)
    perm = np.lexsort((ts, type_id, contact))
    return {
        "contact_id": contact[perm],
        "type_id": type_id[perm],
        "ts": ts[perm],
        "value": value[perm],
        "k": k[perm],
        "pid": pid[perm],
        "n": items[perm],
    }


def blocks(spec: Spec) -> int:
    return (spec.contacts + BLOCK_CONTACTS - 1) // BLOCK_CONTACTS


def generate(spec: Spec, layout: Layout = "sorted") -> Iterator[tuple[Arrays, Arrays]]:
    """Yield ``(contacts, events)`` blocks with event ids assigned in table order.

    ``"sorted"``: blocks as generated (by contact, type, time); ``"arrival"``: all events in one
    block ordered by time (ids then follow arrival), after the contact blocks.
    """
    if layout == "sorted":
        next_id = 1
        for b in range(blocks(spec)):
            ev = events_block(spec, b)
            ev["id"] = np.arange(next_id, next_id + len(ev["ts"]), dtype=np.int64)
            next_id += len(ev["ts"])
            yield contacts_block(spec, b), ev
        return
    parts = [events_block(spec, b) for b in range(blocks(spec))]
    allev = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    del parts
    perm = np.argsort(allev["ts"], kind="stable")
    allev = {key: arr[perm] for key, arr in allev.items()}
    allev["id"] = np.arange(1, len(allev["ts"]) + 1, dtype=np.int64)
    for b in range(blocks(spec)):
        empty = {key: arr[:0] for key, arr in allev.items()}
        yield contacts_block(spec, b), (allev if b == blocks(spec) - 1 else empty)


def contact_rows(c: Arrays, as_of_ms: int) -> list[tuple[int, str, str, int, int]]:
    """(id, email, attributes JSON, created_at, updated_at) rows of a contact block."""
    rows = []
    for cid, country, signup, stage, vip, ltv in zip(
        c["id"].tolist(),
        c["country"].tolist(),
        c["signup_date"].tolist(),
        c["stage"].tolist(),
        c["vip"].tolist(),
        c["ltv"].tolist(),
        strict=True,
    ):
        attrs = {
            "country": COUNTRIES[country],
            "signup_date": signup,
            "lifecycle_stage": STAGES[stage],
            "vip": vip,
            "ltv": ltv,
        }
        rows.append(
            (cid, f"c{cid}@bench.example", json.dumps(attrs, separators=(",", ":")), as_of_ms, as_of_ms)
        )
    return rows


# ----------------------------------------------------------------------------- SQLite

SQLITE_EVENT_INSERT = (
    "INSERT INTO events (id, contact_id, type_id, ts, value, properties, source, source_event_id) "
    "SELECT id, contact_id, type_id, ts, value, {props}, 'bench', printf('e%010d', id) FROM "
    "(SELECT ?1 AS id, ?2 AS contact_id, ?3 AS type_id, ?4 AS ts, ?5 AS value, ?6 AS k, ?7 AS pid, ?8 AS n)"
).format(props=PROPS_SQL["sqlite"])


def sqlite_event_rows(ev: Arrays) -> list[tuple[Any, ...]]:
    value = ev["value"].astype(object)
    value[np.isnan(ev["value"])] = None
    return list(
        zip(
            ev["id"].tolist(),
            ev["contact_id"].tolist(),
            ev["type_id"].tolist(),
            ev["ts"].tolist(),
            value.tolist(),
            ev["k"].tolist(),
            ev["pid"].tolist(),
            ev["n"].tolist(),
            strict=True,
        )
    )


def load_sqlite_rows(con: sqlite3.Connection, spec: Spec, layout: Layout) -> int:
    """Insert contacts, event types and events into an open SQLite store; returns #events."""
    con.executemany("INSERT INTO event_types (id, name) VALUES (?, ?)", list(enumerate(EVENT_TYPES, 1)))
    total = 0
    for c, ev in generate(spec, layout):
        con.executemany(
            "INSERT INTO contacts (id, email, attributes, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            contact_rows(c, spec.as_of_ms),
        )
        for start in range(0, len(ev["ts"]), 500_000):
            part = {key: arr[start : start + 500_000] for key, arr in ev.items()}
            con.executemany(SQLITE_EVENT_INSERT, sqlite_event_rows(part))
        total += len(ev["ts"])
    return total


# ----------------------------------------------------------------------------- PostgreSQL

PG_STAGE_DDL = (
    "CREATE UNLOGGED TABLE bench_stage (id bigint, contact_id bigint, type_id smallint, ts bigint, "
    "value float8, k int4, pid int4, n int4)"
)
_PG_STAGE = [
    ("id", ">i8"),
    ("contact_id", ">i8"),
    ("type_id", ">i2"),
    ("ts", ">i8"),
    ("value", ">f8"),
    ("k", ">i4"),
    ("pid", ">i4"),
    ("n", ">i4"),
]


def pg_binary_copy(ev: Arrays) -> bytes:
    """The rows of ``bench_stage`` in PostgreSQL's binary COPY format (NaN value = no value)."""
    fields: list[tuple[str, str]] = [("nfields", ">i2")]
    for name, dt in _PG_STAGE:
        fields += [(f"{name}_len", ">i4"), (name, dt)]
    rec = np.empty(len(ev["ts"]), dtype=np.dtype(fields))
    rec["nfields"] = len(_PG_STAGE)
    for name, dt in _PG_STAGE:
        rec[f"{name}_len"] = np.dtype(dt).itemsize
        rec[name] = ev[name]
    header = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
    return header + rec.tobytes() + (-1).to_bytes(2, "big", signed=True)


PG_EVENT_INSERT = (
    "INSERT INTO events (id, contact_id, type_id, ts, value, properties, source, source_event_id) "
    "SELECT id, contact_id, type_id, ts, value, ({props})::json, 'bench', 'e' || lpad(id::text, 10, '0') "
    "FROM (SELECT id, contact_id, type_id, ts, NULLIF(value, 'NaN') AS value, k, pid, n FROM bench_stage) s"
).format(props=PROPS_SQL["postgresql"])
