"""The HTTP front end of ``segsync serve`` in a process of its own, and its supervisor.

Acknowledging a webhook is verify, validate, commit, answer: little CPU, but it must not wait.
Applying items and re-evaluating contacts (the worker, the real-time hook, the scheduler) is
CPU-heavy Python. In one process they share one GIL, and an acknowledgement waits up to a
switch interval (5 ms) for it at every step, so its tail latency follows the worker's load. So
:func:`sync.service.app.serve` runs:

* **the main process** (the caller's): the inbox worker with the caller's ``hook`` (and
  whatever else the caller runs: ticks, flusher, scheduler), and :class:`Supervisor`, which
  starts the front end, restarts it if it dies and stops it on SIGTERM / SIGINT;
* **the front end** (``python -m sync.service.front``): uvicorn on the listening socket the
  main process bound, the routes of :func:`sync.service.app.front_app`, and the group committer
  (on an SQLite store it writes to the acknowledgement spool, :mod:`sync.service.spool`, so it
  never waits for the store's write lock either).

Between the two: the spec (pickled on the child's stdin), a datagram socket on which the front
end wakes the worker after each commit, and a stream on which it asks the main process for its
metrics (``GET /metrics`` shows both processes' samples). The front end exits when the main
process disappears (even after SIGKILL): what it acknowledged is committed, the rest was not
acknowledged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

from mapping.errors import SegsyncError
from mapping.project import Project
from sync.service import metrics

__all__ = ["FrontSpec", "Supervisor", "main"]

LOG = logging.getLogger("segsync.service.front")
_RESTARTS = 5  # at most this many restarts ...
_RESTART_WINDOW_S = 60.0  # ... within this long, then serve gives up


@dataclass(frozen=True)
class FrontSpec:
    """What the front end process needs (the main process pickles it onto its stdin)."""

    project: Project
    store_url: str  # rendered with its password: the child opens the same store
    settings: object  # sync.service.app.ServiceSettings (typed loosely: no import cycle)
    listen_fd: int
    wake_fd: int
    metrics_fd: int
    log_level: str


class Supervisor:
    """Starts the front end process and keeps it running until :meth:`stop`."""

    def __init__(self, spec: FrontSpec, listen: socket.socket, on_wake: Callable[[], None]) -> None:
        self.listen = listen
        self.on_wake = on_wake
        wake_parent, wake_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        metrics_parent, metrics_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._child_ends = (wake_child, metrics_child)
        self.spec = FrontSpec(spec.project, spec.store_url, spec.settings, listen.fileno(),
                              wake_child.fileno(), metrics_child.fileno(), spec.log_level)
        wake_parent.settimeout(0.5)
        self._wake = wake_parent
        self._metrics = Connection(metrics_parent.detach())
        self._stopping = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._starts: list[float] = []
        self._threads = [
            threading.Thread(target=self._relay_wakes, name="segsync-front-wakes", daemon=True),
            threading.Thread(target=self._serve_metrics, name="segsync-front-metrics", daemon=True)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        self._spawn()

    def _spawn(self) -> None:
        self._starts = [t for t in self._starts if time.monotonic() - t < _RESTART_WINDOW_S]
        if len(self._starts) > _RESTARTS:
            raise SegsyncError(f"the HTTP front end exited {len(self._starts)} times within "
                               f"{_RESTART_WINDOW_S:.0f} s; see its messages above")
        self._starts.append(time.monotonic())
        fds = (self.spec.listen_fd, self.spec.wake_fd, self.spec.metrics_fd)
        proc = subprocess.Popen([sys.executable, "-m", "sync.service.front"], stdin=subprocess.PIPE,
                                pass_fds=fds)
        assert proc.stdin is not None
        proc.stdin.write(pickle.dumps(self.spec))
        proc.stdin.close()
        self._proc = proc

    def watch(self, stop: threading.Event, interval_s: float = 0.5) -> None:
        """Block until ``stop`` is set, restarting the front end whenever it exits."""
        while not stop.wait(interval_s):
            proc = self._proc
            if proc is not None and proc.poll() is not None:
                LOG.error("the HTTP front end exited (status %s); restarting it", proc.returncode)
                self._spawn()

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the front end (uvicorn finishes the requests in flight), then wait."""
        self._stopping.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                LOG.error("the HTTP front end did not stop in %.0f s; killing it", timeout_s)
                proc.kill()
                proc.wait()
        for thread in self._threads:
            thread.join(2.0)
        for end in self._child_ends:
            end.close()
        self._wake.close()
        self._metrics.close()

    def _relay_wakes(self) -> None:
        while not self._stopping.is_set():
            try:
                if self._wake.recv(64):
                    self.on_wake()
            except TimeoutError:
                continue
            except OSError:
                return

    def _serve_metrics(self) -> None:
        while not self._stopping.is_set():
            try:
                if not self._metrics.poll(0.5):
                    continue
                ticket = self._metrics.recv_bytes()
                self._metrics.send_bytes(ticket + b"\n" + json.dumps(metrics.REGISTRY.snapshot()).encode())
            except (OSError, EOFError):
                return


class MainMetrics:
    """The front end's side of the metrics stream: the main process's snapshot, or nothing
    when it does not answer within ``timeout_s``."""

    def __init__(self, fd: int, timeout_s: float = 2.0) -> None:
        self._conn = Connection(fd)
        self._lock = threading.Lock()
        self._ticket = 0
        self.timeout_s = timeout_s

    def __call__(self) -> dict[str, list[str]]:
        with self._lock:
            self._ticket += 1
            ticket = str(self._ticket).encode()
            try:
                self._conn.send_bytes(ticket)
                deadline = time.monotonic() + self.timeout_s
                while self._conn.poll(max(0.0, deadline - time.monotonic())):
                    answer, _, body = self._conn.recv_bytes().partition(b"\n")
                    if answer == ticket:  # an answer to an earlier, timed-out request is skipped
                        snapshot: dict[str, list[str]] = json.loads(body)
                        return snapshot
            except (OSError, EOFError) as e:
                LOG.warning("the main process's metrics are unavailable: %s", e)
        return {}


def _exit_with_parent(parent: int) -> None:
    """SIGTERM this process (uvicorn stops gracefully) once the main process is gone."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="segsync-front-parent", daemon=True).start()


def main() -> None:
    """The front end process: read the spec from stdin, serve until SIGTERM."""
    import uvicorn

    from sync.service.app import ServiceSettings, front_app
    from sync.store.db import open_store

    spec: FrontSpec = pickle.loads(sys.stdin.buffer.read())
    _exit_with_parent(os.getppid())
    logging.basicConfig(level=getattr(logging, spec.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    assert isinstance(spec.settings, ServiceSettings)
    wake = socket.socket(fileno=spec.wake_fd)
    wake.setblocking(False)

    def notify() -> None:
        # OSError: the buffer is full (the worker is awake anyway) or the main process is gone
        with contextlib.suppress(OSError):
            wake.send(b"w")

    listen = socket.socket(fileno=spec.listen_fd)
    engine = open_store(spec.store_url, migrate=False)
    app = front_app(engine, spec.project, spec.settings, notify=notify,
                    main_metrics=MainMetrics(spec.metrics_fd))
    # loop / http "auto": uvloop and httptools when installed (they are dependencies)
    server = uvicorn.Server(uvicorn.Config(app, log_level=spec.log_level, access_log=False,
                                           timeout_graceful_shutdown=5, loop="auto", http="auto"))
    try:
        server.run(sockets=[listen])
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
