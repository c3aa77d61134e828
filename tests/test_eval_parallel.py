"""SQLite: the per-type passes on worker connections (sync.evaluate.parallel) give exactly what
the passes on the main connection give, fall back to those when another connection commits
while the snapshots are taken, and leave nothing attached or on disk behind."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from mapping.config import load_project
from mapping.project import Project
from sync.evaluate import evaluate, parallel
from sync.store.db import open_store

pytest.importorskip("numpy", reason="the bench generator needs numpy (bench extra)")

from bench.engine_gen import AS_OF_MS, Spec
from bench.engine_load import load_sqlite

CONFIG = Path(__file__).resolve().parent.parent / "bench" / "engine_bench.toml"


@pytest.fixture(scope="module")
def project() -> Project:
    return load_project(CONFIG)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Engine, Path]]:
    path = load_sqlite(Spec(contacts=300, seed=5), path=tmp_path / "bench.db", log=False)
    monkeypatch.setattr(parallel, "WORKERS", 2)  # also on a one-core machine
    monkeypatch.setattr(parallel, "MIN_EVENTS", 0)  # also on this small store
    engine = open_store(f"sqlite:///{path}")
    yield engine, path
    engine.dispose()


class Spy:
    """Counts the parallel runs and remembers the scratch directories."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started = 0
        self.dirs: list[str] = []
        start, init = parallel.Passes.start, parallel.Scratch.__init__

        def spy_start(passes: parallel.Passes, jobs: list[parallel.Job]) -> None:
            self.started += 1
            start(passes, jobs)

        def spy_init(scratch: parallel.Scratch, conn: Any, n: int) -> None:
            init(scratch, conn, n)
            self.dirs.append(scratch.dir)

        monkeypatch.setattr(parallel.Passes, "start", spy_start)
        monkeypatch.setattr(parallel.Scratch, "__init__", spy_init)


def _attached(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {row[1] for row in conn.exec_driver_sql("PRAGMA database_list")} - {"temp"}


@pytest.mark.parametrize("persist", [False, True])
def test_parallel_passes_equal_sequential_passes(store: tuple[Engine, Path], project: Project,
                                                 monkeypatch: pytest.MonkeyPatch, persist: bool) -> None:
    engine, _ = store
    spy = Spy(monkeypatch)
    together = evaluate(engine, project, AS_OF_MS, persist=persist)
    assert spy.started == 1
    monkeypatch.setattr(parallel, "ENABLED", False)
    one_by_one = evaluate(engine, project, AS_OF_MS, persist=False)
    assert spy.started == 1
    assert together.results == one_by_one.results
    assert together.sizes == one_by_one.sizes and sum(together.sizes.values()) > 0
    if persist:  # the parallel run persisted: the sequential dry run finds nothing to change
        assert sum(one_by_one.entered.values()) == sum(one_by_one.exited.values()) == 0
    assert _attached(engine) == {"main"}
    assert spy.dirs and not any(Path(d).exists() for d in spy.dirs)


def test_a_commit_between_snapshots_falls_back_to_sequential_passes(
        store: tuple[Engine, Path], project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, path = store
    spy = Spy(monkeypatch)
    before = {r.contact_id: r for r in evaluate(engine, project, AS_OF_MS, persist=False).results}
    assert spy.started == 1
    cid = next(c for c, r in before.items() if "just_opened" not in r.segments)
    consistent = parallel.Passes.consistent

    def commit_first(passes: parallel.Passes, main_read: Any) -> bool:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("INSERT INTO events (contact_id, type_id, ts, source, source_event_id)"
                      " SELECT ?, id, ?, 'test', 'late' FROM event_types WHERE name = 'opened_email'",
                      (cid, AS_OF_MS - 1000))
        other.close()
        return consistent(passes, main_read)

    monkeypatch.setattr(parallel.Passes, "consistent", commit_first)
    after = {r.contact_id: r for r in evaluate(engine, project, AS_OF_MS, persist=False).results}
    assert spy.started == 1  # the second run did not use the workers
    assert "just_opened" in after[cid].segments  # it read the late event
    assert _attached(engine) == {"main"}


def test_a_failing_pass_leaves_the_connection_clean(store: tuple[Engine, Path], project: Project,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    engine, _ = store
    spy = Spy(monkeypatch)

    def broken(*_: Any) -> list[parallel.Job]:
        return [("a", ["CREATE TABLE w.x (y)", "INSERT INTO w.x SELECT no_such_column FROM events"]),
                ("b", ["SELECT 1"])]

    monkeypatch.setattr("sync.evaluate.traits.TraitTables.pass_jobs", broken)
    with pytest.raises(sqlite3.OperationalError, match="no_such_column"):
        evaluate(engine, project, AS_OF_MS, persist=True)
    assert _attached(engine) == {"main"}
    assert spy.dirs and not any(Path(d).exists() for d in spy.dirs)
    with engine.connect() as conn:  # nothing persisted, no lock left behind
        assert conn.execute(text("SELECT count(*) FROM memberships")).scalar() == 0
    monkeypatch.undo()
    assert sum(evaluate(engine, project, AS_OF_MS, persist=True).entered.values()) > 0
