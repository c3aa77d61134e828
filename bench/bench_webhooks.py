"""Webhook acknowledgement benchmark: signed HubSpot batches against ``segsync serve``.

    python bench/bench_webhooks.py                      # 200 requests/s for 60 s, SQLite (WAL)
    python bench/bench_webhooks.py --store postgres     # the same on PostgreSQL (fresh schema)
    python bench/bench_webhooks.py --record             # ... and append the result to RESULTS.md

``segsync serve`` runs as it does in production (its own processes on 127.0.0.1: the HTTP
front end and the worker with the default re-evaluation hook; a store pre-filled with
``--contacts`` contacts linked to HubSpot ids). The load starts once ``/healthz`` answers.
The load generator (asyncio streams, keep-alive connections, each request written in one
piece; its own process) sends on an **open-loop** schedule: request k is due at
start + k / rate whatever the earlier ones are doing, so a slow server shows up as latency, not
as a lower rate. Each request is a v3-signed JSON array of ``--events``
``contact.propertyChange`` events (distinct, so nothing is deduplicated).

Latency is counted **from each request's scheduled send time** to its response (the
acknowledgement, given only after the inbox commit): time spent waiting for a free connection
or for a late client counts, so coordinated omission cannot hide a stall. The latency from the
actual write of the request is reported next to it, to tell a late client from a slow server.
Targets: p99 < 50 ms (from the scheduled time), zero errors (any non-200 or transport failure).

While the load runs, ``/healthz`` is sampled every second (queue depth and the age of the
oldest unapplied item: the worker's lag); afterwards the run waits until the worker has
applied everything. The load average of the machine is recorded before and after: the
numbers only mean something next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.hubspot.signature import signature_v3  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
PG_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"
SECRET = "bench-client-secret"
CONFIG = """
[store]
url = "{url}"

[attributes]
plan = "string"
score = "number"

[sources.hubspot]

[segments.pro]
rule = 'plan == "pro"'
[segments.high]
rule = 'score >= 50'

