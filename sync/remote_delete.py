"""Privacy-deletion requests to the providers (``[service] forget_remote``): a durable queue.

A forget (``segsync forget KEY``, a HubSpot ``contact.privacyDeletion`` webhook) that should
also delete the person in the providers commits one ``remote_deletions`` row per request in the
**same transaction** as the local removal (:func:`enqueue`, called by
:func:`sync.service.forget.forget_in`), so no crash and no provider outage loses a request.
A request names the person by the provider's record id when the person had an identity there,
else by email (:func:`targets`). Rows move like outbox items (:mod:`sync.outbox`)::

    pending --claim--> inflight --done------> done      (id_value erased)
       ^                  |  \\--rejected---> rejected  (id_value erased, last_error)
       |                  |   \\--retryable-> pending   (attempts+1, next_attempt_at backed off)
       +--lease ran out---+--provider stopped (bad token, quota): pending, unchanged

:func:`send_remote_deletions` claims what is due and calls ``Connector.request_deletion`` for
each row (HubSpot ``gdpr-delete``, Klaviyo ``data-privacy-deletion-jobs``; calls go through the
connector's retry policy and rate budget); each verdict is committed with its audit entry
(target ``privacy:deletion``, op ``privacy_delete``; status ``applied`` = done, ``failed`` =
retried later, ``dead`` = rejected) before the next request is sent. A retryable failure is
retried with the outbox back-off (30 s doubling, at most 1 h) for as long as it takes: a
deletion request is never dropped. After a transient failure (or a bad token, an exhausted
quota) that provider is not asked again in the same pass: its other requests wait, untouched.
Once a row is done or rejected its ``id_value`` (the person's id or email) is set to NULL;
``key_hash`` (the suppression hash of the same key) and the hidden contact key stay, so an
operator can still match a request to a person they name.

Who sends: ``segsync forget`` right after the local forget, ``segsync run`` before it pushes,
and, in ``segsync serve``, :class:`RemoteDeletionLoop` (woken when the inbox worker forgets
someone, and every ``poll_s`` for retries).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from connectors.base import Connector
from connectors.errors import ConnectorError
from connectors.records import DeletionKind, DeletionResult, DeletionStatus
from connectors.retry import RetrySettings
from mapping.errors import SegsyncError
from mapping.project import Project
from sync import audit
from sync.outbox import backoff_ms, claim_rows
from sync.service.forget import ForgetReport, forget, key_hash
from sync.store import schema
from sync.store.tx import begin_write

__all__ = ["SEND_RETRY", "DeletionReport", "RemoteDeletionLoop", "Request", "Sent", "Target",
           "enqueue", "forget_and_request", "pending", "send_remote_deletions",
           "states", "targets"]

LOG = logging.getLogger("segsync.remote_delete")
RD = schema.remote_deletions
PENDING, INFLIGHT, DONE, REJECTED = "pending", "inflight", "done", "rejected"
TARGET, OP = "privacy:deletion", "privacy_delete"
# In-process retries of one request stay short: the queue retries for as long as it takes.
SEND_RETRY = RetrySettings(max_attempts=3, max_elapsed=20.0)


@dataclass(frozen=True)
class Target:
    """One request: delete the person ``value`` (a record id or an email) in ``provider``."""

    provider: str
    kind: DeletionKind
    value: str

    @property
    def key_hash(self) -> str:
        return key_hash(self.provider if self.kind == "id" else "email", self.value)


def targets(keys: Sequence[tuple[str, str]], providers: Sequence[str]) -> tuple[list[Target], list[str]]:
    """The requests for a person with suppression keys ``keys`` (``(kind, value)``: email,
    external_id, hubspot, klaviyo): per provider one per record id the person has there, else
    one per email. Also returns the providers that cannot be asked (no id, no email known)."""
    emails = list(dict.fromkeys(v for k, v in keys if k == "email" and v))
    out: list[Target] = []
    unknown: list[str] = []
    for provider in dict.fromkeys(providers):
        ids = list(dict.fromkeys(v for k, v in keys if k == provider and v))
        if ids:
            out += [Target(provider, "id", i) for i in ids]
        elif emails:
            out += [Target(provider, "email", e) for e in emails]
        else:
            unknown.append(provider)
    return out, unknown


def enqueue(conn: Connection, wanted: Sequence[Target], *, reason: str, trigger: str,
            contact_key: str | None, now_ms: int) -> list[int]:
    """Queue ``wanted`` in the caller's transaction; returns the row ids, in order. A request
    already queued for the same provider and key (pending, or settled before) is due again."""
    ids: list[int] = []
    for target in wanted:
        digest = target.key_hash
        row = {"id_kind": target.kind, "id_value": target.value, "contact_key": contact_key,
               "reason": reason[:64], "trigger": trigger, "status": PENDING, "attempts": 0,
               "next_attempt_at": now_ms, "claim_token": None, "lease_until": None,
               "last_error": None, "request_id": None, "requested_at": now_ms, "done_at": None}
        found = conn.execute(select(RD.c.id).where(RD.c.provider == target.provider,
                                                   RD.c.key_hash == digest)).scalar()
        if found is None:
            found = conn.execute(RD.insert().values(provider=target.provider, key_hash=digest, **row)
                                 .returning(RD.c.id)).scalar_one()
        else:
            conn.execute(update(RD).where(RD.c.id == found).values(**row))
        ids.append(int(found))
    return ids


@dataclass(frozen=True)
class Sent:
    """The state of one request (after a send, or as queued)."""

    id: int
    provider: str
    kind: str
    status: str  # pending | inflight | done | rejected
    attempts: int
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "provider": self.provider, "by": self.kind, "status": self.status,
                "attempts": self.attempts, "error": self.error}


@dataclass
class DeletionReport:
    """What one :func:`send_remote_deletions` call did."""

    sent: list[Sent] = field(default_factory=list)  # one per request answered (or failed)
    stopped: dict[str, str] = field(default_factory=dict)  # provider -> why it was not (all) sent
    pending: int = 0  # requests still pending afterwards, all providers

    def count(self, status: str) -> int:
        return sum(1 for s in self.sent if s.status == status)

    @property
    def ok(self) -> bool:
        """Nothing rejected, nothing left to retry, no provider stopped."""
        return not self.stopped and all(s.status == DONE for s in self.sent)

    def to_json(self) -> dict[str, Any]:
        return {"done": self.count(DONE), "rejected": self.count(REJECTED),
                "to_retry": self.count(PENDING), "pending": self.pending,
                "stopped": dict(self.stopped), "requests": [s.to_json() for s in self.sent]}


def _claimable(now_ms: int) -> Any:
    return or_(and_(RD.c.status == PENDING, RD.c.next_attempt_at <= now_ms),
               and_(RD.c.status == INFLIGHT, RD.c.lease_until < now_ms))


def pending(engine: Engine) -> int:
    """Requests not settled yet (pending or in flight)."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(RD).where(
            RD.c.status.in_((PENDING, INFLIGHT)))).scalar_one())


