"""``build_app(state, settings) -> App``: the Klaviyo stand-in's routes and guards.

Guards, in order, for every ``/api/`` route (inspection routes under ``/_sandbox/klaviyo/`` skip
them): ``Authorization: Klaviyo-API-Key <key>`` (401), the ``revision`` header (400), the
per-endpoint rate limit (429, counted per account), and the media type of request bodies (415).
Routes are named by the spec's ``operationId``; that name keys the rate-limit table, counters
and fault specs. Handlers are wrapped by :func:`route` so a :class:`Rejected` becomes a JSON:API
error and the rate-limit headers land on every non-429 answer, errors included.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from connectors.sandbox.klaviyo import errors
from connectors.sandbox.klaviyo.ratelimit import RateLimiter
from connectors.sandbox.klaviyo.settings import KlaviyoSettings
from connectors.sandbox.klaviyo.state import KlaviyoState, Rejected
from connectors.sandbox.server import App, Handler, HTTPError, Request, Response, Route

if TYPE_CHECKING:
    from connectors.sandbox.klaviyo.webhooks import WebhookSender

REVISION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[A-Za-z0-9_-]+)?$")
_RL_HEADER = ":ratelimit"  # pseudo request header carrying the verdict from guard to handler
_BODY_TYPES = ("application/vnd.api+json", "application/json")


def route(
    app: App, method: str, pattern: str, name: str, *, auth: bool = True
) -> Callable[[Handler], Handler]:
    """Register a handler, wrapped: :class:`Rejected` -> error, rate-limit headers added."""

    def deco(fn: Handler) -> Handler:
        def wrapped(req: Request) -> Response:
            try:
                resp = fn(req)
            except Rejected as r:
                resp = errors.error_response(r.status, r.code, r.detail, pointer=r.pointer, meta=r.meta)
            except HTTPError as e:
                resp = e.response
            rl = req.headers.get(_RL_HEADER)
            if rl:
                limit, remaining, reset = rl.split(",")
                resp.headers.update(
                    {"RateLimit-Limit": limit, "RateLimit-Remaining": remaining, "RateLimit-Reset": reset}
                )
            return resp

        app.route(method, pattern, name, rate_class=name if auth else None, auth=auth)(wrapped)
        return fn

    return deco


class KlaviyoApp(App):
    """The :class:`App` plus the Klaviyo objects the inspection and launcher code reach for."""

    def __init__(self, state: KlaviyoState, settings: KlaviyoSettings) -> None:
        super().__init__("klaviyo", errors.internal_error)
        self.state = state
        self.settings = settings
        self.limiter = RateLimiter(lambda: settings.clock(), settings.rate_scale)
        self.not_found = self._not_found
        self.webhooks: WebhookSender | None = None  # set by webhooks.attach

    def generate_live(self, body: dict[str, Any]) -> dict[str, Any]:
        """The launcher's ``POST /_sandbox/live`` hook (raises ``ValueError`` on bad input)."""
        from connectors.sandbox.klaviyo.activity import generate_live

        return generate_live(self, body)

    def _not_found(self, req: Request) -> Response:
        _, _, other = self.match(req.method, req.path)
        if other:
            return errors.error_response(405, "method_not_allowed", f'Method "{req.method}" not allowed.')
        return errors.error_response(404, "not_found", "Not found.", pointer="/data/")


def build_app(state: KlaviyoState, settings: KlaviyoSettings | None = None) -> KlaviyoApp:
    settings = settings or state.settings
    state.settings = settings
    app = KlaviyoApp(state, settings)
    app.guards.extend([_auth_guard(settings), _revision_guard, _rate_guard(app), _media_guard])

    from connectors.sandbox.klaviyo import (
        bulk_import,
        events,
        inspection,
        lists,
        metrics,
        privacy,
        profiles,
        webhooks,
    )

    for module in (profiles, bulk_import, events, metrics, lists, privacy, inspection):
        module.register(app)
    webhooks.attach(app)
    return app


def _auth_guard(settings: KlaviyoSettings) -> Callable[[Request, Route], Response | None]:
    def guard(req: Request, route: Route) -> Response | None:
        if not route.auth:
            return None
        header = req.header("authorization")
        if not header:
            return errors.error_response(
                401, "not_authenticated", "Authentication credentials were not provided."
            )
        scheme, _, key = header.partition(" ")
        if scheme not in ("Klaviyo-API-Key", "Bearer") or key.strip() not in settings.api_keys:
            return errors.error_response(
                401,
                "authentication_failed",
                "Incorrect authentication credentials.",
                title="Incorrect authentication credentials.",
            )
        req.client_key = key.strip()
        return None

    return guard


def _revision_guard(req: Request, route: Route) -> Response | None:
    if not route.auth:
        return None
    revision = req.header("revision")
    if not revision:
        return errors.error_response(
            400, "invalid", "The `revision` header is required.", parameter="revision"
        )
    if not REVISION_RE.match(revision):
        return errors.error_response(
            400,
            "invalid",
            f"Invalid revision {revision!r}: expected YYYY-MM-DD[.suffix].",
            parameter="revision",
        )
    return None


def _rate_guard(app: KlaviyoApp) -> Callable[[Request, Route], Response | None]:
    def guard(req: Request, route: Route) -> Response | None:
        if not app.settings.rate_limits or route.rate_class is None:
            return None
        verdict = app.limiter.check(route.rate_class)
        if verdict is None:
            return None
        if not verdict.allowed:
            s = RateLimiter.seconds_text(verdict.retry_after_s)
            return errors.error_response(
                429,
                "throttled",
                f"Request was throttled. Expected available in {s} second{'s' * (s != '1')}.",
                pointer="/data/",
                headers={"Retry-After": s},
            )
        reset = RateLimiter.seconds_text(verdict.reset_s)
        req.headers[_RL_HEADER] = f"{verdict.limit},{verdict.remaining},{reset}"
        return None

    return guard


def _media_guard(req: Request, route: Route) -> Response | None:
    if not route.auth or req.method not in ("POST", "PATCH", "PUT", "DELETE") or not req.body:
        return None
    ctype = (req.header("content-type") or "").split(";")[0].strip().lower()
    if ctype not in _BODY_TYPES:
        return errors.error_response(
            415, "unsupported_media_type", f'Unsupported media type "{ctype}" in request.'
        )
    return None
