"""Factories for the official SDK clients, with every SDK-level retry switched off.

Retries live in exactly one place (`connectors.retry`). Left alone, the SDKs retry too:

- hubspot-api-client 12.0.0 passes ``retry`` to urllib3 as ``Configuration.retries``; when
  none is given, urllib3's default ``Retry(total=3)`` re-sends GET/PUT/DELETE on a 429/503
  carrying ``Retry-After`` (4 requests seen for one call).
- klaviyo-api 25.0.0 wraps every endpoint in its own loop (``max_retries`` = attempts) *and*
  leaves urllib3's default retry in place (12 requests seen for one GET).

So: HubSpot gets ``retry=NO_RETRIES``; Klaviyo gets ``max_retries=1`` and a rebuilt REST
client whose pool manager has ``retries=NO_RETRIES``. With ``total=0`` urllib3 makes exactly
one request; a failed connection surfaces as ``MaxRetryError`` (translated by
`connectors.errors`), an HTTP error as the SDK's ``ApiException``, and a redirect is
returned as-is instead of being followed. Both factories take the base URL so that the
loopback sandbox (or a proxy) can stand in for the real API.

Both factories also wrap the clients' REST layer so that every response's headers are noted
(`connectors.errors.note_response`): a body the SDK cannot deserialise still yields an error
with the request id, and `RetryPolicy` feeds the rate budget from them after every call
without the connectors having to use the ``*_with_http_info`` variants.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openapi_client
import requests
from hubspot import HubSpot
from hubspot.discovery.discovery_base import DiscoveryBase
from klaviyo_api import KlaviyoAPI
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from connectors.errors import note_response

__all__ = ["HUBSPOT_URL", "KLAVIYO_URL", "NO_RETRIES", "http_session", "hubspot_client", "klaviyo_client"]

HUBSPOT_URL = "https://api.hubapi.com"
KLAVIYO_URL = "https://a.klaviyo.com"

NO_RETRIES = Retry(total=0, redirect=False, raise_on_status=False, raise_on_redirect=False)


def _headers_of(response: Any) -> Any:
    # hubspot RESTResponse.urllib3_response, openapi_client RESTResponse.response, or a raw
    # urllib3 response (_preload_content=False); ``getheaders()`` is deprecated in urllib3 2.
    inner = getattr(response, "urllib3_response", None) or getattr(response, "response", None) or response
    return getattr(inner, "headers", None)


def _noting_responses(rest_client: Any) -> None:
    request: Callable[..., Any] = rest_client.request

    def noted(*args: Any, **kwargs: Any) -> Any:
        response = request(*args, **kwargs)
        note_response(_headers_of(response))
        return response

    rest_client.request = noted


def _hubspot_api_factory(api_client_package: Any, api_name: str, config: dict[str, Any]) -> Any:
    api = DiscoveryBase._default_api_factory(api_client_package, api_name, config)
    _noting_responses(api.api_client.rest_client)
    return api


def hubspot_client(token: str, base_url: str = HUBSPOT_URL) -> Any:
    """A ``hubspot.HubSpot`` client without retries, every API pointed at `base_url`.

    ``host`` retargets the generated APIs; ``base_url`` retargets ``client.api_request``
    (the SDK's raw-request helper, which uses ``requests`` and never retries).
    """
    url = base_url.rstrip("/")
    return HubSpot(
        access_token=token, retry=NO_RETRIES, host=url, base_url=url, api_factory=_hubspot_api_factory
    )


def klaviyo_client(api_key: str, base_url: str = KLAVIYO_URL, options: dict[str, Any] | None = None) -> Any:
    """A ``klaviyo_api.KlaviyoAPI`` client that sends each request exactly once."""
    client = KlaviyoAPI(api_key, max_retries=1, test_host=base_url.rstrip("/"), options=dict(options or {}))
    client.configuration.retries = NO_RETRIES
    client.api_client.rest_client = openapi_client.rest.RESTClientObject(client.configuration)
    _noting_responses(client.api_client.rest_client)
    return client


def http_session(user_agent: str = "segsync") -> requests.Session:
    """A ``requests`` session for endpoints the SDKs lack (e.g. legacy email events)."""
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=NO_RETRIES)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = user_agent
    return session
