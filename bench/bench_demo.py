"""Time the README's first command's job: ``segsync demo`` at its default size (target < 60 s).

Runs ``segsync demo`` in a fresh subprocess (a fresh demo directory each time) and reports the
wall time, the child's CPU time and the load average before and after; ``--record`` appends
an entry to ``bench/RESULTS.md``.

    python bench/bench_demo.py [--runs N] [--record]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_run() -> tuple[float, float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "sync", "demo", "--dir", str(Path(tmp) / "demo")],
                              cwd=ROOT, capture_output=True, text=True, check=False)
        wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"segsync demo failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--record", action="store_true", help="append the result to bench/RESULTS.md")
    args = parser.parse_args()
    load_before = os.getloadavg()
    results = [one_run() for _ in range(args.runs)]
    load_after = os.getloadavg()
    walls = ", ".join(f"{w:.1f} s" for w, _, _ in results)
    cpus = ", ".join(f"{c:.1f} s" for _, c, _ in results)
    verdict = "met" if max(w for w, _, _ in results) < 60 else "NOT met"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    entry = (
        f"\n## Demo: `segsync demo` at its default size — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\n"
        f"- command: `python bench/bench_demo.py --runs {args.runs} --record`\n"
        f"- machine: nproc {os.cpu_count()}, {mem:.1f} GiB RAM, Python {platform.python_version()} "
        f"({platform.system()} {platform.release()})\n"
        f"- load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)\n"
        f"- wall: {walls} (target < 60 s: **{verdict}**); child CPU: {cpus}; "
        f"peak child RSS {max(r for _, _, r in results)} MiB\n"
    )
    print(entry)
    if args.record:
        with (ROOT / "bench" / "RESULTS.md").open("a") as fh:
            fh.write(entry)


if __name__ == "__main__":
    main()
