"""Inspection and control under ``/_sandbox/klaviyo/`` (no auth, no rate limit).

* ``GET  /_sandbox/klaviyo/profiles/{id}``, ``GET /_sandbox/klaviyo/profiles?email=...``
* ``GET  /_sandbox/klaviyo/lists/{id}`` (with member ids), ``GET /_sandbox/klaviyo/import-jobs[/{id}]``
* ``GET  /_sandbox/klaviyo/stats`` (counts), ``GET /_sandbox/klaviyo/webhooks`` (deliveries)
* ``GET  /_sandbox/klaviyo/deletion-jobs``: the data-privacy deletion requests received, oldest
  first (``id``, ``at`` ms, ``by`` id|email|phone_number, ``value``, ``deleted`` profile ids,
  ``events`` deleted)
* ``PUT  /_sandbox/klaviyo/settings`` ``{"rate_limits": bool, "rate_scale": float, "webhook_url": str}``
* ``POST /_sandbox/klaviyo/reset`` (empty account, counters and windows cleared)
* ``POST /_sandbox/klaviyo/activity`` ``{"events": n, "changes"?: m, "profile_ids"?: [...],
  "emails"?: [...], "metrics"?: [...], "seed"?: int}``: n new events now (also sent as webhooks).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from connectors.sandbox.klaviyo.activity import generate_live
from connectors.sandbox.klaviyo.app import KlaviyoApp, route
from connectors.sandbox.klaviyo.errors import invalid, not_found
from connectors.sandbox.klaviyo.state import KlaviyoState, Profile
from connectors.sandbox.server import Request, Response

P = "/_sandbox/klaviyo"


def _json(obj: Any, status: int = 200) -> Response:
    return Response.json(status, obj)


def profile_view(state: KlaviyoState, p: Profile) -> dict[str, Any]:
    return {
        "id": p.id,
        **p.attributes(),
        "lists": sorted(lid for lid, lst in state.lists.items() if p.id in lst.members),
    }


def register(app: KlaviyoApp) -> None:
    state = app.state

    @route(app, "GET", P + "/profiles/{id}", "_sandbox.klaviyo.profile", auth=False)
    def get_profile(req: Request) -> Response:
        with state.lock:
            p = state.profiles.get(req.path_params["id"])
            if p is None:
                raise not_found(f"No profile {req.path_params['id']}.")
            return _json(profile_view(state, p))

    @route(app, "GET", P + "/profiles", "_sandbox.klaviyo.profile_by_email", auth=False)
    def by_email(req: Request) -> Response:
        with state.lock:
            p = state.find("email", req.arg("email") or "")
            if p is None:
                raise not_found(f"No profile with email {req.arg('email')!r}.")
            return _json(profile_view(state, p))

    @route(app, "GET", P + "/lists/{id}", "_sandbox.klaviyo.list", auth=False)
    def get_list(req: Request) -> Response:
        with state.lock:
            lst = state.lists.get(req.path_params["id"])
            if lst is None:
                raise not_found(f"No list {req.path_params['id']}.")
            return _json({"id": lst.id, "name": lst.name, "members": sorted(lst.members)})

    @route(app, "GET", P + "/import-jobs", "_sandbox.klaviyo.jobs", auth=False)
    def jobs(req: Request) -> Response:
        with state.lock:
            return _json([_job(j) for j in state.jobs.values()])

    @route(app, "GET", P + "/import-jobs/{id}", "_sandbox.klaviyo.job", auth=False)
    def job(req: Request) -> Response:
        with state.lock:
            j = state.jobs.get(req.path_params["id"])
            if j is None:
                raise not_found(f"No import job {req.path_params['id']}.")
            return _json({**_job(j), "errors": j.errors, "profile_ids": j.profile_ids})

    @route(app, "GET", P + "/stats", "_sandbox.klaviyo.stats", auth=False)
    def stats(req: Request) -> Response:
        with state.lock:
            return _json(
                {
                    "profiles": len(state.profiles),
                    "events": len(state.events),
                    "metrics": {m.name: m.id for m in state.metrics.values()},
                    "lists": len(state.lists),
                    "jobs": len(state.jobs),
                    "deletion_jobs": len(state.deletion_jobs),
                }
            )

    @route(app, "GET", P + "/deletion-jobs", "_sandbox.klaviyo.deletion_jobs", auth=False)
    def deletion_jobs(req: Request) -> Response:
        with state.lock:
            return _json([asdict(j) for j in state.deletion_jobs])

    @route(app, "GET", P + "/webhooks", "_sandbox.klaviyo.webhooks", auth=False)
    def deliveries(req: Request) -> Response:
        sent = list(app.webhooks.deliveries) if app.webhooks else []
        return _json([asdict(d) for d in sent])

    @route(app, "PUT", P + "/settings", "_sandbox.klaviyo.settings", auth=False)
    def put_settings(req: Request) -> Response:
        body = _body(req)
        s = app.settings
        if "rate_limits" in body:
            s.rate_limits = bool(body["rate_limits"])
        if "rate_scale" in body:
            scale = body["rate_scale"]
            if not isinstance(scale, int | float) or scale <= 0:
                raise invalid("'rate_scale' must be a positive number.", pointer="/rate_scale")
            s.rate_scale = app.limiter.scale = float(scale)
        if "webhook_url" in body:
            s.webhook_url = body["webhook_url"] or None
        app.limiter.reset()
        return _json({"rate_limits": s.rate_limits, "rate_scale": s.rate_scale, "webhook_url": s.webhook_url})

    @route(app, "POST", P + "/reset", "_sandbox.klaviyo.reset", auth=False)
    def reset(req: Request) -> Response:
        state.reset()
        app.limiter.reset()
        with app.lock:
            app.counters.clear()
            app.status_counters.clear()
            app.log.clear()
        return _json({"reset": True})

    @route(app, "POST", P + "/activity", "_sandbox.klaviyo.activity", auth=False)
    def activity(req: Request) -> Response:
        try:
            return _json(generate_live(app, _body(req)), 201)
        except ValueError as e:
            raise invalid(str(e)) from None


def _job(j: Any) -> dict[str, Any]:
    return {"id": j.id, "status": j.status, "total": j.total, "completed": j.completed, "failed": j.failed}


def _body(req: Request) -> dict[str, Any]:
    if not req.body:
        return {}
    try:
        body = json.loads(req.body)
    except ValueError as e:
        raise invalid(f"Malformed JSON: {e}") from None
    if not isinstance(body, dict):
        raise invalid("The body must be a JSON object.")
    return body
