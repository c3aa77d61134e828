"""When ``segsync serve`` runs the job: an interval or a cron expression (``[schedule]``).

::

    schedule = from_config(project.config.schedule)   # Interval(15 min) by default
    schedule.next_after(ms) -> ms                      # the first due instant after ms
    Scheduler(schedule, job).run(stop)                 # until stop is set

``[schedule] every = "15m"`` runs at that interval, measured from the start of each run;
``cron = "*/15 * * * *"`` at the instants the expression names, in ``timezone`` (default UTC;
``croniter`` computes them, daylight-saving changes included). A run that takes longer than
its interval is not followed by a burst of catch-up runs: the next one starts at the first due
instant after it ended. ``run_at_start`` (default true) runs once as soon as the service starts.

The scheduler survives a failed run: a :class:`~mapping.errors.SegsyncError` (a provider or
store failure, a bad secret, another run holding the lock) or a database error is logged and
the next run is scheduled as usual; anything else (a bug) ends ``serve``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from croniter import croniter
from sqlalchemy.exc import SQLAlchemyError

from mapping.errors import SegsyncError
from mapping.models import ScheduleConfig, parse_duration

__all__ = ["Cron", "Interval", "Schedule", "Scheduler", "from_config"]

LOG = logging.getLogger("segsync.schedule")
DEFAULT_EVERY = "15m"


class Schedule(Protocol):
    def next_after(self, ms: int) -> int:
        """The first due instant (epoch ms) strictly after ``ms``."""
        ...

    def describe(self) -> str:
        ...


@dataclass(frozen=True)
class Interval:
    every_ms: int

    def next_after(self, ms: int) -> int:
        return ms + self.every_ms

    def describe(self) -> str:
        return f"every {self.every_ms / 1000:g} s"


@dataclass(frozen=True)
class Cron:
    expression: str
    timezone: str = "UTC"

    def next_after(self, ms: int) -> int:
        start = datetime.fromtimestamp(ms / 1000, ZoneInfo(self.timezone))
        due = croniter(self.expression, start).get_next(datetime)
        return int(due.timestamp() * 1000)

    def describe(self) -> str:
        return f"cron {self.expression!r} ({self.timezone})"


def from_config(config: ScheduleConfig) -> Schedule:
    if config.cron is not None:
        return Cron(config.cron, config.timezone)
    return Interval(parse_duration(config.every or DEFAULT_EVERY))


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Scheduler:
    """Runs ``job`` on ``schedule`` until :meth:`stop` (or the ``stop`` event) is set."""

    def __init__(self, schedule: Schedule, job: Callable[[], object], *, run_at_start: bool = True,
                 clock: Callable[[], int] = _wall_ms, stop: threading.Event | None = None,
                 wait: Callable[[float], bool] | None = None) -> None:
        """``wait(seconds)`` sleeps until the time passed or the scheduler was stopped (True);
        tests inject a clock and a wait that advances it."""
        self.schedule = schedule
        self.job = job
        self.run_at_start = run_at_start
        self.clock = clock
        self.stopping = stop or threading.Event()
        self.wait = wait or self.stopping.wait
        self.runs = 0
        self.failures = 0

    def stop(self) -> None:
        self.stopping.set()

    def next_due(self, started: int, now: int) -> int:
        """After a run that started at ``started``, and it is ``now``: when the next one is due."""
        due = self.schedule.next_after(started)
        return due if due > now else self.schedule.next_after(now)

    def run(self) -> None:
        """Block, running the job when due, until stopped."""
        now = self.clock()
        due = now if self.run_at_start else self.schedule.next_after(now)
        LOG.info("scheduler: %s; first run at %s", self.schedule.describe(), _iso(due))
        while not self.stopping.is_set():
            wait_ms = due - self.clock()
            if wait_ms > 0:
                if self.wait(min(wait_ms / 1000, 3600.0)):
                    return
                continue
            started = self.clock()
            self._run_once()
            due = self.next_due(started, self.clock())
            LOG.info("scheduler: next run at %s", _iso(due))

    def _run_once(self) -> None:
        self.runs += 1
        try:
            self.job()
        except (SegsyncError, SQLAlchemyError) as e:
            self.failures += 1
            LOG.error("scheduled run failed: %s: %s (the next run will try again)", type(e).__name__,
                      str(e).splitlines()[0] if str(e) else "")


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
