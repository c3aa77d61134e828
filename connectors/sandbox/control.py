"""Generic inspection and control endpoints under ``/_sandbox/``, mounted on both stand-ins.

Unauthenticated (the servers only listen on loopback) and never subject to rate limits or faults
(``auth=False`` routes). Bodies and answers are plain JSON; a bad request gets
``400 {"error": "<reason>"}``. Times are epoch milliseconds.

=======================================  ===========================================================
``GET /_sandbox/log``                    request log, oldest first: ``{"entries": [{"at_ms",
                                         "method", "path", "route", "status", "ms"}]}``; filters
                                         ``route`` (glob), ``method``, ``status``, ``since`` (ms,
                                         inclusive), ``limit`` (the newest N). Status 0 = reset.
``GET /_sandbox/counters``               ``{"routes": {name: {"total", "by_status": {code: n}}}}``
``GET /_sandbox/faults``                 rules, seed and hits per route and kind
``PUT /_sandbox/faults``                 ``{"spec": "429=0.1@contacts.*", "seed": 7}`` or
                                         ``{"rules": [{"kind", "probability", ...}]}``; replaces
                                         the rules and restarts the seeded streams
``DELETE /_sandbox/faults``              no more faults
``GET|PUT /_sandbox/rate-limits``        the stand-in's rate-limit settings (a partial object on
                                         PUT, e.g. ``{"enabled": false}``)
``POST /_sandbox/reset``                 state back to the data set; log, counters and fault
                                         streams cleared
``POST /_sandbox/live``                  generate live activity: the stand-in's own handler
                                         (HubSpot ``/_sandbox/hubspot/activity``: ``{"count": 20,
                                         "seed": 1}``), same body and answer
=======================================  ===========================================================
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connectors.sandbox.faults import FaultInjector, FaultSpecError, injector_of, install, rules_from_json
from connectors.sandbox.server import App, Request, Response

PREFIX = "/_sandbox"


@dataclass
class ControlHooks:
    """What the generic endpoints delegate to the stand-in (``None`` = not supported -> 404)."""

    reset: Callable[[], None] | None = None
    get_rate_limits: Callable[[], dict[str, Any]] | None = None
    set_rate_limits: Callable[[dict[str, Any]], None] | None = None  # raises ValueError
    live: Callable[[Request], Response] | None = None  # the stand-in's own live-activity handler


def _ok(obj: Any, status: int = 200) -> Response:
    return Response.json(status, obj)


def _bad(reason: str, status: int = 400) -> Response:
    return Response.json(status, {"error": reason})


def _body(req: Request) -> dict[str, Any] | Response:
    if not req.body:
        return {}
    try:
        obj = json.loads(req.body)
    except (ValueError, UnicodeDecodeError) as e:
        return _bad(f"the body is not JSON: {e}")
    if not isinstance(obj, dict):
        return _bad("the body must be a JSON object")
    return obj


def mount_control(app: App, hooks: ControlHooks | None = None) -> FaultInjector:
    """Register the ``/_sandbox/`` routes on ``app``; returns its fault injector (installed if absent)."""
    hooks = hooks or ControlHooks()
    injector = injector_of(app) or install(app)

    def route(method: str, path: str, name: str) -> Callable[[Callable[[Request], Response]], Any]:
        return app.route(method, PREFIX + path, "sandbox." + name, auth=False)

    @route("GET", "/log", "log")
    def get_log(req: Request) -> Response:
        try:
            since = int(req.arg("since") or 0)
            limit = int(req.arg("limit") or 0)
            status = int(req.arg("status") or 0) or None
        except ValueError:
            return _bad("since, limit and status must be integers")
        glob, method = req.arg("route"), (req.arg("method") or "").upper()
        with app.lock:
            entries = list(app.log)
        out = [
            {"at_ms": int(e.at * 1000), "method": e.method, "path": e.path, "route": e.route,
             "status": e.status, "ms": round(e.ms, 3)}
            for e in entries
            if (glob is None or fnmatch.fnmatchcase(e.route, glob)) and (not method or e.method == method)
            and (status is None or e.status == status) and int(e.at * 1000) >= since
        ]  # fmt: skip
        return _ok({"entries": out[-limit:] if limit > 0 else out})

    @route("GET", "/counters", "counters")
    def get_counters(req: Request) -> Response:
        with app.lock:
            totals = dict(app.counters)
            by_status = dict(app.status_counters)
        routes: dict[str, Any] = {name: {"total": n, "by_status": {}} for name, n in sorted(totals.items())}
        for (name, status), n in sorted(by_status.items()):
            routes.setdefault(name, {"total": 0, "by_status": {}})["by_status"][str(status)] = n
        return _ok({"routes": routes})

    @route("GET", "/faults", "faults.get")
    def get_faults(req: Request) -> Response:
        return _ok(injector.to_json())

    @route("PUT", "/faults", "faults.set")
    def put_faults(req: Request) -> Response:
        body = _body(req)
        if isinstance(body, Response):
            return body
        unknown = set(body) - {"spec", "rules", "seed"}
        if unknown or ("spec" in body) == ("rules" in body):
            return _bad("expected {\"spec\": \"...\"} or {\"rules\": [...]}, optionally with \"seed\"")
        seed = body.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            return _bad("seed must be an integer")
        try:
            rules = rules_from_json(body["spec"] if "spec" in body else body["rules"])
        except FaultSpecError as e:
            return _bad(str(e))
        injector.configure(rules, seed)
        return _ok(injector.to_json())

    @route("DELETE", "/faults", "faults.clear")
    def clear_faults(req: Request) -> Response:
        injector.configure([])
        return _ok(injector.to_json())

    @route("GET", "/rate-limits", "rate_limits.get")
    def get_rate_limits(req: Request) -> Response:
        if hooks.get_rate_limits is None:
            return _bad("this stand-in has no rate-limit settings", 404)
        return _ok(hooks.get_rate_limits())

    @route("PUT", "/rate-limits", "rate_limits.set")
    def put_rate_limits(req: Request) -> Response:
        body = _body(req)
        if isinstance(body, Response):
            return body
        if hooks.set_rate_limits is None or hooks.get_rate_limits is None:
            return _bad("this stand-in has no rate-limit settings", 404)
        try:
            hooks.set_rate_limits(body)
        except ValueError as e:
            return _bad(str(e))
        return _ok(hooks.get_rate_limits())

    @route("POST", "/reset", "reset")
    def reset(req: Request) -> Response:
        if hooks.reset is not None:
            with app.lock:
                hooks.reset()
        injector.configure(injector.rules)
        with app.lock:
            app.log.clear()
            app.counters.clear()
            app.status_counters.clear()
        return _ok({"reset": True, "state": hooks.reset is not None})

    @route("POST", "/live", "live")
    def live(req: Request) -> Response:
        if hooks.live is None:
            return _bad("this stand-in cannot generate live activity", 404)
        return hooks.live(req)

    return injector
