"""The generic ``/_sandbox/`` control endpoints, on a tiny stand-in over real loopback HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from connectors.sandbox.control import ControlHooks, mount_control
from connectors.sandbox.server import Request, Response, SandboxServer
from tests.test_sandbox_common_faults import make_app


@dataclass
class Fake:
    """Stand-in state and settings the hooks delegate to."""

    limits: dict[str, Any] = field(default_factory=lambda: {"enabled": True, "max_requests": 190})
    resets: int = 0
    live_calls: list[dict[str, Any]] = field(default_factory=list)

    def set_limits(self, patch: dict[str, Any]) -> None:
        unknown = set(patch) - set(self.limits)
        if unknown:
            raise ValueError(f"unknown setting {sorted(unknown)[0]}")
        self.limits.update(patch)

    def live(self, req: Request) -> Response:
        body = req.json()
        if not isinstance(body.get("events", 0), int):
            return Response.json(400, {"error": "events must be an integer"})
        self.live_calls.append(body)
        return Response.json(200, {"events": body.get("events", 0)})


@pytest.fixture
def sandbox() -> Iterator[tuple[str, list[Any], Fake]]:
    app, items = make_app()
    fake = Fake()

    def reset() -> None:
        items.clear()
        fake.resets += 1

    hooks = ControlHooks(
        reset=reset,
        get_rate_limits=lambda: dict(fake.limits),
        set_rate_limits=fake.set_limits,
        live=fake.live,
    )
    mount_control(app, hooks)
    with SandboxServer(app) as server:
        yield server.url, items, fake


def test_log_records_and_filters(sandbox: tuple[str, list[Any], Fake]) -> None:
    url, _, _ = sandbox
    requests.post(f"{url}/items", json={"a": 1}, timeout=5)
    time.sleep(0.01)  # log times are whole milliseconds
    mark = int(time.time() * 1000)
    time.sleep(0.01)
    requests.get(f"{url}/items", timeout=5)
    requests.get(f"{url}/nowhere", timeout=5)
    log = requests.get(f"{url}/_sandbox/log", timeout=5).json()["entries"]
    assert [(e["method"], e["path"], e["route"], e["status"]) for e in log] == [
        ("POST", "/items", "items.create", 201),
        ("GET", "/items", "items.list", 200),
        ("GET", "/nowhere", "unmatched", 500),
    ]
    assert all(e["ms"] >= 0 and e["at_ms"] > 0 for e in log)

    def filtered(**params: Any) -> list[str]:
        entries = requests.get(f"{url}/_sandbox/log", params=params, timeout=5).json()["entries"]
        return [e["route"] for e in entries]

    assert filtered(route="items.*") == ["items.create", "items.list"]
    assert filtered(method="post") == ["items.create"]
    assert filtered(since=mark, route="[iu]*") == ["items.list", "unmatched"]
    assert filtered(status=201) == ["items.create"]
    assert filtered(limit=1, route="items.*") == ["items.list"]
    r = requests.get(f"{url}/_sandbox/log", params={"since": "yesterday"}, timeout=5)
    assert r.status_code == 400 and "integers" in r.json()["error"]


def test_counters_per_route_and_status(sandbox: tuple[str, list[Any], Fake]) -> None:
    url, _, _ = sandbox
    for _ in range(3):
        requests.post(f"{url}/items", json={}, timeout=5)
    requests.put(f"{url}/_sandbox/faults", json={"spec": "429=1#1@items.list"}, timeout=5)
    requests.get(f"{url}/items", timeout=5)
    requests.get(f"{url}/items", timeout=5)
    routes = requests.get(f"{url}/_sandbox/counters", timeout=5).json()["routes"]
    assert routes["items.create"] == {"total": 3, "by_status": {"201": 3}}
    assert routes["items.list"] == {"total": 2, "by_status": {"200": 1, "429": 1}}


def test_faults_get_set_clear(sandbox: tuple[str, list[Any], Fake]) -> None:
    url, _, _ = sandbox
    put = requests.put(f"{url}/_sandbox/faults", json={"spec": "429=1#1@items.list", "seed": 9}, timeout=5)
    assert put.status_code == 200 and put.json()["spec"] == "429=1#1@items.list" and put.json()["seed"] == 9
    assert requests.get(f"{url}/items", timeout=5).status_code == 429
    got = requests.get(f"{url}/_sandbox/faults", timeout=5).json()
    assert got["injected"] == [{"route": "items.list", "kind": "429", "count": 1}]
    rules = [{"kind": "5xx", "probability": 1, "routes": "items.create"}]
    assert requests.put(f"{url}/_sandbox/faults", json={"rules": rules}, timeout=5).json()["spec"] == (
        "5xx=1@items.create"
    )
    assert requests.post(f"{url}/items", json={}, timeout=5).status_code >= 500
    cleared = requests.delete(f"{url}/_sandbox/faults", timeout=5).json()
    assert cleared["rules"] == [] and requests.post(f"{url}/items", json={}, timeout=5).status_code == 201


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"spec": "zap=1"}', "unknown kind"),
        (b'{"spec": "429=1", "rules": []}', "expected"),
        (b'{"spec": "429=1", "seed": "x"}', "seed must be an integer"),
        (b"not json", "not JSON"),
        (b"[1]", "JSON object"),
    ],
)
def test_bad_fault_requests(sandbox: tuple[str, list[Any], Fake], body: bytes, reason: str) -> None:
    url, _, _ = sandbox
    r = requests.put(f"{url}/_sandbox/faults", data=body, timeout=5)
    assert r.status_code == 400 and reason in r.json()["error"]


def test_rate_limits_delegate_to_settings(sandbox: tuple[str, list[Any], Fake]) -> None:
    url, _, fake = sandbox
    limits = requests.get(f"{url}/_sandbox/rate-limits", timeout=5).json()
    assert limits == {"enabled": True, "max_requests": 190}
    r = requests.put(f"{url}/_sandbox/rate-limits", json={"enabled": False}, timeout=5)
    assert r.json() == {"enabled": False, "max_requests": 190} and fake.limits["enabled"] is False
    r = requests.put(f"{url}/_sandbox/rate-limits", json={"speed": 3}, timeout=5)
    assert r.status_code == 400 and r.json() == {"error": "unknown setting speed"}


def test_reset_restores_state_and_clears_records(sandbox: tuple[str, list[Any], Fake]) -> None:
    url, items, fake = sandbox
    requests.post(f"{url}/items", json={"a": 1}, timeout=5)
    assert items
    r = requests.post(f"{url}/_sandbox/reset", timeout=5)
    assert r.json() == {"reset": True, "state": True}
    assert items == [] and fake.resets == 1
    routes = requests.get(f"{url}/_sandbox/counters", timeout=5).json()["routes"]
    assert routes == {"sandbox.reset": {"total": 1, "by_status": {"200": 1}}}  # recorded after clearing


def test_live_delegates(sandbox: tuple[str, list[Any], Fake]) -> None:
    url, _, fake = sandbox
    assert requests.post(f"{url}/_sandbox/live", json={"events": 3}, timeout=5).json() == {"events": 3}
    assert fake.live_calls == [{"events": 3}]
    r = requests.post(f"{url}/_sandbox/live", json={"events": "many"}, timeout=5)
    assert r.status_code == 400 and r.json()["error"] == "events must be an integer"


def test_missing_hooks_answer_404() -> None:
    app, _ = make_app()
    mount_control(app)
    with SandboxServer(app) as server:
        for method, path in (("GET", "rate-limits"), ("PUT", "rate-limits"), ("POST", "live")):
            r = requests.request(method, f"{server.url}/_sandbox/{path}", json={}, timeout=5)
            assert r.status_code == 404 and "this stand-in" in r.json()["error"]
        r = requests.post(f"{server.url}/_sandbox/reset", timeout=5)
        assert r.json() == {"reset": True, "state": False}
