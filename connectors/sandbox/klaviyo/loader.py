"""Fill a :class:`KlaviyoState` from the synthetic :class:`~connectors.sandbox.dataset.Dataset`.

* People with ``in_klaviyo`` become profiles (id ``ulid(created_at, n)``, deterministic per seed).
  Klaviyo keys profiles by email case-insensitively, so a ``duplicate`` person (a case/whitespace
  variant of another's email) lands on the same profile; an ``invalid`` email cannot be stored, so
  that person's profile carries only phone number and external id. A phone number already taken is
  dropped (phone numbers are unique identifiers too).
* Activities become events of the Klaviyo metrics below (``email_sent`` has no Klaviyo metric:
  "Received Email" is the delivery). Columns are copied in bulk (numpy -> ``array``); event
  properties stay in the data set and are built only when a response needs them.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any

import numpy as np

from connectors.sandbox.klaviyo.ids import ulid
from connectors.sandbox.klaviyo.state import EMAIL_RE, PHONE_RE, KlaviyoState, Profile

if TYPE_CHECKING:
    from connectors.sandbox.dataset import Dataset

METRIC_OF_KIND = {
    "email_delivered": ("Received Email", "Klaviyo"),
    "email_opened": ("Opened Email", "Klaviyo"),
    "email_clicked": ("Clicked Email", "Klaviyo"),
    "email_bounced": ("Bounced Email", "Klaviyo"),
    "email_unsubscribed": ("Unsubscribed", "Klaviyo"),
    "product_viewed": ("Viewed Product", "API"),
    "added_to_cart": ("Added to Cart", "API"),
    "order_placed": ("Placed Order", "API"),
}
VALUED_KINDS = ("product_viewed", "added_to_cart", "order_placed")


def load_dataset(state: KlaviyoState, dataset: Dataset) -> None:
    from connectors.sandbox.dataset import KINDS

    with state.lock:
        state.dataset = dataset
        profile_of = np.full(len(dataset.people), -1, dtype=np.int32)
        for i, person in enumerate(dataset.people):
            if person.in_klaviyo:
                profile_of[i] = _profile(state, dataset, i).index
        first_ms = int(dataset.activities.ts[0]) if len(dataset.activities) else dataset.now_ms
        metric_of = np.full(len(KINDS), -1, dtype=np.int16)
        for k, kind in enumerate(KINDS):
            if kind in METRIC_OF_KIND:
                name, service = METRIC_OF_KIND[kind]
                metric_of[k] = state.metric(name, service, ms=first_ms).index
        acts = dataset.activities
        rows = np.flatnonzero((profile_of[acts.person] >= 0) & (metric_of[acts.kind] >= 0))
        if len(state.events) and len(rows) and int(acts.ts[rows[0]]) < state.events.ms[-1]:
            raise ValueError("load the data set into an empty state")
        valued = np.isin(acts.kind[rows], [KINDS.index(k) for k in VALUED_KINDS])
        value = np.where(valued, acts.value[rows], np.nan)
        state.events.extend_sorted(
            _arr("q", acts.ts[rows].astype(np.int64)),
            _arr("h", metric_of[acts.kind[rows]].astype(np.int16)),
            _arr("i", profile_of[acts.person[rows]].astype(np.int32)),
            _arr("d", value.astype(np.float64)),
            _arr("i", (-1 - rows).astype(np.int32)),
        )
        state.events.external = lambda row: acts[row].properties
        last = np.zeros(len(state.by_index), dtype=np.int64)
        np.maximum.at(last, profile_of[acts.person[rows]], acts.ts[rows])
        for idx in np.flatnonzero(last).tolist():
            state.profiles[state.by_index[idx]].last_event = int(last[idx])


def _profile(state: KlaviyoState, dataset: Dataset, i: int) -> Profile:
    person = dataset.people[i]
    email = person.email.strip()
    existing = state.find("email", email) if email else None
    if existing is not None:
        return existing
    attrs: dict[str, Any] = {
        "first_name": person.first_name,
        "last_name": person.last_name,
        "location": {"city": person.city, "country": person.country},
        "properties": {"lifecycle_stage": person.lifecycle_stage},
    }
    if email and EMAIL_RE.match(email):
        attrs["email"] = email
    if PHONE_RE.match(person.phone) and state.find("phone_number", person.phone) is None:
        attrs["phone_number"] = person.phone
    if person.external_id and state.find("external_id", person.external_id) is None:
        attrs["external_id"] = person.external_id
    if not any(attrs.get(f) for f in ("email", "phone_number", "external_id")):
        attrs["external_id"] = person.key
    return state.create_profile(attrs, ms=person.created_at, pid=ulid(person.created_at, i + 1))


def _arr(code: str, values: Any) -> array[Any]:
    out = array(code)
    out.frombytes(np.ascontiguousarray(values).tobytes())
    return out
