"""Inspection and control of the HubSpot stand-in under ``/_sandbox/hubspot/`` (no auth, no rate
limit; the generic ``/_sandbox/`` log, counters and faults belong to the sandbox commons):

* ``GET  contacts/{id-or-email}``  every property, archived flag, list memberships
* ``GET  lists`` / ``GET lists/{id-or-name}``  list definitions; one list with its member ids
* ``GET  properties``  every property definition (archived too)
* ``GET  stats``  counts of contacts, lists, email events, web (unified) events
* ``GET|PATCH settings``  rate-limit / webhook / batch / unified-events settings (partial update)
* ``GET  webhooks``  delivery counters and recent deliveries
* ``POST activity``  ``{"count": N, "kinds": [...], "seed": S}`` generates live activity
* ``POST reset``  back to the loaded dataset (and fresh rate-limit windows)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from connectors.sandbox.server import App, Request, Response

from . import errors
from .activity import run_request
from .ratelimit import RateLimiter
from .settings import HubSpotSettings
from .state import HubSpotState
from .webhooks import WebhookSender

BASE = "/_sandbox/hubspot"


def register(
    app: App,
    state: HubSpotState,
    settings: HubSpotSettings,
    limiter: RateLimiter,
    sender: WebhookSender,
    on_settings: Callable[[], None],
) -> None:
    seeds = itertools.count(1)

    def route(method: str, path: str, name: str) -> Callable[[Callable[[Request], Response]], Any]:
        return app.route(method, BASE + path, "sandbox.hubspot." + name, auth=False)

    @route("GET", "/contacts/{key}", "contact")
    def contact(req: Request) -> Response:
        key = req.path_params["key"]
        with state.lock:
            c = state.find(key, "email" if "@" in key else None)
            c = c or state.find(key, "email" if "@" in key else None, archived=True)
            if c is None:
                errors.not_found(f"No contact {key}")
            out = c.to_json(None)
            out["lists"] = sorted(str(lst.list_id) for lst in state.lists.values() if c.id in lst.members)
        return Response.json(200, out)

    @route("GET", "/lists", "lists")
    def lists(req: Request) -> Response:
        with state.lock:
            return Response.json(200, {"results": [lst.to_json() for lst in state.lists.values()]})

    @route("GET", "/lists/{key}", "list")
    def one_list(req: Request) -> Response:
        key = req.path_params["key"]
        with state.lock:
            lid = int(key) if key.isdigit() else state.list_names.get(key.lower())
            lst = state.lists.get(lid) if lid is not None else None
            if lst is None:
                errors.not_found(f"No list {key}")
            out = lst.to_json()
            out["members"] = [str(rid) for rid in lst.sorted_members()]
        return Response.json(200, out)

    @route("GET", "/properties", "properties")
    def properties(req: Request) -> Response:
        with state.lock:
            return Response.json(200, {"results": [p.to_json() for p in state.properties.values()]})

    @route("GET", "/stats", "stats")
    def stats(req: Request) -> Response:
        with state.lock:
            archived = sum(1 for c in state.contacts.values() if c.archived)
            return Response.json(
                200,
                {
                    "contacts": len(state.contacts) - archived,
                    "archived_contacts": archived,
                    "lists": len(state.lists),
                    "properties": len(state.properties),
                    "email_events": len(state.email_events),
                    "web_events": len(state.web_events),
                },
            )

    @route("GET", "/settings", "settings")
    def get_settings(req: Request) -> Response:
        return Response.json(200, settings.to_json())

    @route("PATCH", "/settings", "settings.update")
    def patch_settings(req: Request) -> Response:
        body = errors.json_object(req)
        try:
            settings.update(body)
        except ValueError as e:
            errors.fail(400, str(e))
        on_settings()
        return Response.json(200, settings.to_json())

    @route("GET", "/webhooks", "webhooks")
    def webhooks(req: Request) -> Response:
        return Response.json(200, sender.stats())

    @route("POST", "/activity", "activity")
    def activity(req: Request) -> Response:
        body = errors.json_object(req) if req.body else {}
        try:
            return Response.json(200, run_request(state, body, next(seeds)))
        except ValueError as e:
            errors.fail(400, str(e))

    @route("POST", "/reset", "reset")
    def reset(req: Request) -> Response:
        state.reset()
        limiter.reset()
        with state.lock:
            return Response.json(200, {"reset": True, "contacts": len(state.contacts)})
