"""Profile writes: one PATCH per profile for small sets, bulk import jobs for large ones.

A `ProfileWrite` is everything one apply asks of one profile: properties to set and
properties to unset (``meta.patch_properties.unset``); the last change of a property wins.
A target named like one of Klaviyo's own profile fields (`PROFILE_FIELDS`: ``email``,
``first_name``, ...) is written as that field (``attributes.<field>``; unset = ``null``,
which clears it), any other target as a custom property.

Bulk import (``POST /api/profile-bulk-import-jobs``): rows are packed greedily into jobs of
at most ``max_job_profiles`` rows and ``max_job_bytes`` bytes of JSON (a row over
``max_profile_bytes`` is rejected locally). All jobs are submitted first, then polled in
submission order with growing waits (``job_poll_initial`` x1.5 up to ``job_poll_max``,
injected ``sleep``), until ``job_timeout``. A finished job's import errors are paged and
mapped back to rows by their ``source.pointer`` (``/data/attributes/profiles/data/<i>/…``);
those profiles are rejected with the error's detail — unless the error's code says the
failure was temporary (`TRANSIENT_CODES`: a server-side error on that row, the partial failure
of a bulk job), which makes that row *retryable* — and every other row is applied. Rows of a
job that did not finish, was cancelled, or reported errors we cannot place are retryable too:
sending a "set" again is harmless.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.errors import (
    AuthError,
    ConnectorError,
    PermanentError,
    QuotaExhausted,
    RecordRejected,
    RetryableError,
)
from connectors.klaviyo.calls import KlaviyoCalls, KlaviyoOptions
from connectors.klaviyo.convert import IDENTIFIER_FIELDS, STANDARD_FIELDS
from connectors.klaviyo.wire import PROVIDER, document, index_in_pointer, resources, string_field
from connectors.records import JsonValue

__all__ = ["PROFILE_FIELDS", "TRANSIENT_CODES", "ProfileWrite", "import_profiles", "patch_profile"]

PROFILE_FIELDS = frozenset(STANDARD_FIELDS) | frozenset(IDENTIFIER_FIELDS)
# import-error codes of a temporary, server-side failure of one row ([UNVERIFIED]: the sandbox's
# choice, QUIRKS.md); everything else is the row's own fault
TRANSIENT_CODES = frozenset({"internal_error", "server_error", "service_unavailable", "throttled"})

Outcome = ConnectorError | None  # None = applied
_ENVELOPE = 512  # bytes of the job document around its rows


@dataclass
class ProfileWrite:
    record_id: str
    sets: dict[str, JsonValue] = field(default_factory=dict)
    unsets: dict[str, None] = field(default_factory=dict)  # ordered set
    positions: list[int] = field(default_factory=list)  # indexes of the changes in the apply

    def set(self, name: str, value: JsonValue) -> None:
        self.unsets.pop(name, None)
        self.sets[name] = value

    def unset(self, name: str) -> None:
        self.sets.pop(name, None)
        self.unsets[name] = None

    def resource(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {k: v for k, v in self.sets.items() if k in PROFILE_FIELDS}
        attrs.update((k, None) for k in self.unsets if k in PROFILE_FIELDS)
        custom = {k: v for k, v in self.sets.items() if k not in PROFILE_FIELDS}
        unset = [k for k in self.unsets if k not in PROFILE_FIELDS]
        if custom:
            attrs["properties"] = custom
        res: dict[str, Any] = {"type": "profile", "id": self.record_id, "attributes": attrs}
        if unset:
            res["meta"] = {"patch_properties": {"unset": unset}}
        return res


def fatal(error: ConnectorError) -> bool:
    """Errors that no record can get past: raised out of ``apply`` instead of reported."""
    return isinstance(error, AuthError | QuotaExhausted)


def patch_profile(calls: KlaviyoCalls, write: ProfileWrite) -> Outcome:
    body = {"data": write.resource()}
    try:
        calls.call("update_profile", lambda: document(calls.profiles.update_profile(write.record_id, body),
                                                       "update_profile"))  # fmt: skip
    except ConnectorError as e:
        if fatal(e):
            raise
        return _rejected(write, e) if isinstance(e, PermanentError) else e
    return None


def _rejected(write: ProfileWrite, e: ConnectorError) -> RecordRejected:
    return RecordRejected(PROVIDER, write.record_id, e.message, status=e.status, request_id=e.request_id)


@dataclass
class _Job:
    rows: list[int]  # indexes into the writes
    id: str = ""


def _pack(writes: Sequence[ProfileWrite], opts: KlaviyoOptions, out: list[Outcome]) -> list[_Job]:
    jobs: list[_Job] = []
    size = 0
    for i, write in enumerate(writes):
        n = len(json.dumps(write.resource())) + 2
        if n > opts.max_profile_bytes:
            out[i] = RecordRejected(PROVIDER, write.record_id, f"profile payload is {n} bytes; "
                                    f"bulk import accepts at most {opts.max_profile_bytes}")  # fmt: skip
            continue
        if (
            not jobs
            or len(jobs[-1].rows) >= opts.max_job_profiles
            or size + n > opts.max_job_bytes - _ENVELOPE
        ):
            jobs.append(_Job([]))
            size = 0
        jobs[-1].rows.append(i)
        size += n
    return jobs


def import_profiles(
    calls: KlaviyoCalls,
    opts: KlaviyoOptions,
    writes: Sequence[ProfileWrite],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> list[Outcome]:
    """One outcome per write (None = applied); see the module docstring."""
    out: list[Outcome] = [None] * len(writes)
    jobs = _pack(writes, opts, out)
    submitted: list[_Job] = []
    for job in jobs:
        rows = [writes[i].resource() for i in job.rows]
        body = {"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": rows}}}}

        def submit(body: dict[str, Any] = body) -> str:
            doc = document(calls.profiles.bulk_import_profiles(body), "bulk_import_profiles")
            return string_field(doc, "data.id", "bulk_import_profiles")

        try:
            job.id = calls.call("bulk_import_profiles", submit)
            submitted.append(job)
        except ConnectorError as e:
            if fatal(e):
                raise
            for i in job.rows:
                out[i] = _rejected(writes[i], e) if isinstance(e, PermanentError) else e
    _await(calls, opts, writes, submitted, out, clock, sleep)
    return out


def _await(
    calls: KlaviyoCalls,
    opts: KlaviyoOptions,
    writes: Sequence[ProfileWrite],
    pending: list[_Job],
    out: list[Outcome],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> None:
    deadline = clock() + opts.job_timeout
    delay = opts.job_poll_initial
    while pending:
        sleep(delay)
        delay = min(opts.job_poll_max, delay * 1.5)
        while pending:
            job = pending[0]
            try:
                status, failed = _status(calls, job.id)
            except ConnectorError as e:
                if fatal(e):
                    raise
                if isinstance(e, RetryableError):
                    break  # poll again after the next wait
                why = f"status of import job {job.id} unknown: {e.message}"
                _all(job, out, RetryableError(PROVIDER, e.status, e.request_id, why))
                pending.pop(0)
                continue
            if status in ("queued", "processing"):
                break
            pending.pop(0)
            if status != "complete":
                _all(job, out, RetryableError(PROVIDER, None, None, f"import job {job.id} ended {status}"))
            elif failed:
                _map_errors(calls, writes, job, out)
        if pending and clock() >= deadline:
            for job in pending:
                why = f"import job {job.id} still running after {opts.job_timeout:g}s"
                _all(job, out, RetryableError(PROVIDER, None, None, why))
            return


def _all(job: _Job, out: list[Outcome], error: ConnectorError) -> None:
    for i in job.rows:
        out[i] = error


def _status(calls: KlaviyoCalls, job_id: str) -> tuple[str, int]:
    def get() -> tuple[str, int]:
        doc = document(calls.profiles.get_bulk_import_profiles_job(job_id), "get_bulk_import_profiles_job")
        status = string_field(doc, "data.attributes.status", "get_bulk_import_profiles_job")
        failed = doc["data"]["attributes"].get("failed_count") or 0
        return status, int(failed) if isinstance(failed, int) else 0

    return calls.call("get_bulk_import_profiles_job", get)


def _map_errors(calls: KlaviyoCalls, writes: Sequence[ProfileWrite], job: _Job, out: list[Outcome]) -> None:
    op = "get_errors_for_bulk_import_profiles_job"

    def fetch(cursor: str | None) -> dict[str, Any]:
        body = calls.profiles.get_errors_for_bulk_import_profiles_job(
            job.id, page_size=100, page_cursor=cursor
        )
        resources(body, op)
        return body  # type: ignore[no-any-return]

    unplaced: list[str] = []
    placed: set[int] = set()
    for doc in calls.pages(op, fetch):
        for item in doc["data"]:
            attrs = item["attributes"]
            detail = str(attrs.get("detail") or attrs.get("title") or "import error")
            pointer = str((attrs.get("source") or {}).get("pointer") or "")
            k = index_in_pointer(f"at {pointer}", r"/profiles/data/(\d+)")
            if k is None or not 0 <= k < len(job.rows):
                unplaced.append(detail)
                continue
            i = job.rows[k]
            code = attrs.get("code")
            reason = f"{code}: {detail}" if code else detail
            reason += f" (at {pointer}, import job {job.id})"
            if code in TRANSIENT_CODES:
                out[i] = RetryableError(PROVIDER, None, None, f"{writes[i].record_id}: {reason}")
            else:
                out[i] = RecordRejected(PROVIDER, writes[i].record_id, reason)
            placed.add(i)
    if unplaced:
        error = RetryableError(PROVIDER, None, None, f"import job {job.id} reported {len(unplaced)} error(s) "
                               f"that name no row, e.g. {unplaced[0]!r}")  # fmt: skip
        for i in job.rows:
            if i not in placed:
                out[i] = error
