"""SQLite: the per-type trait passes in worker processes, in parallel.

On a SQLite file store the whole-population run is CPU-bound in one connection, while the
per-type passes (one ``GROUP BY contact_id`` per event type, see :mod:`sync.evaluate.traits`)
are independent of each other. :class:`Passes` runs them in :data:`WORKERS` worker *processes*
(:mod:`sync.evaluate._passworker`, a stdlib-only script), while the main connection goes on
with work that does not need them (the open memberships). Processes, not threads: two SQLite
connections of one process share its allocator and mutexes, and measured on the 2-core machine
two passes in threads took 30 % more CPU each than alone, in processes about the same
(``bench/RESULTS.md``).

* Each worker writes its tables into its own *scratch* database file (journal off), which the
  main connection ATTACHes as ``segsync_s<k>`` before its transaction begins (SQLite cannot
  attach inside a transaction) and detaches after it ends. The run's transaction is therefore
  a deferred ``BEGIN`` (``BEGIN IMMEDIATE`` would lock the scratch files too); a persisting run
  takes the write lock with its first statement instead (:func:`sync.evaluate.ranks.bump_version`).
* Every worker must read the snapshot the main connection reads. A *probe* connection of this
  process opens a read transaction and reads ``PRAGMA data_version`` before the workers start;
  each worker opens its read transaction before it says it is ready; then the main connection
  takes its snapshot, and the probe reads ``data_version`` again in a new transaction. Equal
  values mean no other connection committed in between, so all snapshots are the same.
  Otherwise (or on a store that is not a file, or one with fewer than :data:`MIN_EVENTS`
  events, where starting the workers costs more than it saves) the passes run on the main
  connection, one after the other.
* A dispatcher thread hands the next job to whichever worker finished, so the workers stay busy
  while the main connection works; a failed statement is raised in the caller as
  ``sqlite3.OperationalError`` with the worker's message, and the workers are stopped.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection

LOG = logging.getLogger("segsync.evaluate")
WORKERS = min(4, os.cpu_count() or 1)
ENABLED = True  # tests switch it off to compare with the sequential passes
CACHE_KIB = 256_000
MIN_EVENTS = 200_000  # smaller stores run the passes on the main connection (tests lower it)

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
    raw: Any = conn.connection.driver_connection
    newest = raw.execute("SELECT max(id) FROM events").fetchone()[0]  # O(log n): the rowid
    if (newest or 0) < MIN_EVENTS:
        return None  # starting the workers would cost more than the passes
    return Scratch(conn, min(WORKERS, jobs))


WORKER_SCRIPT = str(Path(__file__).with_name("_passworker.py"))


class _Worker:
    def __init__(self, db: str, scratch: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-s", WORKER_SCRIPT, db, scratch, str(CACHE_KIB)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        self.job: str | None = None

    @property
    def out(self) -> IO[str]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def read(self) -> dict[str, Any]:
        line = self.out.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr is not None else ""
            raise sqlite3.OperationalError(f"evaluation worker ended: {err.strip()[-500:] or 'no output'}")
        msg: dict[str, Any] = json.loads(line)
        return msg


class Passes:
    """Worker processes (one per scratch file) running ``jobs``."""

    def __init__(self, conn: Connection, scratch: Scratch) -> None:
        self.scratch = scratch
        path = _main_file(conn)
        assert path is not None
        self.probe = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self.before = _snapshot(self.probe)
        self.workers: list[_Worker] = []
        self.where: dict[str, int] = {}  # job name -> scratch index holding its tables
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        try:
            self.workers = [_Worker(path, file) for file in scratch.files]
            for w in self.workers:
                w.read()  # {"ready": ...}: its snapshot is taken
        except BaseException:
            self.close()
            raise

    def consistent(self, main_read: Callable[[], object]) -> bool:
        """Establish the main connection's snapshot (``main_read``), then check that nobody
        committed since the probe's first snapshot (see the module docstring)."""
        main_read()
        self.probe.execute("COMMIT")
        return _snapshot(self.probe) == self.before

    def start(self, jobs: list[Job]) -> None:
        self.thread = threading.Thread(target=self._dispatch, args=(list(jobs),),
                                       name="segsync-passes", daemon=True)
        self.thread.start()

    def _dispatch(self, queue: list[Job]) -> None:
        sel = selectors.DefaultSelector()
        try:
            busy = 0
            for k, w in enumerate(self.workers):
                if queue:
                    name, sqls = queue.pop(0)
                    w.job = name
                    w.send({"job": name, "sqls": sqls})
                    sel.register(w.out, selectors.EVENT_READ, k)
                    busy += 1
            while busy:
                for key, _ in sel.select():
                    k = int(key.data)
                    w = self.workers[k]
                    msg = w.read()
                    if "error" in msg:
                        raise sqlite3.OperationalError(str(msg["message"]))
                    self.where[str(msg["done"])] = k
                    LOG.debug("pass %s: %.2f s in worker %d", msg["done"], msg.get("seconds", 0), k)
                    if queue:
                        name, sqls = queue.pop(0)
                        w.job = name
                        w.send({"job": name, "sqls": sqls})
                    else:
                        w.job = None
                        sel.unregister(w.out)
                        busy -= 1
            for w in self.workers:
                w.send({"exit": True})
            for w in self.workers:
                w.proc.wait(timeout=60)
        except BaseException as e:  # noqa: BLE001 - raised by wait() in the caller's thread
            self.error = e
        finally:
            sel.close()

    def wait(self) -> dict[str, str]:
        """Job name -> the schema (attached scratch database) holding its tables."""
        if self.thread is not None:
            self.thread.join()
        if self.error is not None:
            raise self.error
        return {name: f"segsync_s{k}" for name, k in self.where.items()}

    def close(self) -> None:
        for w in self.workers:
            if w.proc.poll() is None:
                w.proc.kill()  # a failed run does not wait for the other passes
            w.proc.wait()
            for f in (w.proc.stdin, w.proc.stdout, w.proc.stderr):
                if f is not None:
                    f.close()
        if self.thread is not None:
            self.thread.join()
        self.probe.close()
        self.workers, self.thread = [], None


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