def states(engine: Engine, ids: Sequence[int]) -> list[Sent]:
    """The current state of the requests ``ids``, in that order."""
    if not ids:
        return []
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(RD).where(RD.c.id.in_(list(ids))))}
    return [Sent(int(r.id), r.provider, r.id_kind, r.status, int(r.attempts), r.last_error)
            for i in ids if (r := rows.get(i)) is not None]


def _audit(row: Any, result: DeletionResult, attempts: int, now_ms: int,
           run_id: int | None) -> dict[str, Any]:
    record = row.id_value if row.id_kind == "id" else f"email:h:{row.key_hash[:12]}"
    status = {DeletionStatus.DONE: "applied", DeletionStatus.REJECTED: "dead",
              DeletionStatus.RETRYABLE: "failed"}[result.status]
    return {"at": now_ms, "run_id": run_id, "trigger": row.trigger, "contact_id": None,
            "contact_key": row.contact_key, "destination": row.provider, "record_id": record,
            "target": TARGET, "op": OP, "old_value": None, "new_value": None, "reason": row.reason,
            "segments": None, "status": status, "attempts": attempts,
            "request_id": result.request_id, "error": result.reason}


def _settle(engine: Engine, token: str, row: Any, result: DeletionResult, now_ms: int,
            run_id: int | None) -> Sent:
    """Record one verdict and its audit entry in one transaction."""
    attempts = int(row.attempts) + 1
    values: dict[str, Any] = {"attempts": attempts, "claim_token": None, "lease_until": None,
                              "last_error": result.reason, "request_id": result.request_id}
    if result.status is DeletionStatus.RETRYABLE:
        values.update(status=PENDING, next_attempt_at=now_ms + backoff_ms(attempts))
    else:
        values.update(status=DONE if result.status is DeletionStatus.DONE else REJECTED,
                      id_value=None, done_at=now_ms)
    with begin_write(engine) as conn:
        conn.execute(update(RD).where(RD.c.id == row.id, RD.c.claim_token == token).values(**values))
        audit.record(conn, [_audit(row, result, attempts, now_ms, run_id)])
    return Sent(int(row.id), row.provider, row.id_kind, values["status"], attempts, result.reason)


