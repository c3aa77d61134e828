"""Conversion of the commons' synthetic ``Dataset`` (``connectors.sandbox.dataset``) into HubSpot
records: people -> contact property dicts, email activity -> a column-loaded event store."""

from __future__ import annotations

from typing import Any

import numpy as np

from .email_events import KIND_TO_TYPE, TYPE_CODE, EmailEventStore

EMAIL_ACTIVITY_KINDS = frozenset(
    {
        "email_sent",
        "email_delivered",
        "email_opened",
        "email_clicked",
        "email_bounced",
        "email_unsubscribed",
    }
)


def person_record(p: Any) -> dict[str, Any]:
    return {
        "email": p.email,
        "firstname": p.first_name,
        "lastname": p.last_name,
        "phone": p.phone,
        "city": p.city,
        "country": p.country,
        "lifecyclestage": p.lifecycle_stage,
        "createdate": p.created_at,
    }


def email_activity(dataset: Any) -> EmailEventStore:
    """The data set's email activity of people held in HubSpot, loaded column-wise."""
    from connectors.sandbox.dataset import KINDS

    acts = dataset.activities
    people = dataset.people
    rows = acts.select(kinds=sorted(EMAIL_ACTIVITY_KINDS))
    keep = np.array([p.in_hubspot and bool(p.email.strip()) for p in people], dtype=bool)
    rows = rows[keep[acts.person[rows]]]
    unique: dict[str, int] = {}
    person_email = np.array([unique.setdefault(p.email.strip().lower(), len(unique)) for p in people])
    kind_to_code = np.array([TYPE_CODE.get(KIND_TO_TYPE.get(k, ""), 0) for k in KINDS], dtype=np.uint8)
    kinds = acts.kind[rows]
    store = EmailEventStore()
    aux, product = getattr(acts, "_aux", None), getattr(acts, "_product", None)
    if aux is not None and product is not None:
        # the columns the data set keeps for email rows: campaign index (aux), clicked product
        campaign_ids = np.array([c.campaign_id for c in dataset.campaigns], dtype=np.int64)
        campaigns = campaign_ids[aux[rows]]
        clicked = kinds == KINDS.index("email_clicked")
        url_idx = np.where(clicked, product[rows], -1).astype(np.int64)
        urls = [p.url for p in dataset.products]
    else:  # only the public row objects: slower
        props = [acts[i].properties for i in rows.tolist()]
        campaigns = np.array([int(p.get("campaign_id") or 0) for p in props], dtype=np.int64)
        url_list: dict[str, int] = {}
        url_idx = np.array([url_list.setdefault(p["url"], len(url_list)) if p.get("url") else -1
                            for p in props], dtype=np.int64)  # fmt: skip
        urls = list(url_list)
    store.load_columns(acts.ts[rows], kind_to_code[kinds], person_email[acts.person[rows]],
                       list(unique), campaigns, url_idx, urls)  # fmt: skip
    return store
