"""Data privacy: ``POST /api/data-privacy-deletion-jobs`` (operation ``request_profile_deletion``).

Spec ``data_privacy.json`` (klaviyo/openapi, not vendored; QUIRKS.md): the body names the
profile by exactly one of ``id``, ``attributes.email`` or ``attributes.phone_number`` ("If
multiple identifiers are provided, we will return an error"); ``data.attributes.profile.data``
needs ``type: "profile"`` and an ``attributes`` object. Success is 202 with no body. Klaviyo
deletes every matching profile asynchronously; the sandbox deletes at once (the profile, its
identifiers, list memberships and events) and keeps the request in ``state.deletion_jobs``
(inspection: ``GET /_sandbox/klaviyo/deletion-jobs``). An identifier that matches no profile is
still accepted (202): the real job is queued before anything is looked up [UNVERIFIED].
"""

from __future__ import annotations

from typing import Any

from connectors.sandbox.klaviyo.app import KlaviyoApp, route
from connectors.sandbox.klaviyo.errors import document, invalid
from connectors.sandbox.klaviyo.resources import data_object
from connectors.sandbox.klaviyo.state import EMAIL_RE, PHONE_RE, DeletionJob, Profile
from connectors.sandbox.server import Request, Response

JOB_TYPE = "data-privacy-deletion-job"
_P = "/data/attributes/profile"


def _identifier(attributes: dict[str, Any]) -> tuple[str, str]:
    """(field, value) of the one identifier the body names; 400 otherwise."""
    profile = attributes.get("profile")
    if not isinstance(profile, dict) or not isinstance(profile.get("data"), dict):
        raise invalid("'profile' must be an object with a 'data' object.", pointer=_P)
    data = profile["data"]
    if data.get("type") != "profile":
        raise invalid(f"'type' must be 'profile', got {data.get('type')!r}.", pointer=f"{_P}/data/type")
    attrs = data.get("attributes")
    if not isinstance(attrs, dict):
        raise invalid("'attributes' is required and must be an object.", pointer=f"{_P}/data/attributes")
    given: list[tuple[str, Any, str]] = [("id", data.get("id"), f"{_P}/data/id")]
    given += [(f, attrs.get(f), f"{_P}/data/attributes/{f}") for f in ("email", "phone_number")]
    named = [(f, v, ptr) for f, v, ptr in given if v is not None]
    if len(named) != 1:
        raise invalid("Exactly one of 'id', 'email' or 'phone_number' must identify the profile"
                      f" (got {len(named)}).", pointer=f"{_P}/data")
    field, value, pointer = named[0]
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"'{field}' must be a non-empty string.", pointer=pointer)
    value = value.strip()
    if field == "email" and not EMAIL_RE.match(value):
        raise invalid("Invalid email address", pointer=pointer)
    if field == "phone_number" and not PHONE_RE.match(value):
        raise invalid("Invalid phone number format (Example of a valid format: +13239169023)",
                      pointer=pointer)
    return field, value


def register(app: KlaviyoApp) -> None:
    state = app.state

    @route(app, "POST", "/api/data-privacy-deletion-jobs", "request_profile_deletion")
    def request_profile_deletion(req: Request) -> Response:
        field, value = _identifier(data_object(req, JOB_TYPE).get("attributes", {}))
        with state.lock:
            found: Profile | None = (state.profiles.get(value) if field == "id"
                                     else state.find(field, value))
            events = state.delete_profile(found) if found is not None else 0
            state.deletion_jobs.append(DeletionJob(state.new_id(), state.now_ms(), field, value,
                                                   [found.id] if found else [], events))
        return document(202, None)
