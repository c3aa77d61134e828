"""Support for the run tests: a time-independent project against the sandbox, readers of what
the stand-ins hold (over their ``/_sandbox/`` inspection routes) and of the store."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests
from sqlalchemy import Engine, select

from sync import outbox
from sync.demo import is_write, request_log
from sync.store import schema

# Rules without time windows: only new data (not the clock) moves anyone.
CONFIG = """
[store]
url = "{store}"

[attributes]
crm_stage = "string"

[events.opened_email]
aliases = {{ klaviyo = ["Opened Email"] }}

[events.placed_order]
aliases = {{ klaviyo = ["Placed Order"] }}

[traits]
orders = 'count("placed_order")'
opens = 'count("opened_email")'

[segments.buyer]
rule = "orders >= 1"
[segments.repeat_buyer]
rule = "orders >= 2"
[segments.opener]
rule = "opens >= 3"
[segments.customer_stage]
rule = 'crm_stage == "customer"'

[fields]
order_count = "orders"

[sources.hubspot]
token = "env:SEGSYNC_RUN_HS"
base_url = "{hubspot}"
email_events = false
[sources.hubspot.attributes]
crm_stage = "lifecyclestage"

[sources.klaviyo]
api_key = "env:SEGSYNC_RUN_KL"
base_url = "{klaviyo}"

[destinations]
mass_removal_min = {guard}

[destinations.hubspot]
tags = {{ field = "segsync_segments" }}
booleans = {{ segsync_customer = "customer_stage" }}
entered_at = {{ segsync_customer_since = "customer_stage" }}
values = {{ segsync_orders = {{ source = "order_count", default = 0 }} }}
lists = {{ "segsync customers" = "customer_stage" }}

[destinations.klaviyo]
tags = {{ field = "segsync_segments" }}
values = {{ segsync_orders = "order_count" }}
lists = {{ "segsync openers" = "opener" }}
"""
ENV = {"SEGSYNC_RUN_HS": "pat-sandbox", "SEGSYNC_RUN_KL": "pk_sandbox"}


def config(hubspot: str, klaviyo: str, store: str = "sqlite:///run.db", guard: int = 1000,
           extra: str = "") -> str:
    return CONFIG.format(store=store, hubspot=hubspot, klaviyo=klaviyo, guard=guard) + extra


def writes(url: str, since_ms: int) -> list[dict[str, Any]]:
    """Write requests a stand-in received since ``since_ms``."""
    return [e for e in request_log(url, since_ms) if is_write(e)]


def get(url: str) -> Any:
    response = requests.get(url, timeout=30)
    response.raise_for_status()
    return response.json()


def desired(engine: Engine, destination: str) -> dict[tuple[str, str], Any]:
    d = schema.desired_values
    with engine.connect() as conn:
        return {(r[0], r[1]): r[2] for r in conn.execute(
            select(d.c.record_id, d.c.target, d.c.value).where(d.c.destination == destination))}


def records(engine: Engine, destination: str) -> list[str]:
    i = schema.identities
    with engine.connect() as conn:
        return sorted(conn.execute(select(i.c.provider_id).where(
            i.c.provider == destination, i.c.archived.is_(False))).scalars())


def hubspot_text(value: Any) -> str:
    """A desired value as HubSpot stores every property: a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _instant_ms(value: str) -> str:
    """HubSpot answers datetime properties in ISO-8601; segsync writes epoch ms."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}T[0-9:.]+Z", value):
        return str(int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000))
    return value


def hubspot_state(url: str, ids: Iterable[str], fields: Iterable[str],
                  lists: dict[str, str]) -> dict[tuple[str, str], Any]:
    """(record, target) -> value of the given fields and list memberships, as HubSpot holds them
    (empty fields and non-memberships left out)."""
    out: dict[tuple[str, str], Any] = {}
    members = {name: set(get(f"{url}/_sandbox/hubspot/lists/{quote(name)}")["members"])
               for name in lists}
    wanted = list(fields)
    for rid in ids:
        props = get(f"{url}/_sandbox/hubspot/contacts/{rid}")["properties"]
        for name in wanted:
            if props.get(name) not in (None, ""):
                out[(rid, f"field:{name}")] = _instant_ms(props[name])
        for name in lists:
            if rid in members[name]:
                out[(rid, f"list:{name}")] = True
    return out


def klaviyo_state(url: str, ids: Iterable[str], fields: Iterable[str],
                  list_ids: dict[str, str]) -> dict[tuple[str, str], Any]:
    out: dict[tuple[str, str], Any] = {}
    members = {name: set(get(f"{url}/_sandbox/klaviyo/lists/{lid}")["members"])
               for name, lid in list_ids.items()}
    wanted = list(fields)
    for rid in ids:
        props = get(f"{url}/_sandbox/klaviyo/profiles/{rid}").get("properties") or {}
        for name in wanted:
            if props.get(name) not in (None, "", []):
                out[(rid, f"field:{name}")] = props[name]
        for name in list_ids:
            if rid in members[name]:
                out[(rid, f"list:{name}")] = True
    return out


def klaviyo_list_ids(url: str, names: Iterable[str]) -> dict[str, str]:
    body = requests.get(f"{url}/api/lists", headers={"Authorization": "Klaviyo-API-Key pk_sandbox",
                                                      "revision": "2025-01-15"}, timeout=30).json()
    found = {item["attributes"]["name"]: item["id"] for item in body["data"]}
    return {name: found[name] for name in names}


def expected_hubspot(engine: Engine) -> dict[tuple[str, str], Any]:
    return {k: (True if k[1].startswith("list:") else hubspot_text(v))
            for k, v in desired(engine, "hubspot").items()}


def expected_klaviyo(engine: Engine) -> dict[tuple[str, str], Any]:
    return {k: (True if k[1].startswith("list:") else v) for k, v in desired(engine, "klaviyo").items()}


def audit_rows(engine: Engine, status: str = "applied") -> list[dict[str, Any]]:
    a = schema.audit_log
    with engine.connect() as conn:
        rows = conn.execute(select(a).where(a.c.status == status).order_by(a.c.id)).all()
    return [dict(r._mapping) for r in rows]


def assert_applied_once(engine: Engine) -> None:
    """Per (destination, record, target), the applied changes form one chain: each starts from
    the value the previous one set, and none repeats a change already applied. After a write was
    interrupted by the kill the value is unknown (``outbox.UNKNOWN``): the next applied change
    starts from that, and the chain goes on from what it set."""
    chains: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in audit_rows(engine):
        if row["target"].startswith("event:"):
            continue
        chains.setdefault((row["destination"], row["record_id"], row["target"]), []).append(row)
    for key, rows in chains.items():
        previous: Any = None
        for row in rows:
            new = {"list_add": True, "list_remove": None}.get(row["op"], row["new_value"])
            if row["old_value"] == outbox.UNKNOWN:
                previous = new
                continue
            assert json.dumps(row["old_value"]) == json.dumps(previous), (key, rows)
            assert json.dumps(new) != json.dumps(row["old_value"]), (key, rows)
            previous = new
