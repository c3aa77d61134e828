"""Bulk profile import jobs (``/api/profile-bulk-import-jobs``), processed asynchronously.

Spec ``bulk_import_profiles``: "Accepts up to 10,000 profiles per request. The maximum allowed
payload size is 5MB. The maximum allowed payload size per-profile is 100KB." -> 202 with a job
``queued``. A timer thread starts the job after ``settings.bulk_import_delay_s``; it is then
``processing`` (``completed_count``/``failed_count`` grow chunk by chunk) and ends ``complete``.
Rows are create-or-update (like ``/api/profile-import``); a bad row (e.g. an invalid email)
becomes an ``import-error`` and counts in ``failed_count``. Optional ``relationships.lists``
adds the imported profiles to those lists.

Under the ``partial`` fault the job is accepted but its first row and every 7th after it fail
with a *temporary* import error (code ``internal_error``; not imported, importing it again
works) — Klaviyo's form of a partially failed batch. How the real service reports a transient
per-row failure is [UNVERIFIED] (QUIRKS.md).
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

from connectors.sandbox.klaviyo.app import KlaviyoApp, route
from connectors.sandbox.klaviyo.errors import api_error, document, invalid, not_found
from connectors.sandbox.klaviyo.ids import iso
from connectors.sandbox.klaviyo.profiles import upsert
from connectors.sandbox.klaviyo.query import decode_cursor, links, page_size, parse_filter, sort_key
from connectors.sandbox.klaviyo.resources import data_object, keyset, self_link
from connectors.sandbox.klaviyo.state import ImportJob, KlaviyoState, Rejected
from connectors.sandbox.server import Request, Response

MAX_PROFILES = 10_000
MAX_BYTES = 5 * 1024 * 1024
MAX_PROFILE_BYTES = 100 * 1024
JOB_TTL_MS = 7 * 24 * 3600 * 1000
STATUSES = {"queued", "processing", "complete", "cancelled"}


def job_resource(req: Request, job: ImportJob) -> dict[str, Any]:
    attrs = {
        "status": job.status,
        "created_at": iso(job.created),
        "total_count": job.total,
        "completed_count": job.completed,
        "failed_count": job.failed,
        "completed_at": iso(job.completed_at) if job.completed_at else None,
        "expires_at": iso(job.created + JOB_TTL_MS),
        "started_at": iso(job.started) if job.started else None,
    }
    return {
        "type": "profile-bulk-import-job",
        "id": job.id,
        "attributes": attrs,
        "links": self_link(req, f"/api/profile-bulk-import-jobs/{job.id}/"),
    }


def register(app: KlaviyoApp) -> None:
    state = app.state

    @route(app, "POST", "/api/profile-bulk-import-jobs", "bulk_import_profiles")
    def create_job(req: Request) -> Response:
        if len(req.body) > MAX_BYTES:
            raise api_error(
                413, "request_too_large", "The maximum allowed payload size is 5MB.", pointer="/data"
            )
        data = data_object(req, "profile-bulk-import-job")
        rows = (data.get("attributes", {}).get("profiles") or {}).get("data")
        if not isinstance(rows, list) or not rows:
            raise invalid(
                "'profiles.data' must be a non-empty array.", pointer="/data/attributes/profiles/data"
            )
        if len(rows) > MAX_PROFILES:
            raise invalid(
                f"This endpoint accepts up to {MAX_PROFILES} profiles per request; got {len(rows)}.",
                pointer="/data/attributes/profiles/data",
            )
        for i, row in enumerate(rows):
            if len(json.dumps(row)) > MAX_PROFILE_BYTES:
                raise invalid(
                    "The maximum allowed payload size per-profile is 100KB.",
                    pointer=f"/data/attributes/profiles/data/{i}",
                )
        rel = ((data.get("relationships") or {}).get("lists") or {}).get("data") or []
        list_ids = [str(x.get("id")) for x in rel if isinstance(x, dict)]
        with state.lock:
            for lid in list_ids:
                if lid not in state.lists:
                    raise not_found(f"A list with id {lid} does not exist.", "/data/relationships/lists")
            transient = frozenset(range(0, len(rows), 7)) if req.fault == "partial" else frozenset()
            job = ImportJob(
                state.new_id(), state.now_ms(), rows, list_ids, total=len(rows), transient=transient
            )
            state.jobs[job.id] = job
        timer = threading.Timer(
            app.settings.bulk_import_delay_s, process, (state, job.id, app.settings.bulk_import_chunk)
        )
        timer.daemon = True
        timer.start()
        return document(202, {"data": job_resource(req, job), "links": self_link(req, req.path)})

    @route(app, "GET", "/api/profile-bulk-import-jobs", "get_bulk_import_profiles_jobs")
    def list_jobs(req: Request) -> Response:
        conds = parse_filter(req.arg("filter"), {"status": ({"equals"}, "string")})
        sort_key(req, ("created_at",), "created_at")
        size = page_size(req, 20, 100)
        after = decode_cursor(req, app.settings.tolerate_cursor_equals)
        with state.lock:
            order = sorted((j.created, j.id) for j in state.jobs.values())
            ids, nxt = keyset(
                order, after, False, lambda jid: all(state.jobs[jid].status == c.value for c in conds), size
            )
            data = [job_resource(req, state.jobs[j]) for j in ids]
        return document(200, {"data": data, "links": links(req, nxt)})

    @route(app, "GET", "/api/profile-bulk-import-jobs/{job_id}", "get_bulk_import_profiles_job")
    def get_job(req: Request) -> Response:
        with state.lock:
            job = _job(state, req.path_params["job_id"])
            return document(200, {"data": job_resource(req, job), "links": self_link(req, req.path)})

    @route(
        app,
        "GET",
        "/api/profile-bulk-import-jobs/{id}/import-errors",
        "get_errors_for_bulk_import_profiles_job",
    )
    def job_errors(req: Request) -> Response:
        size = page_size(req, 20, 100)
        after = decode_cursor(req, app.settings.tolerate_cursor_equals)
        with state.lock:
            job = _job(state, req.path_params["id"])
            order = [(i, e["id"]) for i, e in enumerate(job.errors)]
            ids, nxt = keyset(order, after, False, lambda _: True, size)
            by_id = {e["id"]: e for e in job.errors}
            data = [by_id[i] for i in ids]
        return document(200, {"data": data, "links": links(req, nxt)})


def _job(state: KlaviyoState, job_id: str) -> ImportJob:
    job = state.jobs.get(job_id)
    if job is None:
        raise not_found(f"A profile bulk import job with id {job_id} does not exist.")
    return job


def process(state: KlaviyoState, job_id: str, chunk: int) -> None:
    """Run one job to completion (the worker timer's target)."""
    with state.lock:
        job = state.jobs.get(job_id)
        if job is None or job.status != "queued":
            return
        job.status, job.started = "processing", state.now_ms()
    for start in range(0, len(job.rows), max(chunk, 1)):
        with state.lock:
            if state.jobs.get(job_id) is not job:  # reset meanwhile
                return
            for i in range(start, min(start + chunk, len(job.rows))):
                _import_row(state, job, i)
    with state.lock:
        job.status, job.completed_at, job.rows = "complete", state.now_ms(), []


def _import_row(state: KlaviyoState, job: ImportJob, i: int) -> None:
    row = job.rows[i]
    pointer = f"/data/attributes/profiles/data/{i}"
    try:
        if i in job.transient:
            raise Rejected(
                500, "internal_error", "A temporary error prevented importing this profile; it was not "
                "changed. Import it again.", "/data",
            )  # fmt: skip
        if not isinstance(row, dict) or row.get("type") != "profile":
            raise Rejected(400, "invalid", "Each profile must be an object of type 'profile'.", pointer)
        meta = row.get("meta") or {}
        p, _ = upsert(
            state,
            row.get("id"),
            row.get("attributes", {}),
            meta.get("patch_properties") if isinstance(meta, dict) else None,
        )
    except Rejected as r:
        job.failed += 1
        job.errors.append(
            {
                "type": "import-error",
                "id": str(uuid.uuid4()),
                "attributes": {
                    "code": r.code,
                    "title": "Invalid input." if r.status == 400 else r.code,
                    "detail": r.detail,
                    "source": {"pointer": pointer + r.pointer.removeprefix("/data")},
                    "original_payload": row.get("attributes", {}) if isinstance(row, dict) else {},
                },
            }
        )
        return
    job.completed += 1
    job.profile_ids.append(p.id)
    for lid in job.list_ids:
        lst = state.lists.get(lid)
        if lst is not None:
            state.add_members(lst, [p.id])
