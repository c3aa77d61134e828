"""API cost of a plan: requests at each API's batch sizes, minutes at the rate ceiling, and
the share of the daily quota. Pure; an estimate of what the connectors will send.

HubSpot: field writes go 100 records per batch update (all of a record's fields in one
input); list memberships per (list, add|remove) in chunks of ``HUBSPOT_LIST_CHUNK`` ids; one
request per event. Requests are paced by the account's burst limit per 10 s (default 190)
and counted against its daily quota.

Klaviyo: below ``bulk_threshold`` profiles one PATCH each, above it bulk import jobs of
10,000 profiles (plus ``JOB_POLLS`` status polls each); list memberships 1,000 ids per call;
events one each, in bulk (1,000 per request) from ``event_bulk_threshold`` on. Each endpoint
class has its own steady per-minute limit (``connectors.budget.KLAVIYO_LIMITS``); the
minutes are the sum over classes (the connector works through them one after another).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from connectors.budget import KLAVIYO_LIMITS
from connectors.klaviyo.calls import KlaviyoOptions
from connectors.records import Change, ChangeOp

HUBSPOT_BATCH = 100
HUBSPOT_LIST_CHUNK = 1000
JOB_POLLS = 2
_FIELD_OPS = (ChangeOp.SET_FIELD, ChangeOp.UNSET_FIELD)
_LIST_OPS = (ChangeOp.LIST_ADD, ChangeOp.LIST_REMOVE)


@dataclass(frozen=True)
class Cost:
    changes: int
    requests: int
    minutes: float  # at the rate ceiling
    daily_share: float | None  # requests / daily quota (None: no daily quota applies)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _by_list(changes: Sequence[Change]) -> dict[tuple[str, ChangeOp], int]:
    out: dict[tuple[str, ChangeOp], int] = {}
    for c in changes:
        if c.op in _LIST_OPS:
            out[(c.target, c.op)] = out.get((c.target, c.op), 0) + 1
    return out


def hubspot_cost(changes: Sequence[Change], per_10s: int = 190, daily_quota: int = 650_000) -> Cost:
    records = {c.record_id for c in changes if c.op in _FIELD_OPS}
    requests = math.ceil(len(records) / HUBSPOT_BATCH)
    requests += sum(math.ceil(n / HUBSPOT_LIST_CHUNK) for n in _by_list(changes).values())
    requests += sum(1 for c in changes if c.op is ChangeOp.EVENT)
    return Cost(len(changes), requests, requests / (per_10s * 6), requests / daily_quota)


def klaviyo_cost(changes: Sequence[Change], options: KlaviyoOptions | None = None) -> Cost:
    opts = options or KlaviyoOptions()
    per_class: dict[str, int] = {}

    def spend(cls: str, n: int) -> None:
        per_class[cls] = per_class.get(cls, 0) + n

    profiles = len({c.record_id for c in changes if c.op in _FIELD_OPS})
    if profiles >= opts.bulk_threshold:
        spend("profile_bulk_import", math.ceil(profiles / opts.max_job_profiles) * (1 + JOB_POLLS))
    else:
        spend("profiles", profiles)
    spend("list_members", sum(math.ceil(n / opts.list_chunk) for n in _by_list(changes).values()))
    events = sum(1 for c in changes if c.op is ChangeOp.EVENT)
    if events >= opts.event_bulk_threshold:
        spend("event_bulk_create", math.ceil(events / opts.max_bulk_events))
    else:
        spend("events", events)
    minutes = sum(n / KLAVIYO_LIMITS[cls][1] for cls, n in per_class.items())
    return Cost(len(changes), sum(per_class.values()), minutes, None)
