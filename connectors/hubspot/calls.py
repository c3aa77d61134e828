"""Every HubSpot request of the connector goes through `HubSpotCalls`: the official SDK client
(retries off, `connectors.sdk`), a ``requests`` session for the legacy email-events API, the
one `RetryPolicy` and the shared `RateBudget`.

``calls.sdk(fn, kind=..., what=..., endpoint="default")`` runs one SDK call under the policy
with the budget of that endpoint class (``"search"`` spends from the 4/s search window *and*
the 10 s window). ``calls.get_json(path, params)`` does the same for a raw GET. Both raise
only `ConnectorError` subclasses (translated once, at `connectors.errors.boundary`).

Also the small value helpers every module needs: ISO-8601 / epoch-ms conversion.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests

from connectors.budget import RateBudget, hubspot_spec
from connectors.classify import CallKind
from connectors.errors import MalformedResponse, note_response
from connectors.retry import RetryPolicy
from connectors.sdk import HUBSPOT_URL, http_session, hubspot_client

__all__ = ["HubSpotCalls", "iso_to_ms", "ms_to_datetime"]

T = TypeVar("T")
PROVIDER = "hubspot"
TIMEOUT_S = 60.0


def iso_to_ms(value: object) -> int | None:
    """Epoch ms from HubSpot's ``2024-01-31T10:00:00.123Z``, an epoch-ms string, or a datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class HubSpotCalls:
    """The SDK client, an HTTP session, the retry policy and the rate budget of one account."""

    def __init__(
        self,
        token: str,
        base_url: str = HUBSPOT_URL,
        *,
        budget: RateBudget | None = None,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client: Any = hubspot_client(token, self.base_url)
        self.budget = budget if budget is not None else RateBudget(hubspot_spec())
        self.retry = retry if retry is not None else RetryPolicy(PROVIDER)
        self._session = session if session is not None else http_session("segsync")
        self._token = token

    def sdk(self, fn: Callable[[], T], *, kind: CallKind, what: str, endpoint: str = "default",
            expected: Collection[int] = ()) -> T:
        """Run one SDK call under the retry policy and the budget of `endpoint`; a failure with
        a status in `expected` is part of the caller's plan (logged at DEBUG, still raised)."""
        return self.retry.call(fn, kind=kind, what=what, budget=self.budget.bind(endpoint),
                               expected=expected)

    def sdk_json(
        self, fn: Callable[[], Any], *, what: str, endpoint: str = "default", kind: CallKind = CallKind.READ
    ) -> dict[str, Any]:
        """A read through the SDK called with ``_preload_content=False``: the JSON object of the
        answer, parsed here. The SDK's model deserialisation (``dateutil`` on every instant) costs
        more CPU than the request itself on large pages."""

        def fetch() -> dict[str, Any]:
            raw = fn()
            try:
                body = json.loads(raw.data)
            finally:
                raw.release_conn()
            if not isinstance(body, dict):
                raise MalformedResponse(PROVIDER, raw.status, None, f"{what}: not a JSON object")
            return body

        return self.sdk(fetch, kind=kind, what=what, endpoint=endpoint)

    def get_json(self, path: str, params: Mapping[str, Any], *, what: str) -> dict[str, Any]:
        """GET `path` (with ``requests``) under the policy; the JSON object it answered."""

        def fetch() -> dict[str, Any]:
            response = self._session.get(
                self.base_url + path,
                params=dict(params),
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=TIMEOUT_S,
            )
            note_response(response.headers)
            response.raise_for_status()
            body = response.json()
            if not isinstance(body, dict):
                raise MalformedResponse(PROVIDER, response.status_code, None, f"{what}: not a JSON object")
            return body

        return self.sdk(fetch, kind=CallKind.READ, what=what)

    def close(self) -> None:
        self._session.close()
