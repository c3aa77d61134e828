"""Klaviyo connector: pull profiles and events, ensure lists, push changes (``klaviyo-api``).

See `connectors.klaviyo.connector` and ``QUIRKS.md``.
"""

from connectors.klaviyo.calls import KlaviyoOptions
from connectors.klaviyo.connector import KlaviyoConnector

__all__ = ["KlaviyoConnector", "KlaviyoOptions"]
