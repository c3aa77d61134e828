"""Crash safety: ``segsync run`` (a subprocess) is SIGKILLed at >= 20 seeded points against a
sandbox running in another process (``segsync sandbox``): during start-up, pull, evaluation,
planning and in the middle of push batches (write requests are slowed down, so a kill lands
while a batch is on the wire, often after the provider applied it and before the answer). New
activity arrives between the runs. Afterwards one clean run brings every destination record to
its desired state, and the audit log shows each change applied once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from mapping.config import load_project
from sync.store.db import open_project_store
from tests.run_support import (
    ENV,
    assert_applied_once,
    config,
    expected_hubspot,
    expected_klaviyo,
    hubspot_state,
    klaviyo_list_ids,
    klaviyo_state,
    records,
    writes,
)

KILLS = 22
SLOW = ("slow=1:0.08s@contacts.batch.update,slow=1:0.08s@lists.memberships.*,"
        "slow=1:0.08s@update_profile,slow=1:0.08s@bulk_import_profiles,slow=1:0.08s@*_list")
HS_FIELDS = ("segsync_segments", "segsync_customer", "segsync_customer_since", "segsync_orders")
KL_FIELDS = ("segsync_segments", "segsync_orders")


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sync", "sandbox", "--contacts", "120", "--seed", "23", "--json",
         "--no-rate-limits", "--faults", SLOW],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        info: dict[str, Any] = json.loads(proc.stdout.readline())
        yield info
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_activity(hs: str, kl: str, rng: random.Random) -> None:
    """New orders and opens in Klaviyo, CRM stage changes in HubSpot."""
    requests.post(f"{kl}/_sandbox/klaviyo/activity", json={
        "events": 12, "metrics": ["Placed Order", "Opened Email"], "seed": rng.randrange(10**6)},
        timeout=30).raise_for_status()
    for rid in rng.sample(range(1, 100), 3):
        stage = rng.choice(["customer", "lead"])
        requests.patch(f"{hs}/crm/v3/objects/contacts/{rid}", json={"properties": {"lifecyclestage": stage}},
                       headers={"Authorization": "Bearer pat-sandbox"}, timeout=30)


def start_run(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "sync", "--config", str(path), "run"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **ENV})


def kill_at(proc: subprocess.Popen[str], point: tuple[str, float], urls: tuple[str, str],
            since: int) -> bool:
    """SIGKILL ``proc`` at ``point``: ("writes", n) once n write requests were answered,
    ("time", s) after s seconds. True when it was still running (really killed)."""
    kind, value = point
    deadline = time.monotonic() + 60
    if kind == "time":
        deadline = time.monotonic() + value
    while time.monotonic() < deadline and proc.poll() is None:
        if kind == "writes" and len(writes(urls[0], since)) + len(writes(urls[1], since)) >= value:
            break
        time.sleep(0.02 if kind == "writes" else 0.05)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=20)
    if proc.stderr is not None:
        proc.stderr.close()
    return alive


@pytest.mark.slow
def test_sigkill_anywhere_then_one_run_repairs_everything(sandbox: dict[str, Any], tmp_path: Path) -> None:
    hs, kl = sandbox["hubspot"]["url"], sandbox["klaviyo"]["url"]
    path = tmp_path / "run.toml"
    path.write_text(config(hs, kl, guard=100_000))
    rng = random.Random(20251122)
    killed, attempts, mid_push = 0, 0, 0
    while killed < KILLS:
        attempts += 1
        assert attempts <= 3 * KILLS, f"only {killed} of {attempts} runs were still running when killed"
        new_activity(hs, kl, rng)
        point = ("writes", float(rng.randint(1, 4))) if attempts % 2 else ("time", rng.uniform(0.3, 5.0))
        since = now_ms()
        proc = start_run(path)
        if kill_at(proc, point, (hs, kl), since):
            killed += 1
            mid_push += point[0] == "writes"
    assert mid_push >= KILLS // 3

    final = subprocess.run([sys.executable, "-m", "sync", "--config", str(path), "run", "--json"],
                           capture_output=True, text=True, env={**os.environ, **ENV}, timeout=300)
    assert final.returncode == 0, final.stderr
    before = writes(hs, 0), writes(kl, 0)
    again = subprocess.run([sys.executable, "-m", "sync", "--config", str(path), "run", "--json"],
                           capture_output=True, text=True, env={**os.environ, **ENV}, timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["plan"]["changes"] == 0
    assert (writes(hs, 0), writes(kl, 0)) == before

    engine = open_project_store(load_project(path))
    try:
        hs_ids, kl_ids = records(engine, "hubspot"), records(engine, "klaviyo")
        lists = {"segsync customers": "customer_stage"}
        assert hubspot_state(hs, hs_ids, HS_FIELDS, lists) == expected_hubspot(engine)
        kl_lists = klaviyo_list_ids(kl, ["segsync openers"])
        assert klaviyo_state(kl, kl_ids, KL_FIELDS, kl_lists) == expected_klaviyo(engine)
        assert_applied_once(engine)
    finally:
        engine.dispose()
