"""Privacy deletion of one Klaviyo profile: ``POST /api/data-privacy-deletion-jobs``.

Body (``DataPrivacyCreateDeletionJobQuery`` [SPEC data_privacy.json]; the profile's
``attributes`` object is required even when it names the profile by id)::

    {"data": {"type": "data-privacy-deletion-job", "attributes": {"profile": {"data":
        {"type": "profile", "id": "01H...", "attributes": {}}}}}}
    ... or "attributes": {"email": "a@b.c"} and no id

Klaviyo answers 202 without a body and deletes every matching profile asynchronously; an
identifier that matches nothing is accepted too (the job simply finds nothing). Rate class
``data_privacy`` (3/s burst, 60/m steady; QUIRKS.md). A second request for the same profile
deletes nothing more, so the call is an idempotent write for the retry policy.
"""

from __future__ import annotations

from typing import Any

from connectors.errors import AuthError, ConnectorError, QuotaExhausted
from connectors.klaviyo.calls import KlaviyoCalls
from connectors.records import DeletionKind, DeletionResult

__all__ = ["deletion_body", "request_deletion"]


def deletion_body(kind: DeletionKind, value: str) -> dict[str, Any]:
    """The JSON:API body that names the profile by id or by email."""
    if kind == "id":
        profile: dict[str, Any] = {"type": "profile", "id": value, "attributes": {}}
    elif kind == "email":
        profile = {"type": "profile", "attributes": {"email": value.strip()}}
    else:
        raise ValueError(f"a deletion names a profile by id or email, got {kind!r}")
    return {"data": {"type": "data-privacy-deletion-job",
                     "attributes": {"profile": {"data": profile}}}}


def request_deletion(calls: KlaviyoCalls, kind: DeletionKind, value: str) -> DeletionResult:
    """Request the deletion of the profile with id or email ``value``."""
    if not value.strip():
        raise ValueError("a deletion needs the profile's id or email")
    body = deletion_body(kind, value)
    try:
        calls.call("request_profile_deletion", lambda: calls.privacy.request_profile_deletion(body),
                   "data privacy deletion")
    except (AuthError, QuotaExhausted):
        raise
    except ConnectorError as e:
        return DeletionResult.from_error(e)
    return DeletionResult.done()
