"""The single-flight lock of ``segsync run``: one holder at a time on SQLite (a file lock the
kernel drops when the holder dies, even by SIGKILL) and on PostgreSQL (an advisory lock per
schema); a second run gives up at once, or waits with ``--wait``."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from sync.cli import main
from sync.runlock import RunLocked, lock_path, single_flight
from sync.store.db import open_store

HOLD = """
import sys, time
from sync.store.db import open_store
from sync.runlock import single_flight
engine = open_store(sys.argv[1])
with single_flight(engine):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_holder_is_refused_until_the_first_releases(eval_engine: Engine) -> None:
    with single_flight(eval_engine):
        with pytest.raises(RunLocked) as e, single_flight(eval_engine):
            pass
        assert "another segsync run is in progress" in str(e.value)
    with single_flight(eval_engine):  # free again
        pass


def test_waiting_gets_the_lock_once_it_is_released(eval_engine: Engine) -> None:
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with single_flight(eval_engine):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(10)
    threading.Timer(0.3, release.set).start()
    started = time.monotonic()
    with single_flight(eval_engine, wait_s=10, poll_s=0.05):
        waited = time.monotonic() - started
    thread.join()
    assert 0.2 < waited < 10  # it waited for the holder, and got the lock before its own deadline


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    url = f"sqlite:///{tmp_path / 'lock.db'}"
    open_store(url).dispose()
    proc = subprocess.Popen([sys.executable, "-c", HOLD, url], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc, url
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    proc.stdout.close()


def test_the_lock_of_a_sigkilled_run_is_free_at_once(holder: tuple[subprocess.Popen[str], str]) -> None:
    proc, url = holder
    engine = open_store(url)
    path = lock_path(engine)
    assert path is not None and f'"pid": {proc.pid}' in path.read_text()
    with pytest.raises(RunLocked) as e, single_flight(engine):
        pass
    assert f"pid {proc.pid}" in str(e.value)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with single_flight(engine):
        pass
    engine.dispose()


def test_segsync_run_exits_1_while_another_run_holds_the_lock(
        holder: tuple[subprocess.Popen[str], str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[store]\nurl = "sqlite:///lock.db"\n[attributes]\nplan = "string"\n'
                      '[segments.pro]\nrule = \'plan == "pro"\'\n')
    assert main(["--config", str(config), "run"]) == 1
    err = capsys.readouterr().err
    assert "another segsync run is in progress" in err and "Traceback" not in err


def test_in_memory_stores_lock_within_the_process() -> None:
    engine = open_store("sqlite:///:memory:")
    with single_flight(engine), pytest.raises(RunLocked), single_flight(engine):
        pass
    engine.dispose()
