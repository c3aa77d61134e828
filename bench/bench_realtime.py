"""Real-time latency benchmark: a webhook that changes a segment's membership -> the push request
reaching the sandbox. Target: p95 < 2 s.

    python bench/bench_realtime.py                  # 2,000 contacts, steady 20 changes/s for 30 s,
                                                    # a burst of 300, 15 lone changes
    python bench/bench_realtime.py --record         # ... and append the result to RESULTS.md

Everything runs on loopback in one process (:class:`LiveStack`, also used by
``tests/test_realtime_e2e.py``): both sandbox stand-ins (rate limits on) sending their own
signed webhooks to the service; the service (FastAPI + uvicorn: verify, inbox commit, ack; the
inbox worker applies items and calls the real-time hook); the hook re-evaluates the changed
contacts and enqueues; the micro-batching flusher pushes through the real HubSpot and Klaviyo
connectors; ticks every second. The store (SQLite, WAL) was filled by a pull from the sandbox
and synced once in full before the clock starts.

A change is made the way a HubSpot user makes it: ``lifecyclestage`` of a sandbox contact is
set in the sandbox's state, whose webhook sender (50 ms batching) notifies the service.
Latency = that moment -> the moment the sandbox applies segsync's push of the contact's
``segsync_customer`` property (a state listener stamps it). So it includes the sandbox's own
webhook batching, the acknowledgement, the worker, evaluation, planning, the flusher's
linger and the HTTP push.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.sandbox import Sandbox, start_sandbox  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
CUSTOMER = ("customer", "evangelist")
CONFIG = """
[store]
url = "sqlite:///{db}"

[attributes]
lifecycle = "string"
last_open = "datetime"

[sources.hubspot]
token = "env:SEGSYNC_RT_HS_TOKEN"
base_url = "{hubspot}"
email_events = false
attributes = {{ lifecycle = "lifecyclestage", last_open = "hs_email_last_open_date" }}

[sources.klaviyo]
api_key = "env:SEGSYNC_RT_KL_KEY"
base_url = "{klaviyo}"

[events.email_opened]
aliases = {{ klaviyo = ["Opened Email"] }}

[segments.customers]
rule = 'lifecycle in ["customer", "evangelist"]'

[segments.pipeline]
rule = 'lifecycle in ["salesqualifiedlead", "opportunity"]'

[segments.recent_openers]
rule = 'last_open > ago("7d") or exists("email_opened", within="7d")'

[destinations.hubspot]
booleans = {{ segsync_customer = "customers", segsync_pipeline = "pipeline", \
             segsync_opener = "recent_openers" }}

[destinations.klaviyo]
tags = {{ field = "segsync_segments" }}

[[destinations.klaviyo.events]]
segment = "customers"
on = "enter"

