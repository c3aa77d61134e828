"""Webhook acknowledgement benchmark: signed HubSpot batches against ``segsync serve``.

    python bench/bench_webhooks.py                      # 200 requests/s for 60 s, SQLite (WAL)
    python bench/bench_webhooks.py --store postgres     # the same on PostgreSQL (fresh schema)
    python bench/bench_webhooks.py --record             # ... and append the result to RESULTS.md

``segsync serve`` runs in its own process on 127.0.0.1 (uvicorn, the default worker and
re-evaluation hook, a store pre-filled with ``--contacts`` contacts linked to HubSpot ids). The
load generator (asyncio streams, keep-alive
connections, each request written in one piece; its own process) sends requests on an **open-loop** schedule:
request k leaves at start + k / rate whatever the earlier ones are doing, so a slow server
shows up as latency, not as a lower rate. Each request is a v3-signed JSON array of
``--events`` ``contact.propertyChange`` events (distinct, so nothing is deduplicated).
Latency = send -> response (the acknowledgement, which the service gives only after the inbox
commit). Targets: p99 < 50 ms, zero errors (any non-200 or transport failure).
After the run it waits until the worker has applied every item and reports that throughput.
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
import threading
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


def _start_serve(config: Path, *extra: str) -> tuple[subprocess.Popen[str], str, list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "sync", "--config", str(config), "serve", "--port", "0",
                             *extra],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, "BENCH_HS_SECRET": SECRET})
    assert proc.stderr is not None
    log: list[str] = []
    for line in proc.stderr:
        log.append(line)
        if m := re.search(r"listening on (http://\S+)", line):
            threading.Thread(target=lambda: log.extend(proc.stderr or []), daemon=True).start()
            return proc, m.group(1), log
    raise SystemExit("serve did not start:\n" + "".join(log))


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

    def request(now_ms: int) -> bytes:
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

    async def one(due: float) -> None:
        data = request(time.time_ns() // 1_000_000)
        conn = await pool.get()  # waiting for a free connection counts as latency
        try:
            status, body = await asyncio.wait_for(conn.post(data), 10)
            latencies.append(time.perf_counter() - due)
            if status != 200 or json.loads(body).get("new") != events:
                errors[str(status)] = errors.get(str(status), 0) + 1
            pool.put_nowait(conn)
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as e:
            errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
            reader, writer = await asyncio.open_connection(host, int(port))
            opened.append(writer)
            pool.put_nowait(_Conn(reader, writer))

    tasks = []
    start = time.perf_counter()
    for k in range(total):
        due = start + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for writer in opened:
        writer.close()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {"requests": total, "ok": total - sum(errors.values()), "errors": errors,
            "elapsed_s": elapsed, "achieved_rate": total / elapsed, "p50_ms": pct(0.50),
            "p95_ms": pct(0.95), "p99_ms": pct(0.99), "max_ms": latencies[-1] * 1000,
            "mean_ms": statistics.fmean(latencies) * 1000}


def _drain(url: str, timeout: float = 300) -> float:
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
                raise SystemExit("serve exited:\n" + "".join(log[-30:]))
            result = asyncio.run(_load(base, args.rate, args.duration, args.events, args.contacts,
                                          args.connections))
            drain = _drain(base)
        except (OSError, asyncio.IncompleteReadError):
            sys.stderr.write("".join(log[-40:]))
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
        "`segsync serve` (uvicorn, default worker + `sync.evaluate` hook) in its own process, "
        f"asyncio client in another ({args.connections} keep-alive connections; latency counted "
        "from each request's scheduled send time)",
        f"- acknowledgement (send -> 200 after the inbox commit): p50 {result['p50_ms']:.1f} ms, "
        f"p95 {result['p95_ms']:.1f} ms, **p99 {result['p99_ms']:.1f} ms** (target < 50 ms), "
        f"max {result['max_ms']:.1f} ms; achieved {result['achieved_rate']:.1f} requests/s",
        f"- errors: **{sum(result['errors'].values())}** of {result['requests']:,} requests "
        f"{result['errors'] or ''} (target 0) -> **{verdict}**",
        f"- worker: queue drained {drain:.1f} s after the last request "
        f"(applied + re-evaluated {items:,} items in about {result['elapsed_s'] + drain:.0f} s)",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.record:
        with RESULTS.open("a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
