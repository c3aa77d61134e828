# ruff: noqa: E501  (the report lines are prose)
"""HubSpot connector benchmark: push 100,000 contact property changes and pull 100,000 contacts
against the stand-in with HubSpot's Professional/Enterprise limit on (190 requests per rolling
10 s per token), through `HubSpotConnector` (official SDK, the shared rate budget and retry
policy, real clock).

    python bench/bench_hubspot_push.py              # print the numbers
    python bench/bench_hubspot_push.py --record     # ... and append them to bench/RESULTS.md
    python bench/bench_hubspot_push.py -n 20000     # a smaller run

The stand-in runs in its own process (as users run it), so its CPU does not share the client's
GIL. Targets (issue 4): push — sustained request rate >= 95 % of the ceiling (19/s), 429s <= 1 % of
requests, requests <= ceil(N/100) x 1.01; pull — >= 90 % of the endpoint's ceiling. The
sustained rate is measured on the stand-in's request log (arrival times), after the first 10 s
window, where the budget's initial burst of 190 would flatter it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.base import FieldSpec, SchemaSpec  # noqa: E402
from connectors.budget import RateBudget, hubspot_spec  # noqa: E402
from connectors.hubspot import HubSpotConnector  # noqa: E402
from connectors.records import Change, ChangeOp, PushStatus  # noqa: E402
from connectors.sandbox.hubspot import HubSpotSettings, HubSpotState, build_app  # noqa: E402
from connectors.sandbox.server import SandboxServer  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
TOKEN = "pat-bench"
CEILING = 190 / 10.0  # requests per second
T0 = 1_700_000_000_000


def _serve(n: int, port_out: Any) -> None:
    """The stand-in's process: serve `n` contacts until terminated."""
    from connectors.sandbox.control import ControlHooks, mount_control

    settings = HubSpotSettings(tokens={TOKEN})
    state = HubSpotState()
    people = ({"email": f"person{i}@example.com", "firstname": f"P{i}", "createdate": T0 + i} for i in range(n))
    state.load_records(people, [])
    app = build_app(state, settings)
    mount_control(app, ControlHooks(reset=app.limiter.reset))  # reset = fresh windows and log only
    server = SandboxServer(app).start()
    port_out.put(server.url)
    while True:
        time.sleep(3600)


def _log(session: requests.Session, url: str, route: str) -> list[dict[str, Any]]:
    resp = session.get(f"{url}/_sandbox/log", params={"route": route}, timeout=60)
    resp.raise_for_status()
    return resp.json()["entries"]  # type: ignore[no-any-return]


def _rates(entries: list[dict[str, Any]]) -> dict[str, float]:
    times = sorted(e["at_ms"] / 1000 for e in entries)
    first, last = times[0], times[-1]
    steady = [t for t in times if t >= first + 10.0]
    sustained = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else float("nan")
    return {
        "requests": len(entries),
        "status_429": sum(1 for e in entries if e["status"] == 429),
        "other_errors": sum(1 for e in entries if e["status"] >= 300 and e["status"] != 429),
        "elapsed_s": last - first,
        "overall_per_s": (len(entries) - 1) / (last - first) if last > first else float("nan"),
        "sustained_per_s": sustained,
    }


def run(n: int, workers: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    port_out = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(n, port_out), daemon=True)
    proc.start()
    session = requests.Session()
    try:
        url = port_out.get(timeout=300)
        budget = RateBudget(hubspot_spec())
        hc = HubSpotConnector(TOKEN, url, properties=["firstname", "seg_score"], budget=budget,
                              push_workers=workers)  # fmt: skip
        hc.ensure_schema(SchemaSpec(fields=(FieldSpec("seg_score", "number"),)))
        time.sleep(10.2)  # an empty window for the push (the schema calls spent from it)
        session.post(f"{url}/_sandbox/reset", timeout=60).raise_for_status()
        changes = [Change("hubspot", str(i), ChangeOp.SET_FIELD, "seg_score", i % 1000) for i in range(1, n + 1)]
        started = time.perf_counter()
        results = hc.apply(changes)
        push_wall = time.perf_counter() - started
        applied = sum(r.status is PushStatus.APPLIED for r in results)
        push = _rates(_log(session, url, "contacts.batch.update"))
        push.update(wall_s=push_wall, applied=applied, changes=n, limit_requests=math.ceil(n / 100) * 1.01)

        time.sleep(10.2)
        session.post(f"{url}/_sandbox/reset", timeout=60).raise_for_status()
        started = time.perf_counter()
        pulled = sum(len(page.records) for page in hc.pull_contacts(None))
        pull_wall = time.perf_counter() - started
        pull = _rates(_log(session, url, "contacts.list"))
        pull.update(wall_s=pull_wall, contacts=pulled)
        hc.close()
    finally:
        session.close()
        proc.terminate()
        proc.join()
    return {"n": n, "workers": workers, "push": push, "pull": pull}


def _machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = platform.processor() or platform.machine()
    return f"nproc {os.cpu_count()}, {mem:.1f} GiB RAM, {cpu}, Python {platform.python_version()} ({platform.system()} {platform.release()})"


def report(res: dict[str, Any], command: str) -> str:
    p, q = res["push"], res["pull"]
    pct = 100 * p["sustained_per_s"] / CEILING
    ok_push = pct >= 95 and p["status_429"] <= 0.01 * p["requests"] and p["requests"] <= p["limit_requests"]
    pull_pct = 100 * q["sustained_per_s"] / CEILING
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            f"## HubSpot connector: push {p['changes']:,} property changes, pull {q['contacts']:,} contacts — {now}",
            "",
            f"- command: `{command}`",
            f"- machine: {_machine()}",
            "- stand-in in its own process on loopback, rate limit on (190 per rolling 10 s per token); "
            f"`HubSpotConnector` with the default `hubspot_spec()` budget (margin 0.1 s), "
            f"{res['workers']} push workers",
            f"- push: {p['applied']:,} of {p['changes']:,} applied in **{p['requests']} batch-update requests** "
            f"(limit ceil(N/100) x 1.01 = {p['limit_requests']:.0f}); **{p['status_429']} x 429** "
            f"({100 * p['status_429'] / p['requests']:.2f} %, limit 1 %), {p['other_errors']} other errors; "
            f"sustained **{p['sustained_per_s']:.2f} req/s = {pct:.1f} %** of the 19/s ceiling (target >= 95 %); "
            f"overall incl. the first burst {p['overall_per_s']:.2f} req/s; {p['wall_s']:.1f} s wall "
            f"-> {'PASS' if ok_push else 'FAIL'}",
            f"- pull: {q['contacts']:,} contacts in {q['requests']} list requests (100 per page, + archived), "
            f"sustained **{q['sustained_per_s']:.2f} req/s = {pull_pct:.1f} %** of the ceiling (target >= 90 %); "
            f"{q['status_429']} x 429; {q['wall_s']:.1f} s wall = {q['contacts'] / q['wall_s']:,.0f} contacts/s "
            f"-> {'PASS' if pull_pct >= 90 else 'FAIL'}",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000, help="contacts (= property changes)")
    parser.add_argument("--workers", type=int, default=4, help="batches in flight during the push")
    parser.add_argument("--record", action="store_true", help="append the result to bench/RESULTS.md")
    args = parser.parse_args()
    command = "python bench/bench_hubspot_push.py" + (f" -n {args.n}" if args.n != 100_000 else "")
    text = report(run(args.n, args.workers), command + (" --record" if args.record else ""))
    print(text)
    if args.record:
        with RESULTS.open("a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
