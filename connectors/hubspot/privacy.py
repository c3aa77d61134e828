"""GDPR deletion of one HubSpot contact: ``POST /crm/v3/objects/contacts/gdpr-delete``.

The body names the contact by record id (``{"objectId": "501"}``) or by email
(``{"objectId": "a@b.c", "idProperty": "email"}``); HubSpot answers 204 and the contact and its
associated content are gone for good. SDK: ``client.crm.contacts.basic_api.purge`` with a
``PublicGdprDeleteInput`` (hubspot-api-client 12.0.0 has no separate ``gdpr_api``). A 404 (no
such record: deleted before, or merged away) means there is nothing left to delete: done.
Per the SDK docstring an unknown *email* is not an error at all: HubSpot blocklists it.

Deleting is idempotent (a second request finds nothing, 404 = done), so the call is retried
like any idempotent write by the one retry policy (``HubSpotCalls.sdk``).
"""

from __future__ import annotations

from connectors.classify import CallKind
from connectors.errors import AuthError, ConnectorError, QuotaExhausted
from connectors.hubspot.calls import HubSpotCalls
from connectors.records import DeletionKind, DeletionResult

__all__ = ["request_deletion"]


def request_deletion(calls: HubSpotCalls, kind: DeletionKind, value: str) -> DeletionResult:
    """Request the GDPR deletion of the contact with record id or email ``value``."""
    if kind not in ("id", "email") or not value.strip():
        raise ValueError(f"a deletion names a record by id or email, got {kind!r}")
    from hubspot.crm.contacts import PublicGdprDeleteInput

    body = (PublicGdprDeleteInput(object_id=value) if kind == "id"
            else PublicGdprDeleteInput(object_id=value.strip(), id_property="email"))
    api = calls.client.crm.contacts.basic_api
    try:
        calls.sdk(lambda: api.purge(body), kind=CallKind.IDEMPOTENT_WRITE, what="gdpr-delete",
                  expected=(404,))
    except (AuthError, QuotaExhausted):
        raise
    except ConnectorError as e:
        if e.status == 404:
            return DeletionResult.done(e.request_id)
        return DeletionResult.from_error(e)
    return DeletionResult.done()
