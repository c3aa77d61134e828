"""SQLite: the per-type trait passes on worker connections, in parallel threads.

On a SQLite file store the whole-population run is CPU-bound in one connection, while the
per-type passes (one ``GROUP BY contact_id`` per event type, see :mod:`sync.evaluate.traits`)
are independent of each other. sqlite3 releases the GIL while a statement steps, so
:class:`Passes` runs them on :data:`WORKERS` read connections in threads, while the main
connection goes on with work that does not need them (the open memberships).

* Each worker writes its tables into its own *scratch* database file (journal off), which the
  main connection ATTACHes as ``segsync_s<k>`` before its transaction begins (SQLite cannot
  attach inside a transaction) and detaches after it ends. The run's transaction is therefore
  a deferred ``BEGIN`` (``BEGIN IMMEDIATE`` would lock the scratch files too); a persisting run
  takes the write lock with its first statement instead (:func:`sync.evaluate.ranks.bump_version`).
* Every worker must read the snapshot the main connection reads. The first worker is the probe:
  its ``PRAGMA data_version`` is read in a transaction opened before the other workers' and the
  main connection's, and again in a new one opened after them; equal values mean no other
  connection committed in between, so all snapshots are the same. Otherwise (or on a store
  that is not a file) the passes run on the main connection, one after the other.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sqlalchemy import Connection

WORKERS = min(4, os.cpu_count() or 1)
ENABLED = True  # tests switch it off to compare with the sequential passes
CACHE_KIB = 256_000

# (job name, SQL statements); each runs on one worker connection, scratch database ``w``
Job = tuple[str, list[str]]


def _main_file(conn: Connection) -> str | None:
    raw: Any = conn.connection.driver_connection
    for _, name, path in raw.execute("PRAGMA database_list").fetchall():
        if name == "main":
            return str(path) or None
    return None


class Scratch:
    """Scratch database files attached to the main connection outside a transaction."""

    def __init__(self, conn: Connection, n: int) -> None:
        self.conn = conn
        self.dir = tempfile.mkdtemp(prefix="segsync-eval-")
        self.files = [os.path.join(self.dir, f"s{k}.db") for k in range(n)]
        raw: Any = conn.connection.driver_connection
        self.attached: list[str] = []
        try:
            for k, path in enumerate(self.files):
                raw.execute(f"ATTACH DATABASE ? AS segsync_s{k}", (path,))
                self.attached.append(f"segsync_s{k}")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        raw: Any = self.conn.connection.driver_connection
        try:
            for name in self.attached:
                raw.execute(f"DETACH DATABASE {name}")
        finally:
            self.attached = []
            shutil.rmtree(self.dir, ignore_errors=True)


def open_scratch(conn: Connection, jobs: int) -> Scratch | None:
    """Scratch files for a parallel run on ``conn`` (not yet in a transaction), or None when the
    passes will run on the main connection."""
    if not ENABLED or WORKERS < 2 or jobs < 2 or conn.dialect.name != "sqlite" or conn.in_transaction():
        return None
    if _main_file(conn) is None:
        return None
    return Scratch(conn, min(WORKERS, jobs))


class Passes:
    """Worker connections (one per scratch file) running ``jobs`` in threads."""

    def __init__(self, conn: Connection, scratch: Scratch) -> None:
        self.scratch = scratch
        path = _main_file(conn)
        assert path is not None
        self.cons: list[sqlite3.Connection] = []
        for file in scratch.files:
            con = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            self.cons.append(con)
            con.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            con.execute("ATTACH DATABASE ? AS w", (file,))
            con.execute("PRAGMA w.journal_mode = OFF")
            con.execute("PRAGMA w.synchronous = OFF")
        self.before = _snapshot(self.cons[0])
        for con in self.cons[1:]:
            _snapshot(con)
        self.pool: ThreadPoolExecutor | None = None
        self.futures: list[Future[None]] = []
        self.where: dict[str, int] = {}  # job name -> scratch index holding its tables

    def consistent(self, main_read: Callable[[], object]) -> bool:
        """Establish the main connection's snapshot (``main_read``), then check that nobody
        committed since the probe's first snapshot (see the module docstring)."""
        main_read()
        probe = self.cons[0]
        probe.execute("COMMIT")
        return _snapshot(probe) == self.before

    def start(self, jobs: list[Job]) -> None:
        queue = list(jobs)
        lock = threading.Lock()

        def work(k: int) -> None:
            con = self.cons[k]
            while True:
                with lock:
                    if not queue:
                        break
                    name, sqls = queue.pop(0)
                for sql in sqls:
                    con.execute(sql)
                with lock:
                    self.where[name] = k
            con.execute("COMMIT")

        self.pool = ThreadPoolExecutor(len(self.cons), thread_name_prefix="segsync-pass")
        self.futures = [self.pool.submit(work, k) for k in range(len(self.cons))]

    def wait(self) -> dict[str, str]:
        """Job name -> the schema (attached scratch database) holding its tables."""
        for f in self.futures:
            f.result()
        return {name: f"segsync_s{k}" for name, k in self.where.items()}

    def close(self) -> None:
        if any(not f.done() for f in self.futures):
            for con in self.cons:
                con.interrupt()  # a failed run does not wait for the other passes
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        for con in self.cons:
            con.close()
        self.cons, self.futures, self.pool = [], [], None


def _snapshot(con: sqlite3.Connection) -> int:
    """Open a read transaction on ``con`` and return its data version."""
    con.execute("BEGIN")
    con.execute("SELECT 1 FROM main.sqlite_master LIMIT 1").fetchall()
    return int(con.execute("PRAGMA main.data_version").fetchone()[0])


def run_passes(conn: Connection, scratch: Scratch | None, first_read: Callable[[], object],
               jobs: Callable[[], list[Job]], meanwhile: Callable[[], object]) -> dict[str, str] | None:
    """The main connection's first read (``first_read``, which must come first: see the module
    docstring), then the ``jobs`` on the workers while the main connection does ``meanwhile``.
    Returns job name -> schema holding its tables, or None: run the passes on the main
    connection."""
    if scratch is None:
        first_read()
        return None
    passes = Passes(conn, scratch)
    try:
        if not passes.consistent(first_read):
            return None
        passes.start(jobs())
        meanwhile()
        return passes.wait()
    finally:
        passes.close()
