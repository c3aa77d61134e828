"""The acknowledgement path's storage: the SQLite spool and its move into the inbox, the
PostgreSQL batch insert, and /metrics across the two processes of ``serve``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.exc import OperationalError

from sync.service import metrics
from sync.service.inbox import Inbox, NewItem, move_from_spool
from sync.service.spool import Spool, connect, purge
from sync.store import schema
from sync.store.db import open_store
from sync.store.tx import begin_write
from tests.service_support import NOW, prop_change, stored

PG_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"


def _item(key: str, object_id: int = 501) -> NewItem:
    return NewItem("hubspot", key, "contact.propertyChange", f"hubspot:{object_id}",
                   prop_change(object_id, "plan", key))


def _commit(engine: Engine, *requests: list[NewItem]) -> list[int]:
    committer = Inbox(engine).committer()
    try:
        futures = [committer.submit(items, NOW) for items in requests]
        return [f.result(timeout=10) for f in futures]
    finally:
        committer.stop()


def _inbox_keys(engine: Engine) -> list[str]:
    i = schema.inbox
    with engine.connect() as conn:
        return list(conn.execute(select(i.c.dedupe_key).order_by(i.c.id)).scalars())


def test_sqlite_acknowledgements_go_to_the_spool_and_move_once(tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 's.db'}")
    inbox = Inbox(engine)
    assert inbox.spool_path == tmp_path / "s.db-inbox"
    assert _commit(engine, [_item("a"), _item("b")], [_item("b"), _item("c")]) == [2, 1]
    assert _inbox_keys(engine) == [] and inbox.stats() == (3, NOW)
    assert inbox.spool_path is not None
    spool = Spool(inbox.spool_path)
    rows = spool.unmoved(10)
    assert [r.dedupe_key for r in rows] == ["a", "b", "c"]
    for _ in range(2):  # a crash between the move's commit and the mark repeats the move
        with begin_write(engine) as conn:
            move_from_spool(conn, rows)
    assert _inbox_keys(engine) == ["a", "b", "c"]
    spool.mark_moved(rows[-1].id)
    assert spool.unmoved(10) == [] and inbox.stats() == (3, NOW)  # pending in the inbox now
    # a redelivery is still recognised at the acknowledgement (the spool keeps moved rows)
    assert _commit(engine, [_item("a")]) == [0]
    writer = connect(inbox.spool_path)
    assert purge(writer, inbox.spool_path, NOW) == 0  # the retention has not passed
    assert purge(writer, inbox.spool_path, NOW + 1) == 3 and stored(engine) == 3
    writer.close()
    spool.close()
    engine.dispose()


def test_sqlite_uri_databases_write_the_inbox_directly(tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///file:{tmp_path / 'u.db'}?uri=true")
    assert Inbox(engine).spool_path is None and Inbox(engine).shared_with_other_processes
    assert _commit(engine, [_item("a"), _item("a")], [_item("b")]) == [1, 1]
    assert _inbox_keys(engine) == ["a", "b"]
    engine.dispose()
    memory = open_store("sqlite://")  # serve keeps the front end in its own process for this one
    assert not Inbox(memory).shared_with_other_processes
    memory.dispose()


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    except OperationalError as e:
        admin.dispose()
        pytest.skip(f"PostgreSQL is unreachable on 127.0.0.1:5432: {type(e).__name__}")
    engine = open_store(f"{PG_URL}?options=-csearch_path%3D{name}")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
        admin.dispose()


@pytest.mark.postgres
def test_postgres_batch_counts_each_request_and_keeps_the_order(pg_engine: Engine) -> None:
    assert Inbox(pg_engine).spool_path is None
    counts = _commit(pg_engine, [_item("a"), _item("b")], [_item("b"), _item("c"), _item("a")], [])
    assert counts == [2, 1, 0]  # a key twice in one batch is new for the first request only
    assert _commit(pg_engine, [_item("c"), _item("d")]) == [1]
    assert _inbox_keys(pg_engine) == ["a", "b", "c", "d"]


def test_metrics_show_the_main_process_samples() -> None:
    registry = metrics.Registry()
    registry.counter("t_pushes_total", "pushes", ("destination",))
    own = registry.counter("t_deliveries_total", "deliveries", ("source",))
    own.inc(source="hubspot")
    main = metrics.Registry()
    main.counter("t_pushes_total", "pushes", ("destination",)).inc(3, destination="klaviyo")
    text = registry.render(main.snapshot())
    assert 't_pushes_total{destination="klaviyo"} 3\n' in text
    assert 't_deliveries_total{source="hubspot"} 1\n' in text
    assert text.index("# TYPE t_pushes_total") < text.index('t_pushes_total{destination="klaviyo"}')
