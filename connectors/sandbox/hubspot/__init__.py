"""Local stand-in of the parts of HubSpot's API that segsync uses (see ``app.py`` for wiring)."""

from .app import HubSpotApp, build_app
from .settings import HubSpotSettings, RateLimitSettings, WebhookSettings
from .state import Change, HubSpotState

__all__ = [
    "Change",
    "HubSpotApp",
    "HubSpotSettings",
    "HubSpotState",
    "RateLimitSettings",
    "WebhookSettings",
    "build_app",
]