[service]
hubspot_client_secret = "env:SEGSYNC_RT_HS_SECRET"
klaviyo_webhook_secret = "env:SEGSYNC_RT_KL_SECRET"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveStack:
    """Sandbox -> webhooks -> service -> inbox worker -> real-time hook -> flusher -> sandbox."""

    def __init__(self, directory: Path, contacts: int = 200, *, rate_limits: bool = True,
                 tick_ms: int = 1000, linger_ms: int = 200, seed: int = 11) -> None:
        self.directory, self.contacts, self.rate_limits = directory, contacts, rate_limits
        self.tick_ms, self.linger_ms, self.seed = tick_ms, linger_ms, seed
        self.stops: list[Callable[[], None]] = []

    def __enter__(self) -> LiveStack:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        while self.stops:
            self.stops.pop()()

    def _start(self) -> None:
        import uvicorn

        from mapping.config import load_project_text
        from sync.connect import build_connectors, close_connectors
        from sync.desired import schema_specs
        from sync.evaluate import evaluate
        from sync.executor import push_pending
        from sync.planning import plan_run
        from sync.pull import pull
        from sync.realtime.wiring import Realtime, RealtimeSettings
        from sync.service.app import ServiceSettings, create_app
        from sync.store.db import open_project_store

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.sandbox: Sandbox = start_sandbox(self.contacts, seed=self.seed, webhook_url=self.url,
                                              rate_limits=self.rate_limits)
        self.stops.append(self.sandbox.stop)
        os.environ.update(SEGSYNC_RT_HS_TOKEN=self.sandbox.hubspot_token,
                          SEGSYNC_RT_KL_KEY=self.sandbox.klaviyo_key,
                          SEGSYNC_RT_HS_SECRET=self.sandbox.hubspot.settings.webhooks.client_secret,
                          SEGSYNC_RT_KL_SECRET=self.sandbox.klaviyo.settings.webhook_secret)
        text = CONFIG.format(db=self.directory / "rt.db", hubspot=self.sandbox.hubspot_url,
                             klaviyo=self.sandbox.klaviyo_url)
        self.project = load_project_text(text, "realtime.toml", base_dir=self.directory)
        self.engine = open_project_store(self.project)
        self.stops.append(self.engine.dispose)
        self.connectors = build_connectors(self.project)
        self.stops.append(lambda: close_connectors(self.connectors))
        pull(self.engine, self.project, self.connectors)
        for provider, spec in schema_specs(self.project).items():
            self.connectors[provider].ensure_schema(spec)
        now = int(time.time() * 1000)
        plan_run(self.engine, self.project, evaluate(self.engine, self.project, now), now_ms=now)
        self.initial = push_pending(self.engine, self.connectors, None, trigger="initial")
        self.realtime = Realtime(self.engine, self.project, self.connectors,
                                 RealtimeSettings(tick_ms=self.tick_ms, linger_ms=self.linger_ms))
        self.realtime.start()
        self.stops.append(self.realtime.stop)
        app = create_app(self.engine, self.project, ServiceSettings.from_project(self.project),
                         hook=self.realtime.on_contacts_changed)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               access_log=False))
        thread = threading.Thread(target=server.run, name="segsync-serve", daemon=True)
        thread.start()

        def stop_server() -> None:
            server.should_exit = True
            thread.join(10)

        self.stops.append(stop_server)
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the service did not start")
            time.sleep(0.02)

    def hubspot_contacts(self) -> dict[int, dict[str, str]]:
        state = self.sandbox.hubspot.state
        with state.lock:
            return {cid: dict(c.props) for cid, c in state.contacts.items() if not c.archived}


class Stamps:
    """When the sandbox's HubSpot state saw segsync's push of ``segsync_customer`` per contact."""

    def __init__(self, stack: LiveStack) -> None:
        self.seen: dict[int, list[float]] = {}
        self.lock = threading.Lock()
        stack.sandbox.hubspot.state.listeners.append(self._listen)

    def _listen(self, change: Any) -> None:
        name = getattr(change, "property_name", None)
        if getattr(change, "source", None) == "API" and name == "segsync_customer":
            with self.lock:
                self.seen.setdefault(int(change.object_id), []).append(time.perf_counter())

    def after(self, cid: int, t0: float) -> float | None:
        with self.lock:
            times = [t for t in self.seen.get(cid, []) if t >= t0]
        return times[0] - t0 if times else None


def _flip(stack: LiveStack, cid: int) -> float:
    """Move contact ``cid`` into or out of ``customers`` in the sandbox; returns the instant."""
    state = stack.sandbox.hubspot.state
    with state.lock:
        c = state.contacts[cid]
        value = "lead" if c.props.get("lifecyclestage") in CUSTOMER else "customer"
        t0 = time.perf_counter()
        state.apply(c, {"lifecyclestage": value}, source="CRM")
    return t0


def _collect(stamps: Stamps, sent: list[tuple[int, float]], timeout: float) -> tuple[list[float], int]:
    deadline = time.perf_counter() + timeout
    while True:
        got = [stamps.after(cid, t0) for cid, t0 in sent]
        if all(g is not None for g in got) or time.perf_counter() > deadline:
            return [g for g in got if g is not None], sum(g is None for g in got)
        time.sleep(0.05)


