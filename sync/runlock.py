"""Single flight: at most one run pulls, plans and pushes at a time, across processes.

::

    with single_flight(engine, wait_s=0):   # raises RunLocked when another run holds it
        ...

* SQLite file store: an exclusive ``flock`` on ``<store file>.run.lock``. The kernel drops it
  when the holder exits however it exits (a SIGKILLed run never leaves a stale lock); the file
  holds the holder's pid and start time, only for the message of :class:`RunLocked`.
* PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) keyed by the store's schema,
  held on a dedicated connection for the whole run; the server drops it when that session ends.
* In-memory SQLite: a lock of this process.

At its start a run releases only the outbox claims of runs (a crashed holder of this lock) and
claims whose lease ran out (:func:`sync.outbox.release` with ``stale_of``), so the real-time
flusher of ``serve`` may push concurrently without taking this lock: its live claims stay its own.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from sqlalchemy import Engine, text

from mapping.errors import SegsyncError

__all__ = ["RunLocked", "lock_path", "single_flight"]

_MEMORY_LOCKS: dict[str, threading.Lock] = {}
_MEMORY_GUARD = threading.Lock()


class RunLocked(SegsyncError):
    """Another run holds the single-flight lock; try again later (or ``--wait``)."""

    exit_code = 1


def lock_path(engine: Engine) -> Path | None:
    """The lock file of an SQLite file store (None for PostgreSQL and in-memory SQLite)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" \
            or database.startswith("file:"):
        return None
    return Path(f"{database}.run.lock")


def _holder(fh: IO[str]) -> str:
    fh.seek(0)
    try:
        info = json.loads(fh.read() or "{}")
    except ValueError:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info.get("since", 0)))
    return f"pid {info.get('pid', '?')}, since {since}"


def _wait(try_once: Callable[[], bool], wait_s: float, poll_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while not try_once():
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
    return True


@contextmanager
def _file_lock(path: Path, wait_s: float, poll_s: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as fh:
        def try_once() -> bool:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        if not _wait(try_once, wait_s, poll_s):
            raise RunLocked(f"another segsync run is in progress ({_holder(fh)}; lock {path}): "
                            "this one did nothing")
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({"pid": os.getpid(), "since": int(time.time())}))
            fh.flush()
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _pg_key(schema: str) -> int:
    digest = hashlib.sha256(f"segsync.run\x00{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def _pg_lock(engine: Engine, wait_s: float, poll_s: float) -> Iterator[None]:
    with engine.connect() as conn:
        schema = str(conn.execute(text("SELECT current_schema()")).scalar() or "public")
        key = _pg_key(schema)

        def try_once() -> bool:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            conn.commit()
            return got

        if not _wait(try_once, wait_s, poll_s):
            raise RunLocked(f"another segsync run is in progress (PostgreSQL advisory lock of "
                            f"schema {schema!r} is held): this one did nothing")
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()


@contextmanager
def _memory_lock(engine: Engine, wait_s: float) -> Iterator[None]:
    with _MEMORY_GUARD:
        lock = _MEMORY_LOCKS.setdefault(str(engine.url), threading.Lock())
    acquired = lock.acquire(timeout=wait_s) if wait_s > 0 else lock.acquire(blocking=False)
    if not acquired:
        raise RunLocked("another segsync run of this process is in progress: this one did nothing")
    try:
        yield
    finally:
        lock.release()


@contextmanager
def single_flight(engine: Engine, *, wait_s: float = 0.0, poll_s: float = 0.2) -> Iterator[None]:
    """Hold the store's run lock for the ``with`` block; wait up to ``wait_s`` seconds for it,
    then raise :class:`RunLocked`."""
    if engine.dialect.name == "postgresql":
        with _pg_lock(engine, wait_s, poll_s):
            yield
        return
    path = lock_path(engine)
    if path is None:
        with _memory_lock(engine, wait_s):
            yield
        return
    with _file_lock(path, wait_s, poll_s):
        yield
