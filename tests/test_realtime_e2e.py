"""End to end on the sandbox: its own webhook senders, pointed at the service, deliver live
activity (HubSpot lifecycle changes and email engagement, Klaviyo opens); the service
acknowledges and stores them, the worker applies them, the real-time hook re-evaluates and
enqueues, the flusher pushes, and the sandbox's HubSpot properties and Klaviyo profiles end up
matching the segments of the changed contacts — with no pull and no full run after the start."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bench.bench_realtime import CUSTOMER, LiveStack
from sync.store import schema

pytestmark = pytest.mark.slow


def _post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _hubspot(stack: LiveStack) -> dict[int, tuple[bool, str | None]]:
    """Linked sandbox contact -> (is a customer, segsync_customer as HubSpot holds it)."""
    return {cid: (p.get("lifecyclestage") in CUSTOMER, p.get("segsync_customer"))
            for cid, p in stack.hubspot_contacts().items()}


def _klaviyo_tags(stack: LiveStack) -> dict[str, list[str]]:
    state = stack.sandbox.klaviyo.state
    with state.lock:
        return {pid: list(p.properties.get("segsync_segments") or []) for pid, p in state.profiles.items()}


def _wait(check: Any, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_sandbox_webhooks_drive_live_changes_into_both_providers(tmp_path: Path) -> None:
    with LiveStack(tmp_path, contacts=80, rate_limits=False, seed=5) as stack:
        assert stack.initial.ok and stack.initial.applied > 0
        before = _hubspot(stack)
        assert all(flag == ("true" if member else "false") for member, flag in before.values())
        tags_before = _klaviyo_tags(stack)
        with stack.engine.connect() as conn:
            inbox_before = conn.execute(select(func.count()).select_from(schema.inbox)).scalar_one()

        _post(f"{stack.sandbox.hubspot_url}/_sandbox/live", {"count": 60, "kinds": ["property_change"],
                                                             "seed": 3})
        _post(f"{stack.sandbox.klaviyo_url}/_sandbox/live", {"events": 60, "seed": 3})

        def settled() -> bool:
            now = _hubspot(stack)
            return all(flag == ("true" if member else "false") for member, flag in now.values())

        assert _wait(settled), "HubSpot's segsync_customer does not match the live lifecycle stages"
        after = _hubspot(stack)
        moved = {cid for cid in after if after[cid][0] != before.get(cid, (None,))[0]}
        assert moved, "the live activity moved nobody in or out of customers (pick another seed)"

        # every move reached the store through a webhook: the inbox grew and no pull ran since
        with stack.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(schema.inbox)).scalar_one() > inbox_before
            pulls = conn.execute(select(func.count()).select_from(schema.runs)
                                 .where(schema.runs.c.kind == "pull")).scalar_one()
        assert pulls == 1

        # Klaviyo: the same people's tags follow, and entering customers sent the transition event
        emails = {cid: p.get("email") for cid, p in stack.hubspot_contacts().items()}
        state = stack.sandbox.klaviyo.state

        def klaviyo_follows() -> bool:
            tags = _klaviyo_tags(stack)
            with state.lock:
                by_email = {p.attrs.get("email"): pid for pid, p in state.profiles.items()}
            checked = [("customers" in tags[by_email[emails[c]]]) == after[c][0]
                       for c in moved if emails.get(c) in by_email]
            return bool(checked) and all(checked)

        assert _wait(klaviyo_follows), "Klaviyo's segsync_segments do not follow the moves"
        assert _klaviyo_tags(stack) != tags_before
        newly = [c for c in moved if after[c][0]]
        assert newly and "Entered segment: customers" in state.metric_by_name
        a, i = schema.audit_log.c, schema.inbox.c

        def pushed() -> set[str]:  # the audit is written once a whole connector call returned
            with stack.engine.connect() as conn:
                return set(conn.execute(select(a.destination).where(a.trigger != "initial",
                                                                    a.status == "applied")).scalars())

        assert _wait(lambda: pushed() == {"hubspot", "klaviyo"}), pushed()
        with stack.engine.connect() as conn:
            opens = conn.execute(select(func.count()).select_from(schema.inbox).where(
                i.source == "klaviyo", i.outcome == "applied")).scalar_one()
        assert opens > 0  # Klaviyo's own webhooks (opens) were applied too
