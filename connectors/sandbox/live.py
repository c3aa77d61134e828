"""Live activity for a running sandbox: fresh, seeded events and attribute changes.

The stand-ins' "generate live activity" control call uses these to feed the real-time path
(webhooks out, incremental pulls). Nothing here mutates the :class:`Dataset`; the caller applies
the returned records to its own state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from connectors.sandbox import _catalog
from connectors.sandbox.dataset import LIFECYCLE_STAGES, Activity, Dataset

_LIVE_KINDS = ("product_viewed", "added_to_cart", "order_placed", "email_opened", "email_clicked")
_LIVE_WEIGHTS = (0.5, 0.2, 0.1, 0.15, 0.05)


def live_activity(dataset: Dataset, n: int, *, now_ms: int, seed: int, first_id: int,
                  people: Sequence[int] | None = None) -> list[Activity]:
    """``n`` fresh activities at ``now_ms`` (spread over the preceding minute) for random people.

    ``people`` restricts the choice (indices into ``dataset.people``; e.g. only those a stand-in
    holds); ids run from ``first_id``. Same arguments -> same activities.
    """
    rng = np.random.default_rng([dataset.seed, seed])
    pool = np.arange(len(dataset.people)) if people is None else np.asarray(people)
    if n <= 0 or len(pool) == 0:
        return []
    products, campaign = dataset.products, dataset.campaigns[-1]
    out = []
    for k in range(n):
        who = dataset.people[int(pool[rng.integers(0, len(pool))])]
        kind = _LIVE_KINDS[int(rng.choice(len(_LIVE_KINDS), p=_LIVE_WEIGHTS))]
        p = products[int(rng.integers(0, len(products)))]
        ts = now_ms - int(rng.integers(0, 60_000))
        props: dict[str, Any]
        value = 0.0
        if kind in ("email_opened", "email_clicked"):
            props = {"campaign_id": campaign.campaign_id, "email_id": campaign.email_id,
                     "subject": campaign.subject}
            if kind == "email_clicked":
                props.update(url=p.url, product=p.name)
        elif kind == "order_placed":
            qty = int(rng.integers(1, 3))
            value = round(p.price * qty, 2)
            props = {"order_id": f"ORD-L{seed}-{first_id + k}", "items": [p.name],
                     "item_count": qty, "cart_id": f"cart-L{seed}-{first_id + k}"}
        else:
            value = p.price
            props = {"product": p.name, "product_id": p.product_id, "category": p.category,
                     "price": p.price, "url": p.url}
            if kind == "added_to_cart":
                props.update(quantity=1, cart_id=f"cart-L{seed}-{first_id + k}")
        out.append(Activity(who.key, kind, ts, value, props, first_id + k))
    return out


@dataclass(frozen=True, slots=True)
class Change:
    person_key: str
    field: str  # a Person attribute: "city", "country", "phone", "lifecycle_stage", "last_name"
    value: str


def live_changes(dataset: Dataset, n: int, *, seed: int,
                 people: Sequence[int] | None = None) -> list[Change]:
    """``n`` seeded changes (a move yields two: city and country; phone; lifecycle promotion)."""
    rng = np.random.default_rng([dataset.seed, seed, 1])
    pool = np.arange(len(dataset.people)) if people is None else np.asarray(people)
    if n <= 0 or len(pool) == 0:
        return []
    out = []
    for _ in range(n):
        who = dataset.people[int(pool[rng.integers(0, len(pool))])]
        what = int(rng.integers(0, 3))
        if what == 0:
            city, country, _cc = _catalog.CITIES[int(rng.integers(0, len(_catalog.CITIES)))]
            out += [Change(who.key, "city", city), Change(who.key, "country", country)]
        elif what == 1:
            out.append(Change(who.key, "phone", f"+1{int(rng.integers(200_000_000, 999_999_999))}"))
        else:  # stages only move forward; "customer" needs an order, so promotion stops before it
            stage = LIFECYCLE_STAGES.index(who.lifecycle_stage)
            nxt = LIFECYCLE_STAGES[min(stage + 1, 3)] if stage < 3 else who.lifecycle_stage
            out.append(Change(who.key, "lifecycle_stage", nxt))
    return out
