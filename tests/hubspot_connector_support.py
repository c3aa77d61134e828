"""Shared pieces of the HubSpot connector tests: a HubSpot stand-in served on loopback with
fault injection, a property-write history, and a connector whose retries and rate budget run
on a fake clock (tests never sleep; the stand-in's rate limits are off unless asked for).

`partial_failures(app)` makes the stand-in's batch update/upsert honour the ``partial`` fault
kind (the stand-in does not yet): one input in five of the batch (at least one) is left
unapplied and answered in a 207 with a transient ``INTERNAL_ERROR`` naming its id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests

from connectors.budget import RateBudget, hubspot_spec
from connectors.hubspot import HubSpotConnector
from connectors.retry import RetryPolicy, RetrySettings
from connectors.sandbox.control import mount_control
from connectors.sandbox.faults import FaultInjector
from connectors.sandbox.hubspot import HubSpotApp, HubSpotSettings, HubSpotState, build_app
from connectors.sandbox.hubspot.state import Change as StateChange
from connectors.sandbox.server import Request, Response, Route, SandboxServer

TOKEN = "pat-sandbox"
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z
STAGES = ("subscriber", "lead", "customer")


def people(n: int, modified: int | None = None) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        person: dict[str, Any] = {
            "email": f"person{i}@example.com",
            "firstname": f"First{i}",
            "lastname": "Smith" if i % 2 else "Jones",
            "city": ("Berlin", "Lisbon", "Austin")[i % 3],
            "lifecyclestage": STAGES[i % 3],
            "createdate": T0 + i * 60_000,
        }
        if modified is not None:
            person["lastmodifieddate"] = modified
        out.append(person)
    return out


class FakeClock:
    """Monotonic seconds that only move when someone sleeps."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.slept = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)
        self.slept += max(0.0, seconds)


@dataclass
class Stand:
    """One running HubSpot stand-in."""

    url: str
    state: HubSpotState
    settings: HubSpotSettings
    app: HubSpotApp
    faults: FaultInjector
    server: SandboxServer
    history: list[StateChange] = field(default_factory=list)
    seen: list[tuple[str, bytes]] = field(default_factory=list)  # (route, body) past the guards
    http: requests.Session = field(default_factory=requests.Session)

    def control(self, method: str, path: str, body: Any = None) -> Any:
        resp = self.http.request(method, self.url + path, json=body, timeout=30)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def contact(self, key: str) -> dict[str, Any]:
        return self.control("GET", f"/_sandbox/hubspot/contacts/{key}")  # type: ignore[no-any-return]

    def bodies(self, route: str) -> list[bytes]:
        return [body for name, body in self.seen if name == route]

    def log(self, route: str = "*") -> list[dict[str, Any]]:
        return self.control("GET", f"/_sandbox/log?route={route}")["entries"]  # type: ignore[no-any-return]

    def set_faults(self, spec: str, seed: int = 7) -> None:
        self.control("PUT", "/_sandbox/faults", {"spec": spec, "seed": seed})

    def record_history(self) -> None:
        """Keep every property change the stand-in applies (a write history to audit)."""
        self.state.listeners.append(self.history.append)

    def stop(self) -> None:
        self.server.stop()
        self.app.close()
        self.http.close()


def start(
    n_people: int = 30,
    events: list[dict[str, Any]] | None = None,
    *,
    modified: int | None = None,
    rate_limits: bool = False,
) -> Stand:
    settings = HubSpotSettings(tokens={TOKEN})
    settings.rate_limit.enabled = rate_limits
    state = HubSpotState()
    state.load_records(people(n_people, modified), events or [])
    app = build_app(state, settings)
    partial_failures(app)
    injector = mount_control(app)
    server = SandboxServer(app).start()
    stand = Stand(server.url, state, settings, app, injector, server)

    def remember(req: Request, route: Route) -> None:
        if route.auth:
            stand.seen.append((route.name, req.body))

    app.guards.append(remember)
    return stand


def serving(stand: Stand) -> Iterator[Stand]:
    try:
        yield stand
    finally:
        stand.stop()


def connector(stand: Stand, clock: FakeClock | None = None, **kw: Any) -> HubSpotConnector:
    """A connector on the stand-in; retries and the budget run on `clock` (never sleeping)."""
    clock = clock or FakeClock()
    budget = RateBudget(hubspot_spec(per_10s=1_000_000, search_per_second=100_000),
                        clock=clock.now, sleep=clock.sleep)  # fmt: skip
    retry = RetryPolicy("hubspot", RetrySettings(max_attempts=8, max_elapsed=600.0),
                        sleep=clock.sleep, clock=clock.now)  # fmt: skip
    kw.setdefault("properties", ["lifecyclestage", "city"])
    return HubSpotConnector(TOKEN, stand.url, budget=budget, retry=retry, **kw)


# ---- the "partial" fault on batch writes -------------------------------------------------


def partial_failures(app: HubSpotApp) -> None:
    for route in app.routes:
        if route.name in ("contacts.batch.update", "contacts.batch.upsert"):
            route.handler = _partial(route.handler)


def _partial(handler: Any) -> Any:
    def wrapped(req: Request) -> Response:
        if req.fault != "partial":
            return handler(req)  # type: ignore[no-any-return]
        body = json.loads(req.body)
        inputs = body.get("inputs") or []
        failed = [inp for i, inp in enumerate(inputs) if i % 5 == 0]
        body["inputs"] = [inp for i, inp in enumerate(inputs) if i % 5 != 0]
        if body["inputs"]:
            req.body = json.dumps(body).encode()
            resp = handler(req)
            out = json.loads(resp.body)
        else:
            resp, out = Response(200), {"status": "COMPLETE", "results": []}
        if resp.status >= 300:
            return resp  # type: ignore[no-any-return]
        errors = out.setdefault("errors", [])
        for inp in failed:
            errors.append({"status": "error", "category": "INTERNAL_ERROR",
                           "message": "injected partial failure", "context": {"ids": [str(inp["id"])]},
                           "errors": [], "links": {}})  # fmt: skip
        out["numErrors"] = len(errors)
        return Response.json(207, out, headers={k: v for k, v in resp.headers.items() if k != "Content-Type"})

    return wrapped
