"""Live activity for exercising real-time paths: property changes, new contacts and marketing-email
events (opens/clicks also bump ``hs_email_last_open_date`` / ``hs_email_last_click_date``), applied
through the same state primitives as API writes, so webhooks fire. Deterministic per seed."""

from __future__ import annotations

import random
from typing import Any

from .schema import LIFECYCLE_STAGES, iso_ms
from .state import HubSpotState

KINDS = ("property_change", "new_contact", "email_event")
CITIES = ("Berlin", "Lisbon", "Austin", "Toronto", "Osaka", "Lyon", "Denver", "Porto")
NAMES = ("Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Ken", "Frances")


def generate(state: HubSpotState, count: int, kinds: tuple[str, ...], seed: int) -> list[dict[str, Any]]:
    """Apply ``count`` random changes of the given kinds; returns what was done."""
    rng = random.Random(seed)
    done: list[dict[str, Any]] = []
    with state.lock:
        active = [c for c in state.contacts.values() if not c.archived]
        for i in range(count):
            kind = kinds[i] if i < len(kinds) else rng.choice(kinds)  # each kind at least once
            if kind == "new_contact" or not active:
                email = f"live-{seed}-{i}-{rng.randrange(10**6)}@example.com"
                if email in state.by_email:
                    continue
                c = state.create(
                    {
                        "email": email,
                        "firstname": rng.choice(NAMES),
                        "city": rng.choice(CITIES),
                        "lifecyclestage": "subscriber",
                    },
                    source="CRM",
                )
                active.append(c)
                done.append({"kind": "new_contact", "id": c.id, "email": email})
            elif kind == "property_change":
                c = rng.choice(active)
                stage = c.props.get("lifecyclestage")
                if stage in LIFECYCLE_STAGES and rng.random() < 0.5:
                    pos = LIFECYCLE_STAGES.index(stage)
                    changes = {"lifecyclestage": LIFECYCLE_STAGES[min(pos + 1, len(LIFECYCLE_STAGES) - 2)]}
                else:
                    changes = {"city": rng.choice(CITIES)}
                state.apply(c, changes, source="CRM")
                done.append({"kind": "property_change", "id": c.id, "properties": changes})
            else:
                with_email = [c for c in active[-500:] if "email" in c.props] or [
                    c for c in active if "email" in c.props
                ]
                if not with_email:
                    continue
                c = rng.choice(with_email)
                etype = rng.choice(("OPEN", "CLICK", "DELIVERED"))
                now = state.clock()
                url = (
                    f"https://shop.example.com/products/{rng.randrange(1, 50)}" if etype == "CLICK" else None
                )
                state.email_events.add(
                    now, etype, c.props["email"], campaign_id=rng.randrange(1, 20), url=url
                )
                if etype in ("OPEN", "CLICK"):
                    prop = "hs_email_last_open_date" if etype == "OPEN" else "hs_email_last_click_date"
                    state.apply(c, {prop: iso_ms(now)}, source="EMAIL")
                done.append({"kind": "email_event", "type": etype, "id": c.id, "email": c.props["email"]})
    return done


MAX_COUNT = 100_000


def _count(body: dict[str, Any], key: str, default: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise ValueError(f"'{key}' must be an integer between 0 and {MAX_COUNT}")
    return value


def run_request(state: HubSpotState, body: dict[str, Any], default_seed: int) -> dict[str, Any]:
    """Serve ``{"count": N, "kinds": [...], "seed": S}`` or the commons' generic
    ``{"events": N, "changes": M, "seed": S}`` (events = email events; changes = property changes
    and new contacts). Raises ValueError on a bad request."""
    seed = body.get("seed", default_seed)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError("'seed' must be an integer")
    done: list[dict[str, Any]] = []
    if "events" in body or "changes" in body:
        changes, events = _count(body, "changes", 0), _count(body, "events", 0)
        if changes:
            done += generate(state, changes, ("property_change", "new_contact"), seed)
        if events:
            done += generate(state, events, ("email_event",), seed + 1)
    else:
        kinds = body.get("kinds", list(KINDS))
        if not isinstance(kinds, list) or not kinds or any(k not in KINDS for k in kinds):
            raise ValueError(f"'kinds' must be a non-empty subset of {list(KINDS)}")
        done = generate(state, _count(body, "count", 10), tuple(kinds), seed)
    return {"generated": len(done), "changes": done}
