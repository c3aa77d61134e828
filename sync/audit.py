"""The audit log: every applied, failed, dead-lettered and skipped change.

Each entry: time, run id, trigger (schedule | webhook | manual), contact (id and key), the
destination and record id, the target (``field:<name>`` / ``list:<name>`` / ``event:<name>``;
``privacy:deletion`` for a privacy-deletion request, :mod:`sync.remote_delete`),
the operation, old and new value, the reason (``segment:<name>@<rule hash>``, ...), status
(``applied`` | ``failed`` (will be retried) | ``dead`` | ``skipped``), attempts, the provider's
request id and the error. The table keeps the plain contact key (it is the store, next to the
contacts themselves); *logs* only ever show :func:`hash_key` of it.

Entries are written in the same transaction as the outbox and acknowledged state they
describe (``sync.outbox``). :func:`query` filters them, :func:`export_jsonl` writes them one
JSON object per line, and :func:`enforce_retention` deletes entries older than the
``[audit] retention`` setting (called on every run).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, Engine, delete, select

from sync.plan import PlannedChange
from sync.store import schema

A = schema.audit_log
STATUSES = ("applied", "failed", "dead", "skipped")
TRIGGERS = ("schedule", "webhook", "manual")


def hash_key(key: str | None) -> str:
    """What logs show instead of a contact key: a short, stable sha256 prefix."""
    if key is None:
        return "-"
    return "k:" + hashlib.sha256(key.encode()).hexdigest()[:12]


def segments_text(segments: Sequence[str]) -> str | None:
    """``("a", "b")`` -> ``",a,b,"`` (so ``LIKE '%,a,%'`` finds one segment)."""
    return f",{','.join(segments)}," if segments else None


def segments_of(text: str | None) -> tuple[str, ...]:
    return tuple(s for s in (text or "").split(",") if s)


def entry(p: PlannedChange, status: str, at: int, run_id: int | None, trigger: str, *,
          attempts: int, request_id: str | None = None, error: str | None = None) -> dict[str, Any]:
    """The audit row for planned change ``p`` ending in ``status``."""
    c = p.change
    return {
        "at": at, "run_id": run_id, "trigger": trigger, "contact_id": p.contact_id,
        "contact_key": p.contact_key, "destination": c.destination, "record_id": c.record_id,
        "target": p.target, "op": str(c.op), "old_value": p.old_value, "new_value": c.value,
        "reason": p.reason, "segments": segments_text(p.segments), "status": status,
        "attempts": attempts, "request_id": request_id, "error": error,
    }


def record(conn: Connection, entries: Sequence[dict[str, Any]]) -> None:
    if entries:
        conn.execute(A.insert(), list(entries))


@dataclass(frozen=True)
class Filter:
    contact: str | None = None
    segment: str | None = None
    since_ms: int | None = None
    status: str | None = None
    destination: str | None = None
    run_id: int | None = None
    limit: int | None = None


def _select(f: Filter) -> Any:
    q = select(A)
    if f.contact is not None:
        key = f.contact.strip().lower() if "@" in f.contact else f.contact  # emails are stored normalised
        q = q.where(A.c.contact_key == key)
    if f.segment is not None:
        q = q.where(A.c.segments.like(f"%,{f.segment},%"))
    if f.since_ms is not None:
        q = q.where(A.c.at >= f.since_ms)
    if f.status is not None:
        q = q.where(A.c.status == f.status)
    if f.destination is not None:
        q = q.where(A.c.destination == f.destination)
    if f.run_id is not None:
        q = q.where(A.c.run_id == f.run_id)
    q = q.order_by(A.c.at, A.c.id)
    return q if f.limit is None else q.limit(f.limit)


def _json(row: Any) -> dict[str, Any]:
    out = {k: getattr(row, k) for k in (
        "id", "at", "run_id", "trigger", "contact_id", "contact_key", "destination", "record_id",
        "target", "op", "old_value", "new_value", "reason", "status", "attempts", "request_id", "error")}
    out["segments"] = list(segments_of(row.segments))
    return out


def iter_entries(engine: Engine, f: Filter = Filter()) -> Iterator[dict[str, Any]]:
    """Matching entries, oldest first, as JSON-ready dicts (streamed)."""
    with engine.connect() as conn:
        for row in conn.execution_options(yield_per=1000).execute(_select(f)):
            yield _json(row)


def query(engine: Engine, f: Filter = Filter()) -> list[dict[str, Any]]:
    return list(iter_entries(engine, f))


def export_jsonl(engine: Engine, out: Path | IO[str], f: Filter = Filter()) -> int:
    """Write matching entries as JSON lines to a file (or stream); returns how many."""
    if isinstance(out, Path):
        with out.open("w", encoding="utf-8") as fh:
            return export_jsonl(engine, fh, f)
    n = 0
    for item in iter_entries(engine, f):
        out.write(json.dumps(item, ensure_ascii=False, sort_keys=True) + "\n")
        n += 1
    return n


def enforce_retention(conn: Connection, retention_ms: int, now_ms: int) -> int:
    """Delete entries older than ``retention_ms``; returns how many went."""
    return int(conn.execute(delete(A).where(A.c.at < now_ms - retention_ms)).rowcount or 0)