[service]
hubspot_client_secret = "env:BENCH_HS_SECRET"
"""


def _prefill(url: str, contacts: int) -> None:
    from sync.store import repo
    from sync.store.db import open_store
    from sync.store.tx import begin_write

    engine = open_store(url)
    now = int(time.time() * 1000)
    with begin_write(engine) as conn:
        keys = [(f"p{n}@bench.example", None) for n in range(contacts)]
        ids = repo.contact_ids(conn, keys, now)
        for n, cid in enumerate(ids):
            assert cid is not None
            repo.upsert_identity(conn, "hubspot", str(n + 1), cid, now, email=keys[n][0])
    engine.dispose()


def _start_serve(config: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    """``segsync serve`` with its log in a file (reading ~1,000 lines/s from a pipe here would
    take the load generator's CPU); returns the process, its URL and the log file."""
    log = config.parent / "serve.log"
    with log.open("wb") as out:
        command = [sys.executable, "-m", "sync", "--config", str(config), "serve", "--port", "0", *extra]
        proc = subprocess.Popen(command, stderr=out, stdout=subprocess.DEVNULL,
                                env={**os.environ, "BENCH_HS_SECRET": SECRET})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if m := re.search(r"listening on (http://\S+)", log.read_text()):
            return proc, m.group(1), log
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("serve did not start:\n" + log.read_text())


class _Conn:
    """One keep-alive HTTP/1.1 connection: the whole request goes out in one write."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(int(v) for k, _, v in (line.partition(b":") for line in lines[1:])
                      if k.strip().lower() == b"content-length")
        return int(lines[0].split()[1]), await self.reader.readexactly(length)


async def _load(url: str, rate: float, duration: float, events: int, contacts: int,
                connections: int) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    uri = f"{url}/webhooks/hubspot"
    total = int(rate * duration)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    seq = 0
    base_ms = time.time_ns() // 1_000_000
    rnd = random.Random(7)

    def request(now_ms: int) -> bytes:  # signed for its scheduled send time
        nonlocal seq
        batch = []
        for _ in range(events):
            seq += 1
            oid = rnd.randint(1, contacts)
            prop, value = (("plan", rnd.choice(["pro", "free", "team"])) if seq % 2
                           else ("score", str(rnd.randint(0, 100))))
            batch.append({"eventId": seq, "subscriptionId": 1, "portalId": 1, "appId": 1,
                          "occurredAt": base_ms + seq, "subscriptionType": "contact.propertyChange",
                          "attemptNumber": 0, "objectId": oid, "propertyName": prop, "propertyValue": value,
                          "changeSource": "CRM"})
        body = json.dumps(batch, separators=(",", ":")).encode()
        head = (f"POST /webhooks/hubspot HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"X-HubSpot-Request-Timestamp: {now_ms}\r\n"
                f"X-HubSpot-Signature-v3: {signature_v3(SECRET, 'POST', uri, body, now_ms)}\r\n\r\n")
        return head.encode() + body

    pool: asyncio.Queue[_Conn] = asyncio.Queue()
    opened = []
    for _ in range(connections):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        opened.append(writer)
        pool.put_nowait(_Conn(reader, writer))

    sent_latencies: list[float] = []

    # built before the clock starts, so that sending costs the client as little as possible
    requests = [request(base_ms + round(k * 1000 / rate)) for k in range(total)]

    async def one(due: float, data: bytes) -> None:
        conn = await pool.get()  # waiting for a free connection counts as latency
        try:
            sent = time.perf_counter()
            status, body = await asyncio.wait_for(conn.post(data), 10)
            done = time.perf_counter()
            latencies.append(done - due)
            sent_latencies.append(done - sent)
            if status != 200 or json.loads(body).get("new") != events:
                errors[str(status)] = errors.get(str(status), 0) + 1
            pool.put_nowait(conn)
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as e:
            errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
            reader, writer = await asyncio.open_connection(host, int(port))
            opened.append(writer)
            pool.put_nowait(_Conn(reader, writer))

    samples: list[tuple[int, float]] = []
    monitor = asyncio.create_task(_monitor(host, int(port), samples))
    tasks = []
    start = time.perf_counter()
    for k in range(total):
        due = start + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due, requests[k])))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    monitor.cancel()
    for writer in opened:
        writer.close()
    latencies.sort()
    sent_latencies.sort()

    def pct(p: float, values: list[float] = latencies) -> float:
        return values[min(len(values) - 1, int(p * len(values)))] * 1000

    return {"requests": total, "ok": total - sum(errors.values()), "errors": errors,
            "elapsed_s": elapsed, "achieved_rate": total / elapsed, "p50_ms": pct(0.50),
            "p95_ms": pct(0.95), "p99_ms": pct(0.99), "max_ms": latencies[-1] * 1000,
            "mean_ms": statistics.fmean(latencies) * 1000,
            "sent_p50_ms": pct(0.50, sent_latencies), "sent_p99_ms": pct(0.99, sent_latencies),
            "max_depth": max((d for d, _ in samples), default=0),
            "max_lag_s": max((lag for _, lag in samples), default=0.0),
            "last_depth": samples[-1][0] if samples else 0}


async def _monitor(host: str, port: int, samples: list[tuple[int, float]]) -> None:
    """``/healthz`` every second on a connection of its own: (queue depth, lag seconds)."""
    reader, writer = await asyncio.open_connection(host, port)
    conn = _Conn(reader, writer)
    request = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    try:
        while True:
            await asyncio.sleep(1.0)
            status, body = await conn.post(request)
            if status == 200:
                doc = json.loads(body)
                samples.append((int(doc["queue_depth"]), float(doc.get("lag_seconds", 0.0))))
    finally:
        writer.close()


def _ready(url: str, timeout: float = 60) -> None:
    """Wait until the service answers ``/healthz`` (``listening`` comes before the app is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url}/healthz did not answer within {timeout:.0f} s")


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its live children."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    for p in pids:
        fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _server_p99(url: str) -> str:
    """The service's own view (handler start -> acknowledgement, ``segsync_ack_seconds``): the
    histogram bucket that holds its 99th percentile."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    buckets = [(float(m.group(1)), int(m.group(2))) for m in re.finditer(
        r'segsync_ack_seconds_bucket\{source="hubspot",le="([^"]+)"\} (\d+)', text)]
    if not buckets or buckets[-1][1] == 0:
        return "n/a"
    total = buckets[-1][1]
    bounds = [0.0] + [b for b, _ in buckets]
    for (bound, count), lower in zip(buckets, bounds, strict=False):
        if count >= 0.99 * total:
            return f"{lower * 1000:g}-{bound * 1000:g} ms"
    return "n/a"


def _drain(url: str, timeout: float = 600) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        depth = httpx.get(f"{url}/healthz", timeout=10).json()["queue_depth"]
        if depth == 0:
            return time.perf_counter() - start
        time.sleep(0.25)
    return float("nan")


def _pg_schema() -> tuple[str, Any]:
    from sqlalchemy import create_engine

    admin = create_engine(PG_URL)
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    return f"{PG_URL}?options=-csearch_path%3D{name}", (admin, name)


def _machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return (f"nproc {os.cpu_count()}, {mem:.1f} GiB RAM, {cpu}, Python {platform.python_version()} "
            f"({platform.system()} {platform.release()})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds")
    ap.add_argument("--events", type=int, default=5, help="events per request (HubSpot sends up to 100)")
    ap.add_argument("--contacts", type=int, default=10_000)
    ap.add_argument("--connections", type=int, default=32, help="keep-alive connections of the client")
    ap.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--worker-delay", type=float, default=0.0,
                    help="start the worker this late (acknowledgement path alone when > duration)")
    ap.add_argument("--record", action="store_true", help="append the result to bench/RESULTS.md")
    args = ap.parse_args()
    args.worker_note = ("worker on" if args.worker_delay <= 0 else
                        f"worker held back {args.worker_delay:.0f} s")

    with tempfile.TemporaryDirectory(prefix="segsync-bench-") as tmp:
        cleanup = None
        if args.store == "postgres":
            url, cleanup = _pg_schema()
        else:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        config = Path(tmp) / "segsync.toml"
        config.write_text(CONFIG.format(url=url))
        _prefill(url, args.contacts)
        proc, base, log = _start_serve(config, "--worker-delay", str(args.worker_delay))
        try:
            if proc.poll() is not None:
                raise SystemExit("serve exited:\n" + log.read_text()[-4000:])
            _ready(base)
            load_before = os.getloadavg()
            cpu_before = _cpu_seconds(proc.pid)
            result = asyncio.run(_load(base, args.rate, args.duration, args.events, args.contacts,
                                          args.connections))
            cpu_load = _cpu_seconds(proc.pid) - cpu_before
            load_after = os.getloadavg()
            server_p99 = _server_p99(base)
            held_back = args.worker_delay > args.duration
            drain = float("nan") if held_back else _drain(base)
            cpu_total = _cpu_seconds(proc.pid) - cpu_before
        except (OSError, asyncio.IncompleteReadError):
            sys.stderr.write("".join(log.read_text().splitlines(keepends=True)[-40:]))
            raise
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            if cleanup is not None:
                admin, name = cleanup
                with admin.begin() as conn:
                    conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
                admin.dispose()
    items = result["requests"] * args.events
    verdict = "PASS" if result["p99_ms"] < 50 and not result["errors"] else "FAIL"
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "python bench/bench_webhooks.py" + "".join(
        f" {a}" for a in sys.argv[1:] if a != "--record")
    lines = [
        f"## Real-time service: signed HubSpot webhooks ({args.store}) — {when}",
        "",
        f"- command: `{command}`",
        f"- machine: {_machine()}",
        f"- load: {args.rate:.0f} requests/s open loop for {args.duration:.0f} s, {args.events} "
        f"propertyChange events per request ({items:,} inbox items), {args.contacts:,} contacts; "
        "`segsync serve` (HTTP front end and worker with the default `sync.evaluate` hook, "
        f"{args.worker_note}), asyncio client in its own process ({args.connections} keep-alive "
        "connections)",
        f"- machine load average (1 min) before / after the load: {load_before[0]:.2f} / "
        f"{load_after[0]:.2f} (5 min: {load_before[1]:.2f} / {load_after[1]:.2f})",
        f"- acknowledgement, from the scheduled send time to the 200 (given after the inbox commit): "
        f"p50 {result['p50_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms, **p99 {result['p99_ms']:.1f} ms** "
        f"(target < 50 ms), max {result['max_ms']:.1f} ms; from the actual write: p50 "
        f"{result['sent_p50_ms']:.1f} ms, p99 {result['sent_p99_ms']:.1f} ms; inside the service "
        f"(request handler start -> acknowledgement, histogram) p99 in {server_p99}; achieved "
        f"{result['achieved_rate']:.1f} requests/s",
        f"- errors: **{sum(result['errors'].values())}** of {result['requests']:,} requests "
        f"{result['errors'] or ''} (target 0) -> **{verdict}**",
        f"- worker: during the load, queue depth at most {result['max_depth']:,} items and lag "
        f"(oldest unapplied item) at most {result['max_lag_s']:.1f} s ({result['last_depth']:,} "
        f"waiting at the last sample); drained {drain:.1f} s after the last request: "
        f"{items:,} items applied + re-evaluated in {result['elapsed_s'] + drain:.0f} s "
        f"= {items / (result['elapsed_s'] + drain):,.0f} items/s",
        f"- serve CPU time (all its processes): {cpu_load:.1f} s during the {result['elapsed_s']:.0f} s "
        f"of load, {cpu_total:.1f} s until drained",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.record:
        with RESULTS.open("a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
