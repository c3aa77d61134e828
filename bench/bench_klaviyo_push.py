"""Klaviyo connector benchmark against the sandbox (its own process, rate limits on).

    python bench/bench_klaviyo_push.py                 # all three parts, print a summary
    python bench/bench_klaviyo_push.py --record        # ... and append it to bench/RESULTS.md
    python bench/bench_klaviyo_push.py --parts import,lists --events 200000

1. **import**: 100,000 property changes on 100,000 distinct profiles through
   ``KlaviyoConnector.apply`` (bulk import path). Target: at most ceil(N / 10,000) jobs.
2. **lists**: list membership changes (``--list-profiles`` profiles x ``--lists`` lists, 1,000
   ids per call, ``--apply-batch`` changes per ``apply`` as ``sync.executor`` claims them) at
   the list endpoint's steady ceiling (150 calls / 60 s). The sandbox's windows are scaled by
   ``--scale`` (0.25 = 15 s steady window, 0.25 s burst window, ``Retry-After`` and
   ``RateLimit-Reset`` in units of 0.25 s), and the connector's budget with them, its 0.1 s
   margin and reset unit included: everything time-like is scaled except this client's own
   CPU time and pauses, so the scaled ceiling must stay well inside what the client can push
   with no limit at all (measured first and reported; on a 2-core machine x0.1 asks for
   25 calls/s of ~35 ms client CPU each and measures the CPU, not the pacing).
   Sustained rate = calls the sandbox's limiter let through per *full* steady window (its
   fixed, epoch-aligned windows; the first and last, partial, windows of the run are left
   out) x 1,000 ids / window length. Targets: >= 95 % of the ceiling, 429s <= 1 % of the
   calls. ``--scale 1`` confirms in real minutes.
3. **events**: ``pull_events`` of every metric, ~1M events, ``page[size]`` 1,000,
   ``include=profile``, real (unscaled) windows: ceiling 3,500 calls/min x 1,000 = 58,333
   events/s. The sandbox's own throughput on the same pages (a bare keep-alive client,
   4 threads, no mapping) is measured too; targets: >= 90 % of the lower of the two.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import multiprocessing as mp
import os
import platform
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.budget import RateBudget, WindowSpec, klaviyo_spec  # noqa: E402
from connectors.klaviyo import KlaviyoConnector, KlaviyoOptions  # noqa: E402
from connectors.records import Change, ChangeOp, PushStatus  # noqa: E402

if TYPE_CHECKING:
    from connectors.sandbox.klaviyo.app import KlaviyoApp

RESULTS = ROOT / "bench" / "RESULTS.md"
HEADERS = {"revision": "2026-10-15", "Accept": "application/vnd.api+json"}


def _serve(conn: Any, contacts: int, extra_profiles: int, events_per_contact: float) -> None:
    from connectors.sandbox import generate, start_sandbox

    dataset = generate(contacts, seed=3, events_per_contact=events_per_contact)
    sb = start_sandbox(dataset=dataset, rate_limits=True)
    state = sb.klaviyo.state
    with state.lock:
        ids = [state.create_profile({"email": f"bench{i}@example.com"}).id for i in range(extra_profiles)]
        events = len(state.events)
    conn.send({"url": sb.klaviyo_url, "key": sb.klaviyo_key, "ids": ids, "events": events})
    while True:
        msg = conn.recv()
        if msg[0] in ("scale", "enabled"):
            requests.put(f"{sb.klaviyo_url}/_sandbox/rate-limits", json={msg[0]: msg[1]}, timeout=5)
            conn.send("ok")
        elif msg[0] == "allowed":
            limiter = cast("KlaviyoApp", sb.klaviyo.app).limiter
            with sb.klaviyo.app.lock:
                conn.send(sorted((no, n) for (op, no), n in limiter.allowed.items() if op == msg[1]))
        elif msg[0] == "log":  # (route, since epoch seconds)
            with sb.klaviyo.app.lock:
                conn.send(
                    [(e.at, e.status) for e in sb.klaviyo.app.log if e.route == msg[1] and e.at >= msg[2]]
                )
        elif msg[0] == "jobs":
            with state.lock:
                conn.send([(j.status, j.total, j.completed, j.failed) for j in state.jobs.values()])
        else:
            sb.stop()
            conn.send("stopped")
            return


def _connector(info: dict[str, Any], budget: RateBudget, **opts: Any) -> KlaviyoConnector:
    metrics = {"all": ["Received Email", "Opened Email", "Clicked Email", "Bounced Email", "Unsubscribed",
                       "Viewed Product", "Added to Cart", "Placed Order"]}  # fmt: skip
    return KlaviyoConnector(info["key"], info["url"], metrics=metrics, budget=budget,
                            options=KlaviyoOptions(**opts))  # fmt: skip


def bench_import(info: dict[str, Any], conn: Any, n: int) -> dict[str, Any]:
    ids = info["ids"][:n]
    changes = [
        Change("klaviyo", pid, ChangeOp.SET_FIELD, "segment", f"s{i % 7}") for i, pid in enumerate(ids)
    ]
    k = _connector(info, RateBudget(klaviyo_spec()), job_poll_max=1.0)
    started = time.perf_counter()
    results = k.apply(changes)
    seconds = time.perf_counter() - started
    conn.send(("jobs",))
    jobs = conn.recv()
    applied = sum(r.status is PushStatus.APPLIED for r in results)
    return {"changes": len(changes), "applied": applied, "jobs": len(jobs), "target_jobs": math.ceil(n / 10_000),  # noqa: E501
            "seconds": seconds, "calls": dict(k.calls.sent)}  # fmt: skip


def _push_lists(k: KlaviyoConnector, ids: list[str], names: list[str], batch: int) -> tuple[int, int, float]:
    """Add every id to every list, `batch` changes per apply; (changes, applied, seconds)."""
    total = applied = 0
    started = time.perf_counter()
    for name in names:  # changes made and dropped batch by batch, as the executor does
        for start in range(0, len(ids), batch):
            changes = [Change("klaviyo", pid, ChangeOp.LIST_ADD, name) for pid in ids[start : start + batch]]
            results = k.apply(changes)
            total += len(changes)
            applied += sum(r.status is PushStatus.APPLIED for r in results)
    return total, applied, time.perf_counter() - started


def _capacity(info: dict[str, Any], conn: Any, batch: int, profiles: int = 50_000) -> float:
    """Ids per second this client pushes with no rate limit anywhere (sandbox limits off)."""
    from connectors.base import SchemaSpec

    conn.send(("enabled", False))
    conn.recv()
    k = _connector(info, RateBudget(klaviyo_spec(overrides={"list_members": (10**6, 10**7, None)})))
    k.ensure_schema(SchemaSpec(lists=("Capacity",)))
    total, _, seconds = _push_lists(k, info["ids"][:profiles], ["Capacity"], batch)
    conn.send(("enabled", True))
    conn.recv()
    return total / seconds


def bench_lists(
    info: dict[str, Any], conn: Any, profiles: int, lists: int, scale: float, batch: int
) -> dict[str, Any]:
    capacity = _capacity(info, conn, batch)
    conn.send(("scale", scale))
    conn.recv()
    base = klaviyo_spec(margin=0.1 * scale, reset_unit=scale)  # production values, scaled like the windows
    windows = {**base.windows, "list_members.burst": WindowSpec(10, 1.0 * scale),
               "list_members.steady": WindowSpec(150, 60.0 * scale),
               "lists_read.burst": WindowSpec(75, 1.0 * scale), "lists_read.steady": WindowSpec(750, 60.0 * scale),  # noqa: E501
               "list_create.burst": WindowSpec(10, 1.0 * scale),
               "list_create.steady": WindowSpec(150, 60.0 * scale)}  # fmt: skip
    k = _connector(info, RateBudget(replace(base, windows=windows)))
    names = [f"Bench {i}" for i in range(lists)]
    from connectors.base import SchemaSpec

    k.ensure_schema(SchemaSpec(lists=tuple(names)))
    since = time.time()
    total, applied, seconds = _push_lists(k, info["ids"][:profiles], names, batch)
    conn.send(("log", "add_profiles_to_list", since))
    log = conn.recv()
    conn.send(("allowed", "add_profiles_to_list"))
    per_window = conn.recv()  # [(steady window number, calls let through)], in order
    throttled = sum(1 for _, status in log if status == 429)
    ceiling = 150 * 1000 / (60.0 * scale)  # ids per second
    counts = dict(per_window)
    span = range(per_window[0][0], per_window[-1][0] + 1) if per_window else range(0)
    let_through = [counts.get(no, 0) for no in span]  # an idle window inside the run counts as 0
    full = let_through[1:-1]  # windows wholly inside the run
    sustained = sum(full) * 1000 / (len(full) * 60.0 * scale) if full else float("nan")
    conn.send(("scale", 1.0))
    conn.recv()
    return {"changes": total, "applied": applied, "batch": batch,
            "calls": len(log), "throttled": throttled, "seconds": seconds, "scale": scale,
            "ceiling_ids_s": ceiling, "sustained_ids_s": sustained, "ratio": sustained / ceiling,
            "windows": let_through, "full_windows": len(full),
            "overall_ids_s": total / seconds, "capacity_ids_s": capacity}  # fmt: skip


def _raw_events(info: dict[str, Any], seconds: float, threads: int = 4) -> float:
    """Events per second the sandbox serves to a bare keep-alive client: the connector's
    request (``include=profile``, ``fields[profile]=email``, 1,000 a page, no metric filter),
    bodies only counted and the next cursor cut out of ``links.next``, not parsed."""
    counts = [0] * threads
    stop = time.perf_counter() + seconds
    url = f"{info['url']}/api/events"
    headers = {**HEADERS, "Authorization": f"Klaviyo-API-Key {info['key']}"}
    marker = b"page%5Bcursor%5D="

    def worker(n: int) -> None:
        with requests.Session() as s:
            cursor = None
            while time.perf_counter() < stop:
                params = {"page[size]": "1000", "include": "profile", "fields[profile]": "email",
                          "sort": "datetime"}  # fmt: skip
                if cursor:
                    params["page[cursor]"] = cursor
                r = s.get(url, params=params, headers=headers, timeout=30)
                if r.status_code != 200:
                    time.sleep(0.05)
                    continue
                body = r.content
                counts[n] += body.count(b'{"type":"event",')
                at = body.rfind(marker)
                cursor = body[at + len(marker) : body.index(b'"', at)].decode() if at >= 0 else None

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    begun = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / (time.perf_counter() - begun)


def _pull(info: dict[str, Any], workers: int) -> tuple[int, int, float]:
    """(events, pages, seconds) of one full ``pull_events`` (records counted, not stored)."""
    k = _connector(info, RateBudget(klaviyo_spec()), pull_workers=workers)
    started = time.perf_counter()
    n = pages = 0
    for page in k.pull_events(None):
        n += len(page.records)
        pages += 1
    return n, pages, time.perf_counter() - started


def bench_events(info: dict[str, Any], workers: int, pulls: int = 1) -> dict[str, Any]:
    runs = [_pull(info, workers) for _ in range(pulls)]  # the first renders every event (cold)
    n, pages, seconds = runs[-1]
    raw = _raw_events(info, 15.0)
    ceiling = 3500 * 1000 / 60
    rate = n / seconds
    return {"events": n, "sandbox_events": info["events"], "pages": pages, "seconds": seconds,
            "rate": rate, "ceiling": ceiling, "sandbox_raw": raw, "of_ceiling": rate / ceiling,
            "of_sandbox": rate / raw, "of_lower": rate / min(ceiling, raw), "workers": workers,
            "runs": [r[0] / r[2] for r in runs], "load": os.getloadavg()}  # fmt: skip


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    return f"nproc {os.cpu_count()}, {mem:.1f} GiB RAM, {cpu}, Python {platform.python_version()} " \
           f"({platform.system()} {platform.release()})"  # fmt: skip


def report(res: dict[str, Any], command: str) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"## Klaviyo connector: bulk import, list membership, event pull — {now}", "",
             f"- command: `{command}`", f"- machine: {machine()}",
             "- sandbox in its own process (`start_sandbox`, rate limits on), connector through klaviyo-api"]  # fmt: skip  # noqa: E501
    if "import" in res:
        r = res["import"]
        lines.append(
            f"- bulk import: {r['changes']:,} property changes on distinct profiles -> **{r['jobs']} import jobs** "  # noqa: E501
            f"(target <= {r['target_jobs']}), {r['applied']:,} applied, {r['seconds']:.1f} s incl. job "
            f"processing; calls {r['calls']}"
        )
    if "lists" in res:
        r = res["lists"]
        lines.append(
            f"- list membership: {r['changes']:,} adds ({r['applied']:,} applied, {r['batch']:,} per apply) in {r['calls']} calls "  # noqa: E501
            f"(1,000 ids each), windows scaled x{r['scale']:g} (steady {60 * r['scale']:g} s): sustained "
            f"**{r['sustained_ids_s']:,.0f} ids/s = {100 * r['ratio']:.1f} %** of the ceiling "
            f"{r['ceiling_ids_s']:,.0f} ids/s over {r['full_windows']} full steady windows (target >= 95 %); "
            f"**{r['throttled']} x 429 = {100 * r['throttled'] / max(r['calls'], 1):.1f} %** of calls "
            f"(target <= 1 %); calls let through per steady window {r['windows']}; "
            f"overall {r['overall_ids_s']:,.0f} ids/s, {r['seconds']:.1f} s; this client's capacity with no "
            f"rate limit: {r['capacity_ids_s']:,.0f} ids/s (the scaled ceiling is "
            f"{100 * r['ceiling_ids_s'] / r['capacity_ids_s']:.0f} % of it)"
        )
    if "events" in res:
        r = res["events"]
        lines.append(
            f"- event pull: {r['events']:,} events ({r['pages']:,} pages, {r['workers']} metric streams) in "
            f"{r['seconds']:.1f} s = **{r['rate']:,.0f} events/s**: {100 * r['of_ceiling']:.1f} % of the endpoint "  # noqa: E501
            f"ceiling {r['ceiling']:,.0f}/s, {100 * r['of_sandbox']:.1f} % of the sandbox's own throughput "
            f"{r['sandbox_raw']:,.0f}/s (bare client, 4 threads, bodies not parsed); "
            f"target >= 90 % of the lower: "
            f"**{100 * r['of_lower']:.1f} %**; records counted, not stored; events/s of each pull in turn "
            f"(the first renders every event, later ones are served from the sandbox's cache): "
            f"{', '.join(f'{x:,.0f}' for x in r['runs'])}; load average after (1/5/15 min) "
            f"{' / '.join(f'{x:.2f}' for x in r['load'])}"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--parts", default="import,lists,events")
    ap.add_argument("--changes", type=int, default=100_000)
    ap.add_argument("--list-profiles", type=int, default=100_000)
    ap.add_argument("--lists", type=int, default=8, help="x --list-profiles = the changes pushed")
    ap.add_argument("--scale", type=float, default=0.25)
    ap.add_argument("--apply-batch", type=int, default=2000, help="changes per apply (sync.executor.BATCH)")
    ap.add_argument("--contacts", type=int, default=14_000, help="data set size (events: ~70 per contact)")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--pulls", type=int, default=1, help="full event pulls; the last is reported")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    parent, child = mp.Pipe()
    extra = max(args.changes, args.list_profiles) if parts & {"import", "lists"} else 0
    contacts = args.contacts if "events" in parts else 100
    proc = mp.Process(target=_serve, args=(child, contacts, extra, 100.0 if "events" in parts else 1.0))
    proc.start()
    info = parent.recv()
    res: dict[str, Any] = {}
    try:
        if "import" in parts:
            res["import"] = bench_import(info, parent, args.changes)
            print(res["import"], flush=True)
        if "lists" in parts:
            res["lists"] = bench_lists(
                info, parent, args.list_profiles, args.lists, args.scale, args.apply_batch
            )
            print(res["lists"], flush=True)
        if "events" in parts:
            res["events"] = bench_events(info, args.workers, args.pulls)
            print(res["events"], flush=True)
    finally:
        parent.send(("stop",))
        parent.recv()
        proc.join(10)
    text = report(res, "python bench/bench_klaviyo_push.py " + " ".join(sys.argv[1:]))
    print(text)
    if args.record:
        with RESULTS.open("a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
