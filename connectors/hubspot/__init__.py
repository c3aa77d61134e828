"""HubSpot connector (``hubspot-api-client`` for the CRM, ``requests`` for legacy email events).

See `connectors.hubspot.connector` for the composition and ``QUIRKS.md`` for the limits and
oddities it relies on.
"""

from connectors.hubspot.connector import DEFAULT_EVENT_TYPES, HubSpotConnector

__all__ = ["DEFAULT_EVENT_TYPES", "HubSpotConnector"]