def _stats(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    if not xs:
        return {}
    q = statistics.quantiles(xs, n=100, method="inclusive") if len(xs) > 1 else [xs[0]] * 99
    return {"n": len(xs), "p50": q[49], "p95": q[94], "p99": q[98], "max": xs[-1]}


def run(contacts: int, rate: float, duration: float, burst: int, lone: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, LiveStack(Path(tmp), contacts) as stack:
        stamps = Stamps(stack)
        ids = sorted(stack.hubspot_contacts())
        linked = _linked(stack, ids)
        pool = iter(linked * 10)
        # lone changes: one at a time, 1.5 s apart
        sent = []
        for _ in range(lone):
            sent.append((cid := next(pool), _flip(stack, cid)))
            time.sleep(1.5)
        lat, lost = _collect(stamps, sent, 10)
        out["lone"] = {**_stats(lat), "lost": lost}
        # steady: open loop at `rate` changes/s, distinct contacts in flight
        sent = []
        start = time.perf_counter()
        for k in range(int(rate * duration)):
            time.sleep(max(0.0, start + k / rate - time.perf_counter()))
            sent.append((cid := next(pool), _flip(stack, cid)))
        lat, lost = _collect(stamps, sent, 30)
        out["steady"] = {**_stats(lat), "lost": lost, "rate": rate, "seconds": duration}
        time.sleep(2)
        # burst: `burst` changes at once
        sent = [(cid := next(pool), _flip(stack, cid)) for _ in range(burst)]
        lat, lost = _collect(stamps, sent, 60)
        out["burst"] = {**_stats(lat), "lost": lost}
        out["flushes"] = stack.realtime.flusher.flushes
        out["contacts"], out["linked"] = len(ids), len(linked)
    return out


def _linked(stack: LiveStack, ids: list[int]) -> list[int]:
    """The sandbox contacts segsync holds (pulled) and can push to."""
    from sqlalchemy import select

    from sync.store import schema

    i = schema.identities.c
    with stack.engine.connect() as conn:
        known = {int(r) for r in conn.execute(select(i.provider_id).where(i.provider == "hubspot",
                                                                         i.archived.is_(False))).scalars()}
    return [cid for cid in ids if cid in known]


def _machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"nproc {os.cpu_count()}, {mem:.1f} GiB RAM, {cpu}, Python {platform.python_version()} "
            f"({platform.system()} {platform.release()})")


def _fmt(s: dict[str, Any]) -> str:
    if not s.get("n"):
        return f"no samples (lost {s.get('lost')})"
    return (f"n {s['n']}, p50 {s['p50'] * 1000:.0f} ms, **p95 {s['p95'] * 1000:.0f} ms**, "
            f"p99 {s['p99'] * 1000:.0f} ms, max {s['max'] * 1000:.0f} ms, lost {s['lost']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--contacts", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=20.0, help="steady changes per second")
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--burst", type=int, default=300)
    ap.add_argument("--lone", type=int, default=15)
    ap.add_argument("--record", action="store_true", help="append the result to bench/RESULTS.md")
    args = ap.parse_args()
    res = run(args.contacts, args.rate, args.duration, args.burst, args.lone)
    cmd = "python bench/bench_realtime.py" + (" --record" if args.record else "")
    ok = all(res[k].get("p95", 99) < 2.0 and res[k]["lost"] == 0 for k in ("lone", "steady", "burst"))
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    entry = "\n".join([
        f"## Real time: webhook -> push reaching the sandbox — {when}", "",
        f"- command: `{cmd}`", f"- machine: {_machine()}",
        "- one process: sandbox (rate limits on, its own webhook sender), service (uvicorn), inbox worker, "
        "real-time hook, flusher (one lane per destination, linger 200 ms, batch 100), ticks 1 s; SQLite "
        f"store pulled from the sandbox ({res['contacts']:,} HubSpot contacts, {res['linked']:,} linked)",
        "- latency = sandbox contact's lifecyclestage changed -> sandbox applies segsync's push of "
        "`segsync_customer` for it (target: p95 < 2 s)",
        f"- lone changes (1.5 s apart): {_fmt(res['lone'])}",
        f"- steady {res['steady']['rate']:.0f} changes/s for {res['steady']['seconds']:.0f} s: "
        f"{_fmt(res['steady'])}",
        f"- burst of {args.burst} at once: {_fmt(res['burst'])}",
        f"- flushes: {res['flushes']}; target met: **{'yes' if ok else 'NO'}**", ""])
    print(entry)
    if args.record:
        with RESULTS.open("a") as f:
            f.write("\n" + entry)


if __name__ == "__main__":
    main()
