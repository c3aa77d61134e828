"""The micro-batching executor loop of ``serve``: sends what the outbox holds, soon but in batches.

::

    flusher = Flusher(engine, connectors, linger_ms=200, batch_size=100)
    flusher.start(); flusher.signal(n_new_changes); ...; flusher.stop()

Whoever commits changes to the outbox calls :meth:`Flusher.signal` with how many. The loop
waits for the first signal, then keeps collecting until ``batch_size`` changes are waiting or
``linger_ms`` has passed since that first signal, whichever comes first, and then sends
everything due (:func:`sync.executor.push_pending`: per destination, per operation, at the
APIs' batch maxima). So a burst of webhooks becomes a few batch requests, and a lone change goes
out ``linger_ms`` after it was planned. Every ``poll_ms`` without signals it sends anyway, which
picks up retries whose back-off ran out and items left over from before a restart.

Each destination has its own lane (thread, linger and batch count), so a slow destination
(Klaviyo's per-profile writes under its rate limits) never holds back another's pushes. One
flush at a time per lane; a signal that arrives during a flush starts the lane's next linger.
Errors of the store are logged and the loop carries on (the outbox keeps the work); connector
errors are handled per destination by the executor.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from connectors.base import Connector
from mapping.errors import SegsyncError
from sync.executor import PushSummary, push_pending, wall_ms
from sync.service import metrics

LOG = logging.getLogger("segsync.realtime.flusher")


class _Lane:
    """The linger state of one destination."""

    def __init__(self) -> None:
        self.waiting = 0  # changes signalled since this lane's last flush started
        self.first: float | None = None  # monotonic time of the first of them


class Flusher:
    """The micro-batching loop (see the module docstring), one lane (thread) per destination,
    so a slow destination never delays another's pushes. ``clock`` (epoch ms) is the
    executor's notion of now (outbox due times); the linger is measured monotonically."""

    def __init__(self, engine: Engine, connectors: Mapping[str, Connector], *, linger_ms: int = 200,
                 batch_size: int = 100, poll_ms: int = 5_000, max_attempts: int = 5, trigger: str = "webhook",
                 clock: Callable[[], int] = wall_ms,
                 on_flush: Callable[[PushSummary, float], None] | None = None) -> None:
        self.engine = engine
        self.connectors = dict(connectors)
        self.linger_s = linger_ms / 1000
        self.batch_size = batch_size
        self.poll_s = poll_ms / 1000
        self.max_attempts = max_attempts
        self.trigger = trigger
        self.clock = clock
        self.on_flush = on_flush
        self.flushes = 0
        self._cond = threading.Condition()
        self._lanes = {name: _Lane() for name in self.connectors}
        self._stop = False
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ producer side

    def signal(self, changes: int = 1) -> None:
        """``changes`` new outbox items were committed (for any destination)."""
        if changes <= 0:
            return
        with self._cond:
            now = time.monotonic()
            for lane in self._lanes.values():
                lane.waiting += changes
                if lane.first is None:
                    lane.first = now
            self._cond.notify_all()

    # ------------------------------------------------------------------ the loops

    def start(self) -> None:
        for name in self.connectors:
            thread = threading.Thread(target=self._loop, args=(name,), name=f"segsync-flusher-{name}",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after a last flush of what was signalled."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    def _next(self, lane: _Lane) -> bool:
        """Wait until a flush of ``lane`` is due; False when stopping with nothing signalled."""
        with self._cond:
            idle_until = time.monotonic() + self.poll_s
            while lane.first is None and not self._stop:
                left = idle_until - time.monotonic()
                if left <= 0:
                    return True  # the periodic flush: retries whose back-off ran out
                self._cond.wait(left)
            while lane.first is not None and not self._stop and lane.waiting < self.batch_size:
                left = lane.first + self.linger_s - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._stop and lane.first is None:
                return False
            lane.waiting, lane.first = 0, None
            return True

    def _loop(self, name: str) -> None:
        self.flush([name])  # whatever a previous process left
        lane = self._lanes[name]
        while True:
            stopping = self._stop
            if not self._next(lane):
                return
            self.flush([name])
            if stopping:
                return

    def flush(self, destinations: Sequence[str] | None = None) -> PushSummary | None:
        """Send everything due now, for ``destinations`` (default all; tests call this directly)."""
        started = time.perf_counter()
        chosen = {n: c for n, c in self.connectors.items() if destinations is None or n in destinations}
        try:
            summary = push_pending(self.engine, chosen, None, trigger=self.trigger,
                                   max_attempts=self.max_attempts, clock=self.clock)
        except (SegsyncError, SQLAlchemyError) as e:
            LOG.error("sending the outbox failed (kept for the next flush): %s", e)
            return None
        with self._cond:
            self.flushes += 1
        for dest, d in summary.destinations.items():
            for status, n in (("applied", d.applied), ("failed", d.failed), ("dead", d.dead)):
                if n:
                    metrics.PUSHES.inc(n, destination=dest, status=status)
        if summary.applied or summary.failed or summary.dead:
            LOG.info("flushed: %s", summary.to_json())
        if self.on_flush is not None:
            self.on_flush(summary, time.perf_counter() - started)
        return summary
