"""The durable outbox: planned changes are committed here before anything is sent.

One row per ``(destination, record, target)`` (``uq_outbox_target``): a newer plan replaces an
unsent older change of the same target (attempts start again); the same change planned again
keeps its row (and its attempts and back-off). Item states::

    pending --claim--> inflight --confirmed--> (row deleted, acked_values + audit "applied")
       ^                  |  \\--retryable--> pending (attempts+1, next_attempt_at) / dead
       |                  |   \\--rejected---> dead (last_error)
       +--release/lease---+
    dead --retry_dead (re-planned from desired vs acked)--> pending

Claiming takes a batch for one destination and stamps it with a claim token and a lease in
one statement (SQLite: ``UPDATE ... WHERE id IN (SELECT ... LIMIT n)`` under the write lock;
PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` then the UPDATE, one transaction), so two
workers never send the same item. An item whose lease ran out (its worker died) is claimable
again; :func:`release` frees every claim at once (for a single-flight run after a crash).
Settling a batch is one transaction: acknowledged values, the outbox rows and the audit
entries change together. A result for an item that was superseded meanwhile still records
the acknowledged value (the provider did confirm it) but leaves the newer item pending.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Row,
    Table,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from connectors.records import Change, ChangeOp, JsonValue, PushResult, PushStatus
from sync import audit
from sync.plan import Key, Plan, PlannedChange, change_for
from sync.store import schema
from sync.store.tx import begin_write

OUT = schema.outbox
PENDING, INFLIGHT, DEAD = "pending", "inflight", "dead"
# The acknowledged value of a field or list membership whose write was in flight when its claim
# was released: it may or may not have been applied, so it equals no desired value and the next
# plan sends the desired state again -- even when that is the value acknowledged before.
UNKNOWN: JsonValue = {"$segsync": "unknown: a write was interrupted"}
_IN = 500


def backoff_ms(attempts: int) -> int:
    """Wait before the next try after ``attempts`` failed sends: 30 s doubling, at most 1 h."""
    return int(min(3_600_000, 30_000 * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True)
class Item:
    """An outbox row as the executor sees it."""

    id: int
    planned: PlannedChange
    attempts: int
    run_id: int | None
    trigger: str
    target: str  # the outbox row's target (an event's carries its idempotency key)

    @property
    def change(self) -> Change:
        return self.planned.change


@dataclass(frozen=True)
class EnqueueSummary:
    queued: int  # new or replaced rows
    kept: int  # the same change was already waiting (or dead)
    dropped: int  # rows no longer needed (desired == acked now, or held back)


def row_target(p: PlannedChange) -> str:
    """The outbox target of a change: its state key; an event's also carries its
    idempotency key (every transition is its own item)."""
    if p.change.op is ChangeOp.EVENT:
        return f"{p.target}#{p.change.idempotency_key}"
    return p.target


def _row(p: PlannedChange, run_id: int | None, trigger: str, now_ms: int) -> dict[str, Any]:
    c = p.change
    return {
        "destination": c.destination, "record_id": c.record_id, "target": row_target(p),
        "op": str(c.op), "value": c.value, "idempotency_key": c.idempotency_key,
        "contact_id": p.contact_id, "contact_key": p.contact_key, "old_value": p.old_value,
        "reason": p.reason, "segments": audit.segments_text(p.segments), "run_id": run_id,
        "trigger": trigger, "status": PENDING, "attempts": 0, "next_attempt_at": now_ms,
        "claim_token": None, "lease_until": None, "last_error": None,
        "created_at": now_ms, "updated_at": now_ms,
    }


def _existing(conn: Connection, plan: Plan) -> dict[Key, tuple[int, str, str]]:
    """key -> (id, status, idempotency key) of the level-state rows the plan covers."""
    cols = (OUT.c.id, OUT.c.destination, OUT.c.record_id, OUT.c.target, OUT.c.status, OUT.c.idempotency_key)
    not_event = ~OUT.c.target.like("event:%")
    queries = []
    if plan.full:
        dests = sorted({p.change.destination for p in (*plan.changes, *plan.held)} | set(plan.records))
        queries = [select(*cols).where(OUT.c.destination.in_(dests), not_event)] if dests else []
    else:
        for dest, rids in plan.records.items():
            ids = sorted(rids)
            queries += [select(*cols).where(OUT.c.destination == dest, OUT.c.record_id.in_(ids[i:i + _IN]),
                                            not_event) for i in range(0, len(ids), _IN)]
    out: dict[Key, tuple[int, str, str]] = {}
    for q in queries:
        for rid_, dest, rec, target, status, ikey in conn.execute(q):
            out[(dest, rec, target)] = (int(rid_), status, ikey)
    return out


def enqueue(conn: Connection, plan: Plan, *, run_id: int | None, trigger: str, now_ms: int) -> EnqueueSummary:
    """Commit ``plan``'s changes to the outbox (in the caller's transaction): insert new ones,
    replace superseded ones, drop the ones in scope that no longer need sending, and audit
    the held-back ones as skipped."""
    existing = _existing(conn, plan)
    events = _event_rows(conn, [(p.change.destination, p.change.record_id, row_target(p))
                                for p in plan.changes if p.change.op is ChangeOp.EVENT])
    inserts, replaced, kept = [], [], 0
    planned: set[Key] = set()
    for p in plan.changes:
        key = (p.change.destination, p.change.record_id, row_target(p))
        planned.add(key)
        found = existing.get(key)
        if found is None and p.change.op is ChangeOp.EVENT:
            found = events.get(key)
        if found is None:
            inserts.append(_row(p, run_id, trigger, now_ms))
        elif found[2] == p.change.idempotency_key:
            kept += 1
        else:
            replaced.append((found[0], _row(p, run_id, trigger, now_ms)))
    obsolete = [v[0] for k, v in existing.items() if k not in planned]
    for i in range(0, len(obsolete), _IN):
        conn.execute(delete(OUT).where(OUT.c.id.in_(obsolete[i:i + _IN])))
    for row_id, row in replaced:
        row.pop("created_at")
        conn.execute(update(OUT).where(OUT.c.id == row_id).values(**row))
    if inserts:
        conn.execute(OUT.insert(), inserts)
    if plan.held:
        audit.record(conn, [audit.entry(p, "skipped", now_ms, run_id, trigger, attempts=0,
                                        error="held by the mass-removal guard") for p in plan.held])
    return EnqueueSummary(len(inserts) + len(replaced), kept, len(obsolete))


def _event_rows(conn: Connection, keys: Sequence[Key]) -> dict[Key, tuple[int, str, str]]:
    """key -> (id, status, idempotency key) of the event rows already queued (per chunk of
    record ids: one query, not one per event)."""
    by_dest: dict[str, set[str]] = {}
    for dest, rec, _target in keys:
        by_dest.setdefault(dest, set()).add(rec)
    wanted = set(keys)
    out: dict[Key, tuple[int, str, str]] = {}
    cols = (OUT.c.id, OUT.c.destination, OUT.c.record_id, OUT.c.target, OUT.c.status, OUT.c.idempotency_key)
    for dest, recs in by_dest.items():
        ids = sorted(recs)
        for i in range(0, len(ids), _IN):
            q = select(*cols).where(OUT.c.destination == dest, OUT.c.record_id.in_(ids[i:i + _IN]),
                                    OUT.c.target.like("event:%"))
            for rid_, d, rec, target, status, ikey in conn.execute(q):
                if (d, rec, target) in wanted:
                    out[(d, rec, target)] = (int(rid_), status, ikey)
    return out


def _item(row: Any) -> Item:
    op = ChangeOp(row.op)
    name = row.target.split(":", 1)[1]
    if op is ChangeOp.EVENT:
        name = name.rsplit("#", 1)[0]
    change = Change(row.destination, row.record_id, op, name, row.value, row.idempotency_key)
    planned = PlannedChange(change, row.contact_id, row.contact_key, row.old_value, row.reason or "",
                            audit.segments_of(row.segments))
    return Item(int(row.id), planned, int(row.attempts), row.run_id, row.trigger, row.target)


def claim(engine: Engine, destination: str, limit: int, *, now_ms: int, due_by: int | None = None,
          lease_ms: int = 300_000, owner: str | None = None) -> tuple[str, list[Item]]:
    """Claim up to ``limit`` due items of ``destination`` (pending with ``next_attempt_at <=
    due_by`` (default now), or inflight with an expired lease). Returns (token, items); the
    token starts with ``owner-`` when an owner is given (see :func:`release`)."""
    token = uuid.uuid4().hex if owner is None else f"{owner}-{uuid.uuid4().hex}"
    due = now_ms if due_by is None else due_by
    claimable = and_(OUT.c.destination == destination, or_(
        and_(OUT.c.status == PENDING, OUT.c.next_attempt_at <= due),
        and_(OUT.c.status == INFLIGHT, OUT.c.lease_until < now_ms)))
    stamp = {"status": INFLIGHT, "claim_token": token, "lease_until": now_ms + lease_ms,
             "updated_at": now_ms}
    rows = claim_rows(engine, OUT, claimable, limit, stamp)
    return token, [_item(r) for r in rows]


def claim_rows(engine: Engine, table: Table, claimable: ColumnElement[bool], limit: int,
               stamp: Mapping[str, Any]) -> list[Row[Any]]:
    """Stamp up to ``limit`` rows of ``table`` (lowest ids first) that match ``claimable``
    with ``stamp`` (which sets ``claim_token``) and return them, in one transaction: two
    claimers never get the same row. ``table`` needs ``id`` and ``claim_token`` columns."""
    with begin_write(engine) as conn:
        pick = select(table.c.id).where(claimable).order_by(table.c.id).limit(limit)
        if conn.dialect.name == "postgresql":
            ids = [r[0] for r in conn.execute(pick.with_for_update(skip_locked=True))]
            if ids:
                conn.execute(update(table).where(table.c.id.in_(ids)).values(**stamp))
        else:
            conn.execute(update(table).where(table.c.id.in_(pick.scalar_subquery())).values(**stamp))
        token = stamp["claim_token"]
        return list(conn.execute(select(table).where(table.c.claim_token == token)
                                 .order_by(table.c.id)).all())


RUN_OWNER = "run"  # claims of the single-flight run (:mod:`sync.run`) carry this owner


def release(engine: Engine, token: str | None = None, *, now_ms: int, stale_of: str | None = None) -> int:
    """Put claimed items back to pending: those of ``token``, or every claim; with
    ``stale_of``: only the claims of that owner (a crashed holder of the owner's single-flight
    lock) and claims whose lease ran out -- a live worker's claims (a real-time flusher's)
    are never taken."""
    cond = OUT.c.status == INFLIGHT if token is None else OUT.c.claim_token == token
    if stale_of is not None:
        cond = and_(cond, or_(OUT.c.claim_token.like(f"{stale_of}-%"), OUT.c.lease_until < now_ms))
    with begin_write(engine) as conn:
        _forget_acks(conn, conn.execute(select(OUT.c.destination, OUT.c.record_id, OUT.c.target)
                                        .where(cond)).all(), now_ms)
        return conn.execute(update(OUT).where(cond).values(
            status=PENDING, claim_token=None, lease_until=None, updated_at=now_ms)).rowcount


def _forget_acks(conn: Connection, keys: Sequence[Any], now_ms: int) -> None:
    """Mark the acknowledged values of released field/list items :data:`UNKNOWN`."""
    rows = [{"destination": d, "record_id": r, "target": t, "value": UNKNOWN, "acked_at": now_ms,
             "request_id": None} for d, r, t in keys if t.startswith(("field:", "list:"))]
    if not rows:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    ins = insert(schema.acked_values)
    conn.execute(ins.on_conflict_do_update(
        index_elements=["destination", "record_id", "target"],
        set_={"value": ins.excluded.value, "acked_at": ins.excluded.acked_at,
              "request_id": ins.excluded.request_id}), rows)


def _ack_all(conn: Connection, items: Sequence[tuple[Item, str | None]], now_ms: int) -> None:
    """Record the acknowledged values of confirmed items: removals delete, the rest upsert
    (one executemany each; an item's key is unique in the outbox, so order does not matter)."""
    a = schema.acked_values
    gone: dict[Key, dict[str, Any]] = {}
    kept: dict[Key, dict[str, Any]] = {}
    for item, request_id in items:
        change = item.change
        key = (change.destination, change.record_id, item.target)
        gone.pop(key, None)
        kept.pop(key, None)
        if change.op in (ChangeOp.UNSET_FIELD, ChangeOp.LIST_REMOVE):
            gone[key] = {"k_dest": key[0], "k_rec": key[1], "k_target": key[2]}
            continue
        value: JsonValue = True if change.op in (ChangeOp.LIST_ADD, ChangeOp.EVENT) else change.value
        kept[key] = {"destination": key[0], "record_id": key[1], "target": key[2], "value": value,
                     "acked_at": now_ms, "request_id": request_id}
    if gone:
        same = and_(a.c.destination == bindparam("k_dest"), a.c.record_id == bindparam("k_rec"),
                    a.c.target == bindparam("k_target"))
        conn.execute(delete(a).where(same), list(gone.values()))
    if kept:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        ins = insert(a)
        conn.execute(ins.on_conflict_do_update(
            index_elements=["destination", "record_id", "target"],
            set_={"value": ins.excluded.value, "acked_at": ins.excluded.acked_at,
                  "request_id": ins.excluded.request_id}), list(kept.values()))


@dataclass
class Settled:
    applied: int = 0
    failed: int = 0  # retryable: pending again
    dead: int = 0


def settle(engine: Engine, token: str, outcomes: Sequence[tuple[Item, PushResult]], *, now_ms: int,
           max_attempts: int, run_id: int | None, trigger: str,
           wait: Callable[[int], int] = backoff_ms) -> Settled:
    """Record the provider's verdicts on claimed items, in one transaction (set-based: one
    statement per kind of verdict, not one per item)."""
    out = Settled()
    entries = []
    acked: list[tuple[Item, str | None]] = []
    applied: list[int] = []
    again: list[dict[str, Any]] = []  # retryable: pending again
    dead: list[dict[str, Any]] = []
    for item, result in outcomes:
        attempts = item.attempts + 1
        if result.status is PushStatus.APPLIED:
            acked.append((item, result.request_id))
            applied.append(item.id)
            out.applied += 1
            status = "applied"
        elif result.status is PushStatus.RETRYABLE and attempts < max_attempts:
            again.append({"b_id": item.id, "b_attempts": attempts, "b_next": now_ms + wait(attempts),
                          "b_error": result.reason})
            out.failed += 1
            status = "failed"
        else:
            dead.append({"b_id": item.id, "b_attempts": attempts, "b_error": result.reason})
            out.dead += 1
            status = "dead"
        entries.append(audit.entry(item.planned, status, now_ms, run_id, trigger, attempts=attempts,
                                   request_id=result.request_id, error=result.reason))
    with begin_write(engine) as conn:
        _ack_all(conn, acked, now_ms)
        for i in range(0, len(applied), _IN):
            conn.execute(delete(OUT).where(OUT.c.id.in_(applied[i:i + _IN]), OUT.c.claim_token == token))
        mine = and_(OUT.c.id == bindparam("b_id"), OUT.c.claim_token == token)
        unclaim: dict[str, Any] = {"attempts": bindparam("b_attempts"), "claim_token": None,
                                   "lease_until": None, "last_error": bindparam("b_error"),
                                   "updated_at": now_ms}
        if again:
            conn.execute(update(OUT).where(mine).values(status=PENDING, next_attempt_at=bindparam("b_next"),
                                                        **unclaim), again)
        if dead:
            conn.execute(update(OUT).where(mine).values(status=DEAD, **unclaim), dead)
        audit.record(conn, entries)
    return out


def retry_dead(engine: Engine, *, now_ms: int, destinations: Iterable[str] | None = None) -> tuple[int, int]:
    """Re-plan every dead item from desired vs acknowledged state: still needed -> pending
    again with the fresh change and attempts reset; no longer needed -> dropped.
    Returns (requeued, dropped)."""
    d, a = schema.desired_values, schema.acked_values
    requeued = dropped = 0
    with begin_write(engine) as conn:
        q = select(OUT).where(OUT.c.status == DEAD)
        if destinations is not None:
            q = q.where(OUT.c.destination.in_(sorted(destinations)))
        for row in conn.execute(q).all():
            item = _item(row)
            change: Change | None = item.change
            old: JsonValue = item.planned.old_value
            if not row.target.startswith("event:"):
                key = (row.destination, row.record_id, row.target)
                want = conn.execute(select(d.c.value).where(
                    d.c.destination == key[0], d.c.record_id == key[1], d.c.target == key[2])).scalar()
                have = conn.execute(select(a.c.value).where(
                    a.c.destination == key[0], a.c.record_id == key[1], a.c.target == key[2])).scalar()
                change = change_for(key, want, have)
                old = have
            if change is None:
                conn.execute(delete(OUT).where(OUT.c.id == row.id))
                dropped += 1
                continue
            conn.execute(update(OUT).where(OUT.c.id == row.id).values(
                op=str(change.op), value=change.value, idempotency_key=change.idempotency_key, old_value=old,
                status=PENDING, attempts=0, next_attempt_at=now_ms, claim_token=None,
                lease_until=None, updated_at=now_ms))
            requeued += 1
    return requeued, dropped


def counts(engine: Engine) -> dict[tuple[str, str], int]:
    """(destination, status) -> items."""
    with engine.connect() as conn:
        rows = conn.execute(select(OUT.c.destination, OUT.c.status, func.count()).group_by(
            OUT.c.destination, OUT.c.status)).all()
    return {(r[0], r[1]): int(r[2]) for r in rows}
