"""Incremental efficiency of ``segsync run`` on the sandbox: with 1 % of 100,000 contacts
changing, a run must send at most ceil(changes / 100) + 5 HubSpot write requests.

    python bench/bench_incremental.py [--contacts 100000] [--share 0.01] [--record]

Setup: the sandbox (its own process, rate limits on) holds ``--contacts`` HubSpot contacts;
the project pulls them (no email events) and maps one segment (``country == "DE"``) to a tags
field, a boolean and a MANUAL list. Run 1 creates the schema and pushes everything; run 2 (no
new data) must write nothing; then ``--share`` of the contacts move to or from Germany in
HubSpot, and run 3 must write only them. Write requests are counted in the sandbox's request
log (``sync.demo.is_write``). ``--record`` appends the result to ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mapping.config import load_project  # noqa: E402
from sync.demo import is_write, request_log  # noqa: E402
from sync.run import RunOptions, RunReport, run_job  # noqa: E402
from sync.store.db import open_project_store  # noqa: E402

CONFIG = """
[store]
url = "sqlite:///bench.db"
[attributes]
country = "string"
[segments.germany]
rule = 'country == "DE"'
[sources.hubspot]
token = "env:BENCH_HS"
base_url = "{hubspot}"
email_events = false
[destinations.hubspot]
tags = {{ field = "segsync_segments" }}
booleans = {{ segsync_germany = "germany" }}
lists = {{ "segsync germany" = "germany" }}
"""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def hubspot_writes(url: str, since: int) -> list[dict[str, Any]]:
    return [e for e in request_log(url, since) if is_write(e)]


def move_contacts(url: str, ids: list[str], rng: random.Random) -> int:
    """Move ``ids`` into or out of Germany (HubSpot batch updates, 100 per request)."""
    headers = {"Authorization": "Bearer pat-sandbox"}
    for i in range(0, len(ids), 100):
        chunk = ids[i:i + 100]
        body = {"inputs": [{"id": rid, "properties": {"country": rng.choice(["DE", "FR", "US"])}}
                           for rid in chunk]}
        requests.post(f"{url}/crm/v3/objects/contacts/batch/update", json=body, headers=headers,
                      timeout=60).raise_for_status()
    return len(ids)


def timed_run(project: Any, engine: Any) -> tuple[RunReport, float]:
    started = time.monotonic()
    report = run_job(project, RunOptions(), engine=engine)
    return report, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--share", type=float, default=0.01)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "sync", "sandbox", "--contacts", str(args.contacts), "--seed", "7", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        assert sandbox.stdout is not None
        info = json.loads(sandbox.stdout.readline())
        hs = info["hubspot"]["url"]
        os.environ["BENCH_HS"] = info["hubspot"]["token"]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.toml"
            path.write_text(CONFIG.format(hubspot=hs))
            project = load_project(path)
            engine = open_project_store(project)
            first, t1 = timed_run(project, engine)
            since = now_ms()
            _, t2 = timed_run(project, engine)
            idle_writes = len(hubspot_writes(hs, since))
            from sqlalchemy import select

            from sync.store import schema

            with engine.connect() as conn:
                ids = sorted(conn.execute(select(schema.identities.c.provider_id).where(
                    schema.identities.c.provider == "hubspot")).scalars())
            rng = random.Random(7)
            moved = move_contacts(hs, rng.sample(ids, round(len(ids) * args.share)), rng)
            time.sleep(0.05)
            since = now_ms()
            third, t3 = timed_run(project, engine)
            sent = hubspot_writes(hs, since)
            engine.dispose()
    finally:
        sandbox.send_signal(signal.SIGINT)
        sandbox.wait(timeout=60)
    changed = len({p.change.record_id for p in third.plan.changes}) if third.plan else 0
    budget = math.ceil(changed / 100) + 5
    def phases(r: RunReport) -> str:
        return ", ".join(f"{k} {v:.1f} s" for k, v in r.seconds.items())

    routes: dict[str, int] = {}
    for e in sent:
        routes[e["route"]] = routes.get(e["route"], 0) + 1
    lines = [
        f"- command: `python bench/bench_incremental.py --contacts {args.contacts} --share {args.share}"
        f"{' --record' if args.record else ''}`",
        f"- machine: nproc {os.cpu_count()}, Python {platform.python_version()} ({platform.system()} "
        f"{platform.release()}); sandbox in its own process, rate limits on; SQLite store",
        f"- run 1 (schema + everything): {len(first.plan.changes) if first.plan else 0:,} changes, "
        f"{first.push.applied:,} applied, {t1:.1f} s ({phases(first)})",
        f"- run 2 (no new data): {idle_writes} HubSpot write requests, {t2:.1f} s",
        f"- run 3 after moving {moved:,} contacts ({args.share:.0%}) in HubSpot: {changed:,} records "
        f"changed, **{len(sent)} HubSpot write requests** "
        f"({', '.join(f'{k} {n}' for k, n in sorted(routes.items()))}); budget ceil({changed:,}/100) + 5 "
        f"= {budget}: **{'met' if len(sent) <= budget else 'NOT met'}**; {t3:.1f} s ({phases(third)})",
    ]
    print("\n".join(lines))
    if args.record:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        with (ROOT / "bench" / "RESULTS.md").open("a", encoding="utf-8") as fh:
            fh.write(f"\n## Incremental run: 1 % of the contacts changing — {stamp}\n\n")
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