def _release(engine: Engine, token: str, ids: Sequence[int]) -> None:
    if ids:
        with begin_write(engine) as conn:
            conn.execute(update(RD).where(RD.c.id.in_(list(ids)), RD.c.claim_token == token).values(
                status=PENDING, claim_token=None, lease_until=None))


def _due_providers(engine: Engine, due: Any) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(RD.c.provider).where(due).distinct()).scalars())


def send_remote_deletions(engine: Engine, connectors: Mapping[str, Connector], now_ms: int,
                          limit: int = 100, *, only: Sequence[int] | None = None,
                          run_id: int | None = None, lease_ms: int = 300_000) -> DeletionReport:
    """Send up to ``limit`` due requests per provider (only the rows ``only`` when given; see
    the module docstring). A provider without a connector in ``connectors`` keeps its
    requests pending; one whose connector raises (bad token, exhausted quota) or answers a
    request with a transient failure is not asked again in this call (its other requests stay
    pending, untouched). Both are named in ``report.stopped``."""
    report = DeletionReport()
    due = _claimable(now_ms) if only is None else and_(_claimable(now_ms), RD.c.id.in_(list(only)))
    for provider in _due_providers(engine, due):
        connector = connectors.get(provider)
        if connector is None:
            report.stopped[provider] = f"no {provider} connector (configure [sources.{provider}])"
            continue
        token = uuid.uuid4().hex
        stamp = {"status": INFLIGHT, "claim_token": token, "lease_until": now_ms + lease_ms}
        rows = claim_rows(engine, RD, and_(RD.c.provider == provider, RD.c.id_value.is_not(None), due),
                          limit, stamp)
        for n, row in enumerate(rows):
            try:
                result = connector.request_deletion(row.id_kind, row.id_value)
            except ConnectorError as e:  # the provider cannot be used now
                result = DeletionResult.retryable(f"{type(e).__name__}: {e}", e.request_id)
            sent = _settle(engine, token, row, result, now_ms, run_id)
            report.sent.append(sent)
            LOG.info("%s privacy deletion %d (by %s, contact %s): %s%s", provider, sent.id, row.id_kind,
                     row.contact_key or "-", sent.status, f": {result.reason}" if result.reason else "")
            if result.status is DeletionStatus.RETRYABLE:
                report.stopped[provider] = result.reason or "retry later"
                LOG.warning("%s: privacy deletions paused until the next pass: %s", provider, result.reason)
                _release(engine, token, [int(r.id) for r in rows[n + 1:]])
                break
    report.pending = pending(engine)
    return report


def _build(project: Project, providers: Sequence[str]) -> tuple[dict[str, Connector], dict[str, str]]:
    """The connectors of ``providers`` with the short :data:`SEND_RETRY` policy, one by one so
    that a provider whose configuration is incomplete (a missing secret) does not hold back
    the others; and that problem per provider."""
    from mapping.errors import ConfigError
    from sync.connect import provider_connectors

    conns: dict[str, Connector] = {}
    problems: dict[str, str] = {}
    for provider in dict.fromkeys(providers):
        try:
            conns.update(provider_connectors(project, [provider], retry=SEND_RETRY))
        except ConfigError as e:
            problems[provider] = str(e)
    return conns, problems


