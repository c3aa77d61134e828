"""Wiring of the HubSpot stand-in: :func:`build_app` returns a :class:`HubSpotApp` (an ``App``)
with the bearer-token auth guard, the rate-limit guard, every route, and a webhook sender
listening to state changes. Serve it with ``connectors.sandbox.server.SandboxServer``:

    state = HubSpotState(); state.load_dataset(dataset)
    app = build_app(state, HubSpotSettings())
    with SandboxServer(app) as server:
        HubSpot(access_token="pat-sandbox", host=server.url)

Guards run in order: auth (401), request size (413), rate limits (429); the commons may append
more (faults). Call ``app.close()`` to stop the webhook thread.
"""

from __future__ import annotations

from typing import Any

from connectors.sandbox.server import App, HTTPError, Request, Response, Route

from . import activity, batch, contacts, control, email_events, errors, lists, properties, search, web_events
from .ratelimit import RateLimiter
from .settings import HubSpotSettings
from .state import HubSpotState
from .webhooks import WebhookSender

MISSING_AUTH = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can "
    "find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)
MAX_BODY_BYTES = 10 * 1024 * 1024


class HubSpotApp(App):
    def __init__(self, state: HubSpotState, settings: HubSpotSettings):
        super().__init__("hubspot", errors.internal_error)
        self.state = state
        self.settings = settings
        self.limiter = RateLimiter(settings.rate_limit)
        self.webhooks = WebhookSender(settings.webhooks)
        self.not_found = errors.route_not_found
        self._live_seed = 1_000_000

    def sync_listeners(self) -> None:
        """Listen to state changes only while a webhook URL is set (keeps writes lean otherwise)."""
        listening = self.webhooks.notify in self.state.listeners
        if self.settings.webhooks.url and not listening:
            self.state.listeners.append(self.webhooks.notify)
        elif not self.settings.webhooks.url and listening:
            self.state.listeners.remove(self.webhooks.notify)

    def generate_live(self, body: dict[str, Any]) -> dict[str, Any]:
        """The commons' ``POST /_sandbox/live`` hook (raises ValueError on a bad body)."""
        self._live_seed += 1
        return activity.run_request(self.state, body, self._live_seed)

    def close(self) -> None:
        if self.webhooks.notify in self.state.listeners:
            self.state.listeners.remove(self.webhooks.notify)
        self.webhooks.stop()

    # ---- guards ----------------------------------------------------------------------------

    def auth_guard(self, req: Request, route: Route) -> Response | None:
        if not route.auth:
            return None
        header = req.header("authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return errors.error_response(401, MISSING_AUTH, errors.INVALID_AUTHENTICATION)
        token = token.strip()
        if token not in self.settings.tokens:
            return errors.error_response(
                401,
                "Authentication credentials are invalid: the access token is not recognised.",
                errors.INVALID_AUTHENTICATION,
                sub_category="INVALID_TOKEN",
            )
        req.client_key = token
        return None

    def size_guard(self, req: Request, route: Route) -> Response | None:
        if len(req.body) > MAX_BODY_BYTES:
            return errors.error_response(
                413, f"Request body exceeds {MAX_BODY_BYTES} bytes", "PAYLOAD_TOO_LARGE"
            )
        return None

    def with_rate_headers(self, route: Route) -> None:
        handler = route.handler

        def wrapped(req: Request) -> Response:
            try:
                resp = handler(req)
            except HTTPError as e:
                resp = e.response
            if self.settings.rate_limit.enabled:
                resp.headers.update(self.limiter.headers(req.client_key))
            return resp

        route.handler = wrapped


def build_app(state: HubSpotState, settings: HubSpotSettings | None = None) -> HubSpotApp:
    settings = settings or HubSpotSettings()
    app = HubSpotApp(state, settings)
    app.guards.extend([app.auth_guard, app.size_guard, app.limiter.guard])
    search.register(app, state, settings)
    batch.register(app, state, settings)
    contacts.register(app, state, settings)
    properties.register(app, state, settings)
    lists.register(app, state, settings)

    @app.route("GET", "/email/public/v1/events", "email.events", rate_class="standard")
    def email_event_page(req: Request) -> Response:
        with state.lock:
            return email_events.handle_events(state.email_events, settings.webhooks.portal_id, req)

    web_events.register(app, state, settings)
    control.register(app, state, settings, app.limiter, app.webhooks, app.sync_listeners)
    for route in app.routes:
        if route.rate_class == "standard":
            app.with_rate_headers(route)
    app.sync_listeners()
    return app
