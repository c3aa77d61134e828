"""The schedule of ``segsync serve``: intervals, cron expressions in a time zone, the scheduler
loop (first run, no catch-up bursts, surviving a failed run, stopping), ``[schedule]`` checks."""

from __future__ import annotations

from datetime import datetime

import pytest

from mapping.config import load_project_text
from mapping.errors import ConfigError, SegsyncError
from mapping.models import ScheduleConfig
from sync.schedule import Cron, Interval, Scheduler, from_config


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


@pytest.mark.parametrize(("config", "now", "due"), [
    (ScheduleConfig(), "2025-03-01T10:07:00+00:00", "2025-03-01T10:22:00+00:00"),
    (ScheduleConfig(every="1h"), "2025-03-01T10:07:00+00:00", "2025-03-01T11:07:00+00:00"),
    (ScheduleConfig(cron="*/15 * * * *"), "2025-03-01T10:07:00+00:00", "2025-03-01T10:15:00+00:00"),
    (ScheduleConfig(cron="*/15 * * * *"), "2025-03-01T10:15:00+00:00", "2025-03-01T10:30:00+00:00"),
    # 06:00 in Berlin: UTC+1 in winter, UTC+2 after the switch of 2025-03-30
    (ScheduleConfig(cron="0 6 * * *", timezone="Europe/Berlin"), "2025-03-01T12:00:00+00:00",
     "2025-03-02T05:00:00+00:00"),
    (ScheduleConfig(cron="0 6 * * *", timezone="Europe/Berlin"), "2025-03-30T12:00:00+00:00",
     "2025-03-31T04:00:00+00:00"),
    (ScheduleConfig(cron="30 9 * * 1-5"), "2025-03-01T12:00:00+00:00", "2025-03-03T09:30:00+00:00"),
])
def test_next_due(config: ScheduleConfig, now: str, due: str) -> None:
    assert from_config(config).next_after(ms(now)) == ms(due)


@pytest.mark.parametrize(("toml", "message"), [
    ('every = "15m"\ncron = "* * * * *"', "either every or cron"),
    ('cron = "61 * * * *"', "is not a 5-field cron expression"),
    ('cron = "* * * * * *"', "is not a 5-field cron expression"),
    ('timezone = "Mars/Olympus"', "is not a known time zone"),
    ('every = "500ms"', "at least 1s"),
    ('every = "soon"', "schedule.every"),
])
def test_bad_schedules_are_config_errors(toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_project_text(f"[schedule]\n{toml}\n", "s.toml")
    assert message in str(e.value)


class Clock:
    """A fake wall clock; ``wait`` advances it and stops the scheduler after ``runs`` jobs."""

    def __init__(self, start: int) -> None:
        self.now = start
        self.waits: list[float] = []

    def __call__(self) -> int:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += int(seconds * 1000)
        return False


def test_scheduler_runs_at_start_then_on_the_grid_without_catch_up_bursts() -> None:
    clock = Clock(ms("2025-03-01T10:00:00+00:00"))
    started: list[int] = []
    durations = iter([5_000, 40 * 60_000, 1_000, 1_000])  # the second run overruns two slots

    def job() -> None:
        started.append(clock.now)
        clock.now += next(durations)
        if len(started) == 4:
            scheduler.stop()

    scheduler = Scheduler(Interval(15 * 60_000), job, clock=clock, wait=clock.wait)
    scheduler.run()
    t0 = ms("2025-03-01T10:00:00+00:00")
    minute = 60_000
    assert [s - t0 for s in started] == [0, 15 * minute, (15 + 40 + 15) * minute, (15 + 40 + 30) * minute]


def test_scheduler_without_a_run_at_start_waits_for_the_first_cron_slot() -> None:
    clock = Clock(ms("2025-03-01T10:07:00+00:00"))
    started: list[int] = []

    def job() -> None:
        started.append(clock.now)
        scheduler.stop()

    scheduler = Scheduler(Cron("*/15 * * * *"), job, run_at_start=False, clock=clock, wait=clock.wait)
    scheduler.run()
    assert started == [ms("2025-03-01T10:15:00+00:00")]


def test_a_failed_run_is_logged_and_the_next_one_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(0)
    outcomes: list[str] = []

    def job() -> None:
        outcomes.append("run")
        if len(outcomes) == 1:
            raise SegsyncError("the provider is down")
        scheduler.stop()

    scheduler = Scheduler(Interval(60_000), job, clock=clock, wait=clock.wait)
    scheduler.run()
    assert outcomes == ["run", "run"] and scheduler.failures == 1
    assert "scheduled run failed: SegsyncError: the provider is down" in caplog.text


def test_a_bug_in_the_job_ends_the_scheduler() -> None:
    def job() -> None:
        raise ZeroDivisionError

    scheduler = Scheduler(Interval(60_000), job, clock=Clock(0), wait=Clock(0).wait)
    with pytest.raises(ZeroDivisionError):
        scheduler.run()


def test_stop_ends_the_wait() -> None:
    scheduler = Scheduler(Interval(3_600_000), lambda: None, run_at_start=False)
    scheduler.stop()
    scheduler.run()  # returns at once instead of waiting an hour
    assert scheduler.runs == 0
