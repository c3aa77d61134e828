"""SIGKILL of ``segsync serve`` after the acknowledgement and before processing: after a
restart the delivery is applied exactly once (real uvicorn on an ephemeral port)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from sync.store import repo, schema
from sync.store.db import open_store
from sync.store.tx import begin_write
from tests.service_support import CONFIG, ENV, hs_headers, prop_change, stored


class Serve:
    def __init__(self, config: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sync", "--config", str(config), "serve", "--port", "0", *extra],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            env={**os.environ, **ENV})
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.url = self.wait_for(r"listening on (http://\S+)").group(1)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                assert self.proc.poll() is None, f"serve exited: {''.join(self.log)}"
                continue
            self.log.append(line)
            if m := re.search(pattern, line):
                return m
        raise AssertionError(f"no {pattern!r} in: {''.join(self.log)}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(timeout=20)
        self.reader.join(timeout=5)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        while not self.lines.empty():
            self.log.append(self.lines.get())


def _front_end_exits(uri: str, body: bytes, now: int, timeout: float = 10.0) -> None:
    """The front end process of a killed ``serve`` stops answering (it follows its parent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.post(uri, content=body, headers=hs_headers(body, ts=now, uri=uri), timeout=2)
        except httpx.TransportError:
            return
        time.sleep(0.2)
    raise AssertionError(f"{uri} still answers {timeout:.0f} s after serve was killed")


@pytest.mark.slow
def test_sigkill_between_ack_and_processing(tmp_path: Path) -> None:
    config = tmp_path / "segsync.toml"
    config.write_text('[store]\nurl = "sqlite:///serve.db"\n' + CONFIG)
    engine = open_store(f"sqlite:///{tmp_path / 'serve.db'}")
    with begin_write(engine) as conn:
        cid = repo.contact_ids(conn, [("ann@example.com", None)], 0)[0]
        assert cid is not None
        repo.upsert_identity(conn, "hubspot", "501", cid, 0, email="ann@example.com")

    first = Serve(config, "--worker-delay", "120")
    now = time.time_ns() // 1_000_000
    body = json.dumps([prop_change(501, "plan", "pro", occurred=now)]).encode()
    uri = f"{first.url}/webhooks/hubspot"
    r = httpx.post(uri, content=body, headers=hs_headers(body, ts=now, uri=uri), timeout=10)
    assert r.status_code == 200 and r.json() == {"received": 1, "new": 1}
    first.stop(signal.SIGKILL)
    assert stored(engine) == 1  # acknowledged = committed (to the acknowledgement spool)
    with engine.connect() as conn:
        assert conn.execute(select(schema.contacts.c.attributes)).scalar_one() == {}
    _front_end_exits(uri, body, now)

    second = Serve(config)
    second.wait_for(r"applied inbox items 1-1: 1 hubspot applied")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(select(schema.inbox.c.status)).scalar_one() == "done":
                break
        time.sleep(0.1)
    # a redelivery after the restart (HubSpot retries what it thinks failed) changes nothing
    retry = httpx.post(f"{second.url}/webhooks/hubspot", content=body,
                       headers=hs_headers(body, ts=now, uri=f"{second.url}/webhooks/hubspot"), timeout=10)
    assert retry.json() == {"received": 1, "new": 0}
    second.stop()

    third = Serve(config)
    time.sleep(1.0)
    third.stop()
    applied = [line for run in (first, second, third) for line in run.log if "applied inbox items" in line]
    assert len(applied) == 1, applied
    with engine.connect() as conn:
        inbox = conn.execute(select(schema.inbox.c.status, schema.inbox.c.outcome)).all()
        assert inbox == [("done", "applied")]
        assert conn.execute(select(schema.contacts.c.attributes)).scalar_one() == {"plan": "pro"}
        memberships = conn.execute(select(schema.memberships.c.segment, schema.memberships.c.exited_at)).all()
    assert memberships == [("pro", None)]  # re-evaluated once, by the default hook (sync.evaluate)
    engine.dispose()