def _close(conns: Mapping[str, Connector]) -> None:
    from sync.connect import close_connectors

    close_connectors(conns)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Request:
    """What became of one deletion request of a forget (``segsync forget`` prints these)."""

    provider: str
    kind: str  # id | email
    record: str | None  # the record id (None for a request by email)
    status: str  # done | rejected | pending (queued: sent by a later run / serve)
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {"provider": self.provider, "by": self.kind, "record": self.record,
                "status": self.status, "error": self.error}


def forget_and_request(engine: Engine, project: Project, key: str, *,
                       clock: Callable[[], int] = _wall_ms) -> tuple[ForgetReport, list[Request]]:
    """``segsync forget KEY``: forget the person locally with the deletion requests of
    ``[service] forget_remote`` queued (one transaction), then send those requests at once. A
    request that cannot be sent now (provider unreachable, a missing secret) stays queued, its
    reason in ``error``."""
    report = forget(engine, key, now_ms=clock(), remote=project.config.service.forget_remote)
    ids = [i for i, _ in report.remote]
    problems: dict[str, str] = {}
    if ids:
        conns, problems = _build(project, [t.provider for _, t in report.remote])
        try:
            send_remote_deletions(engine, conns, clock(), only=ids)
        finally:
            _close(conns)
    found = {s.id: s for s in states(engine, [i for i, _ in report.remote])}
    out = []
    for row_id, target in report.remote:
        state = found.get(row_id)
        status = state.status if state is not None else PENDING
        error = state.error if state is not None else None
        if status == PENDING and target.provider in problems:
            error = problems[target.provider]
        out.append(Request(target.provider, target.kind, target.value if target.kind == "id" else None,
                           PENDING if status == INFLIGHT else status, error))
    return report, out


class RemoteDeletionLoop:
    """The sender of ``segsync serve``: a thread that sends what is due soon after
    :meth:`wake` (the inbox worker forgot someone) and every ``poll_s`` (retries whose back-off
    ran out, requests left by ``segsync forget`` or a crash). Connectors are built on first
    need; a configuration error (a missing secret) is logged and tried again on the next pass."""

    def __init__(self, engine: Engine, project: Project, providers: Sequence[str], *,
                 clock: Callable[[], int] = _wall_ms, poll_s: float = 30.0,
                 connectors: Mapping[str, Connector] | None = None) -> None:
        self.engine = engine
        self.project = project
        self.providers = tuple(dict.fromkeys(providers))
        self.clock = clock
        self.poll_s = poll_s
        self._given = connectors is not None
        self._conns: dict[str, Connector] | None = dict(connectors) if connectors is not None else None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="segsync-remote-deletions", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            if self._conns is not None and not self._given:
                _close(self._conns)
                self._conns = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except (SegsyncError, SQLAlchemyError) as e:  # the store is away: next pass
                LOG.error("sending privacy deletions failed (kept for the next pass): %s", e)
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def run_once(self) -> DeletionReport:
        """Send what is due now (a provider whose connector cannot be built is skipped and
        named in ``stopped``; the connectors are built again on the next pass)."""
        with self._lock:
            if not _due_providers(self.engine, _claimable(self.clock())):
                return DeletionReport()
            if self._conns is None:
                self._conns, problems = _build(self.project, self.providers)
                for provider, problem in problems.items():
                    LOG.error("%s: privacy deletions wait: no connector: %s", provider, problem)
                if problems:  # built again on the next pass (the secret may be set by then)
                    conns, self._conns = self._conns, None
                    try:
                        report = send_remote_deletions(self.engine, conns, self.clock())
                    finally:
                        _close(conns)
                    report.stopped.update(problems)
                    return report
            return send_remote_deletions(self.engine, self._conns, self.clock())
