"""Live activity: new events now (and profile changes) that also go out as webhooks.

Used by ``POST /_sandbox/klaviyo/activity`` and the launcher's generic ``POST /_sandbox/live``.
With a loaded data set the events come from :func:`connectors.sandbox.live.live_activity` (the
same people, products and campaigns); without one, from a small built-in generator.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from connectors.sandbox.klaviyo.ids import iso
from connectors.sandbox.klaviyo.state import KlaviyoState, Profile

if TYPE_CHECKING:
    from connectors.sandbox.klaviyo.app import KlaviyoApp

FALLBACK_METRICS = (
    "Received Email",
    "Opened Email",
    "Clicked Email",
    "Viewed Product",
    "Added to Cart",
    "Placed Order",
)


def generate_live(app: KlaviyoApp, body: dict[str, Any]) -> dict[str, Any]:
    n = body.get("events", body.get("count", 10))
    changes = body.get("changes", 0)
    seed = body.get("seed", 0)
    for name, v in (("events", n), ("changes", changes), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0 or (name != "seed" and v > 10_000):
            raise ValueError(f"'{name}' must be an integer from 0 to 10000")
    state = app.state
    with state.lock:
        pool = select(state, body)
        if not pool and (n or changes):
            raise ValueError("there are no profiles to generate activity for")
        if state.dataset is not None and not body.get("metrics"):
            created = _from_dataset(state, pool, n, seed)
        else:
            rng = random.Random(seed)
            names = body.get("metrics") or list(FALLBACK_METRICS)
            created = [_fallback(state, rng, rng.choice(pool), str(rng.choice(names))) for _ in range(n)]
        changed = _changes(state, pool, changes, seed)
    return {"events": created, "changes": changed}


def select(state: KlaviyoState, body: dict[str, Any]) -> list[Profile]:
    ids, emails = body.get("profile_ids"), body.get("emails")
    if ids:
        missing = [i for i in ids if i not in state.profiles]
        if missing:
            raise ValueError(f"unknown profile ids: {', '.join(map(str, missing))}")
        return [state.profiles[i] for i in ids]
    if emails:
        found = [state.find("email", str(e)) for e in emails]
        if any(p is None for p in found):
            raise ValueError("some emails match no profile")
        return [p for p in found if p is not None]
    return list(state.profiles.values())


def _from_dataset(state: KlaviyoState, pool: list[Profile], n: int, seed: int) -> list[dict[str, Any]]:
    from connectors.sandbox.klaviyo.loader import METRIC_OF_KIND, VALUED_KINDS
    from connectors.sandbox.live import live_activity

    # live_activity picks people; map each pooled profile to a stand-in person by position.
    acts = live_activity(
        state.dataset,
        n,
        now_ms=state.now_ms(),
        seed=seed,
        first_id=len(state.events),
        people=list(range(len(pool))),
    )
    out = []
    for a in acts:
        p = pool[int(a.person_key[1:]) % len(pool)]
        name, service = METRIC_OF_KIND[a.kind]
        value = a.value if a.kind in VALUED_KINDS else None
        eid = state.add_event(state.metric(name, service), p, a.ts, a.properties, value)
        out.append({"id": eid, "metric": name, "profile_id": p.id, "datetime": iso(a.ts)})
    return out


def _fallback(state: KlaviyoState, rng: random.Random, p: Profile, name: str) -> dict[str, Any]:
    service = "Klaviyo" if name.endswith("Email") or name == "Unsubscribed" else "API"
    value = None
    if service == "Klaviyo":
        props: dict[str, Any] = {"subject": "Sandbox live update", "campaign_id": 0}
    else:
        product = rng.choice(("Trail Runner Pro", "Summit Jacket Eco", "Canvas Tote Classic"))
        props = {"product": product}
        if name == "Placed Order":
            value = round(rng.uniform(10, 300), 2)
            props = {"items": [product], "item_count": 1}
    ms = state.now_ms()
    eid = state.add_event(state.metric(name, service), p, ms, props, value)
    return {"id": eid, "metric": name, "profile_id": p.id, "datetime": iso(ms)}


def _changes(state: KlaviyoState, pool: list[Profile], n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed * 7919 + 1)
    out = []
    for _ in range(n):
        p = rng.choice(pool)
        city = rng.choice(("Berlin", "Paris", "Lisbon", "Austin", "Tokyo"))
        state.update_profile(p, {"location": {"city": city}})
        out.append({"profile_id": p.id, "field": "location.city", "value": city})
    return out
