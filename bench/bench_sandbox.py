"""Sandbox benchmarks: HubSpot batch-update throughput and synthetic data generation.

    python bench/bench_sandbox.py                  # both, print a summary
    python bench/bench_sandbox.py --record         # ... and append it to bench/RESULTS.md

Throughput: the sandbox runs as users run it (``python -m sync sandbox --no-rate-limits --json``
in its own process); client processes, each with several threads holding keep-alive
``requests.Session``s, POST ``/crm/v3/objects/contacts/batch/update`` with 100 inputs each (the
HubSpot batch maximum) for a fixed time. Counted: answers with status 200 per second.
Generation: ``generate(100_000, events_per_contact=100)`` in a fresh process; wall time, peak RSS,
and the activity store's bytes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
BATCH_PATH = "/crm/v3/objects/contacts/batch/update"


def _bodies(contacts: int, n: int = 50) -> list[bytes]:
    out = []
    for k in range(n):
        ids = [(k * 100 + i) % contacts + 1 for i in range(100)]
        inputs = [{"id": str(i), "properties": {"city": f"City {k}", "lastname": f"Bench{k}"}} for i in ids]
        out.append(json.dumps({"inputs": inputs}).encode())
    return out


def _client(url: str, token: str, contacts: int, threads: int, seconds: float, start_at: float,
            out: Any) -> None:  # fmt: skip
    bodies = _bodies(contacts)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def worker(offset: int) -> None:
        mine: list[tuple[int, float]] = []
        with requests.Session() as s:
            k = offset
            while time.time() < start_at:
                time.sleep(0.001)
            end = start_at + seconds
            while time.time() < end:
                t0 = time.perf_counter()
                r = s.post(url + BATCH_PATH, data=bodies[k % len(bodies)], headers=headers, timeout=30)
                mine.append((r.status_code, time.perf_counter() - t0))
                k += 1
        with lock:
            results.extend(mine)

    pool = [threading.Thread(target=worker, args=(i * 7,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put(results)


def bench_batch_updates(contacts: int, processes: int, threads: int, seconds: float) -> dict[str, Any]:
    server = subprocess.Popen(
        [sys.executable, "-m", "sync", "sandbox", "--contacts", str(contacts), "--no-rate-limits", "--json"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        url, token = info["hubspot"]["url"], info["hubspot"]["token"]
        contacts = requests.get(f"{url}/_sandbox/hubspot/stats", timeout=10).json()["contacts"]  # ids 1..n
        probe = requests.post(url + BATCH_PATH, data=_bodies(contacts, 1)[0],
                              headers={"Authorization": f"Bearer {token}"}, timeout=30)  # fmt: skip
        if probe.status_code != 200:
            raise SystemExit(f"batch update probe failed: {probe.status_code} {probe.text[:300]}")
        ctx = mp.get_context("spawn")
        q: Any = ctx.Queue()
        start_at = time.time() + 2.0
        procs = [ctx.Process(target=_client, args=(url, token, contacts, threads, seconds, start_at, q))
                 for _ in range(processes)]  # fmt: skip
        for p in procs:
            p.start()
        results: list[tuple[int, float]] = []
        for _ in procs:
            results.extend(q.get(timeout=seconds + 120))
        for p in procs:
            p.join()
        counters = requests.get(f"{url}/_sandbox/counters", timeout=10).json()["routes"]
    finally:
        server.terminate()
        server.wait(timeout=20)
    ok = [lat for status, lat in results if status == 200]
    lat_ms = sorted(x * 1000 for x in ok)
    return {
        "hubspot_contacts": contacts, "client_processes": processes, "threads_per_process": threads,
        "seconds": seconds, "requests": len(results), "ok": len(ok),
        "other_statuses": sorted({s for s, _ in results if s != 200}),
        "batches_per_s": round(len(ok) / seconds, 1),
        "inputs_per_s": round(len(ok) * 100 / seconds),
        "latency_ms_p50": round(statistics.median(lat_ms), 1) if lat_ms else None,
        "latency_ms_p99": round(lat_ms[int(len(lat_ms) * 0.99)], 1) if lat_ms else None,
        "server_counted": counters.get("contacts.batch.update", {}).get("by_status", {}),
    }


def _generate(contacts: int, events: float, out: Any) -> None:
    from connectors.sandbox.dataset import generate

    t0 = time.perf_counter()
    d = generate(contacts, seed=0, events_per_contact=events)
    elapsed = time.perf_counter() - t0
    out.put({
        "contacts": contacts, "activities": len(d.activities), "seconds": round(elapsed, 2),
        "activity_store_mb": round(d.activities.nbytes / 2**20),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    })  # fmt: skip


def bench_generation(contacts: int, events: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q: Any = ctx.Queue()
    p = ctx.Process(target=_generate, args=(contacts, events, q))
    p.start()
    result: dict[str, Any] = q.get(timeout=600)
    p.join()
    return result


def machine() -> str:
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))  # fmt: skip
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    return (f"nproc {os.cpu_count()}, {mem_kb / 2**20:.1f} GiB RAM, {cpu}, "
            f"Python {platform.python_version()} ({platform.system()} {platform.release()})")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--contacts", type=int, default=5000, help="sandbox contacts for the throughput run")
    ap.add_argument("--processes", type=int, default=2, help="client processes")
    ap.add_argument("--threads", type=int, default=4, help="client threads per process")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--gen-contacts", type=int, default=100_000)
    ap.add_argument("--gen-events", type=float, default=100.0, help="events per contact for generation")
    ap.add_argument("--skip-generation", action="store_true")
    ap.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    args = ap.parse_args()

    throughput = bench_batch_updates(args.contacts, args.processes, args.threads, args.seconds)
    print("batch updates:", json.dumps(throughput))
    generation = None if args.skip_generation else bench_generation(args.gen_contacts, args.gen_events)
    if generation:
        print("generation:", json.dumps(generation))
    if args.record:
        command = "python bench/bench_sandbox.py " + " ".join(sys.argv[1:])
        when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        lines = [
            f"\n## Sandbox: HubSpot batch updates and data generation — {when}\n",
            f"- command: `{command.strip()}`",
            f"- machine: {machine()}",
            f"- batch updates (100 inputs, rate limits off): **{throughput['batches_per_s']} per second** "
            f"({throughput['inputs_per_s']:,} contact updates/s; target >= 300/s); "
            f"p50 {throughput['latency_ms_p50']} ms, p99 {throughput['latency_ms_p99']} ms; "
            f"{throughput['client_processes']} client processes x {throughput['threads_per_process']} "
            f"keep-alive threads, {throughput['seconds']:g} s, {throughput['ok']} OK of "
            f"{throughput['requests']} (other statuses: {throughput['other_statuses'] or 'none'})",
        ]
        if generation:
            lines.append(
                f"- generation: {generation['contacts']:,} contacts, {generation['activities']:,} "
                f"activities in **{generation['seconds']} s**; activity store "
                f"{generation['activity_store_mb']} MiB, peak RSS {generation['peak_rss_mb']} MiB"
            )
        with RESULTS.open("a") as f:
            f.write("\n".join(lines) + "\n")
        print(f"recorded in {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
