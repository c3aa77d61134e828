"""Import speed: write N events (JSONL or CSV) for N/10 contacts, import them into a fresh store,
then import the same file again (every row a duplicate). Prints rows/s for both passes.

    python3 -m bench.import_bench --events 1000000 [--format csv] [--url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
import time
from pathlib import Path

from mapping.models import Config
from mapping.project import Project
from mapping.rules.ast import Type
from sync.importer import import_events
from sync.store.db import open_store

TYPES = {
    "opened_email": {"campaign": Type.STRING},
    "clicked_email": {"campaign": Type.STRING, "url": Type.STRING},
    "viewed_product": {"product": Type.STRING, "price": Type.NUMBER},
    "added_to_cart": {"product": Type.STRING, "price": Type.NUMBER},
    "placed_order": {"order_id": Type.STRING, "items": Type.NUMBER},
}
START = 1_730_000_000_000  # 2024-10-27
SPAN = 100 * 86_400_000


def write(path: Path, events: int, fmt: str) -> None:
    rng = random.Random(1)
    contacts = max(1, events // 10)
    names = sorted(TYPES)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f) if fmt == "csv" else None
        if writer:
            writer.writerow(["email", "type", "timestamp", "value", "properties", "event_id"])
        for n in range(events):
            type_ = names[n % len(names)]
            ts = START + rng.randrange(SPAN)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts // 1000)) + f".{ts % 1000:03d}Z"
            props = {"campaign": f"c{n % 7}"} if "email" in type_ else {
                "product": f"p{rng.randrange(500)}", "price": rng.randrange(5, 500)}
            value = float(rng.randrange(10, 900)) if type_ == "placed_order" else None
            email = f"user{rng.randrange(contacts)}@example.com"
            event_id = f"e{n}" if n % 2 else ""  # half with ids, half deduped by content hash
            if writer:
                writer.writerow([email, type_, stamp, "" if value is None else value,
                                 json.dumps(props), event_id])
            else:
                row: dict[str, object] = {"email": email, "type": type_, "timestamp": stamp,
                                          "value": value, "properties": props}
                if event_id:
                    row["event_id"] = event_id
                f.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    parser.add_argument("--url", default=None, help="store URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        data = base / f"events.{args.format}"
        t0 = time.perf_counter()
        write(data, args.events, args.format)
        print(f"wrote {args.events} events ({data.stat().st_size / 1e6:.0f} MB) "
              f"in {time.perf_counter() - t0:.1f}s")
        project = Project(config=Config(), path=None, base_dir=base, attributes={},
                          date_attributes=frozenset(), events={k: dict(v) for k, v in TYPES.items()})
        engine = open_store(args.url or f"sqlite:///{base / 'bench.db'}", base)
        for label in ("first import", "re-import"):
            t0, c0 = time.perf_counter(), time.process_time()
            report = import_events(engine, project, data)
            took, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(f"{label}: {report.rows} rows, {report.inserted} new, {report.unchanged} "
                  f"duplicates, {report.rejected} rejected in {took:.1f}s wall, {cpu:.1f}s CPU "
                  f"({report.rows / took:,.0f} rows/s)")
        engine.dispose()


if __name__ == "__main__":
    main()
