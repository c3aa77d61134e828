"""Fault injection: spec parsing, seeded reproducibility, and every fault kind seen by a real client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from connectors.sandbox.control import mount_control
from connectors.sandbox.faults import (
    FaultInjector,
    FaultRule,
    FaultSpecError,
    default_rate_limited,
    format_spec,
    install,
    parse_spec,
    rules_from_json,
)
from connectors.sandbox.server import App, Request, Response, SandboxServer


def make_app(name: str = "dummy", with_429_builder: bool = True) -> tuple[App, list[Any]]:
    """A tiny stand-in: create items, list them, batch-update them (207 on ``fault='partial'``)."""
    items: list[Any] = []
    app = App(name, lambda detail: Response.json(500, {"error": "internal", "detail": detail}))
    if with_429_builder:
        app.rate_limited_response = lambda s: Response.json(  # type: ignore[attr-defined]
            429, {"error": "slow down", "retry_in": s}, headers={"Retry-After": str(int(s))}
        )

    @app.route("POST", "/items", "items.create")
    def create(req: Request) -> Response:
        items.append(req.json())
        return Response.json(201, {"n": len(items)})

    @app.route("GET", "/items", "items.list")
    def listing(req: Request) -> Response:
        return Response.json(200, {"items": items})

    @app.route("POST", "/items/batch/update", "items.batch.update")
    def batch(req: Request) -> Response:
        inputs = req.json()["inputs"]
        if req.fault == "partial":
            return Response.json(207, {"results": inputs[1:], "errors": [{"input": inputs[0]}]})
        return Response.json(200, {"results": inputs})

    return app, items


@pytest.fixture
def served() -> Iterator[tuple[str, App, list[Any], FaultInjector]]:
    app, items = make_app()
    injector = mount_control(app)
    with SandboxServer(app) as server:
        yield server.url, app, items, injector


# ---- spec parsing ------------------------------------------------------------------------------


def test_parse_the_documented_example() -> None:
    rules = parse_spec("429=0.10,5xx=0.05,reset_after=0.02,partial=0.01,slow=0.01:0.5s@contacts.batch.*")
    assert rules == [
        FaultRule("429", 0.10),
        FaultRule("5xx", 0.05),
        FaultRule("reset_after", 0.02),
        FaultRule("partial", 0.01),
        FaultRule("slow", 0.01, "contacts.batch.*", 0.5),
    ]
    assert parse_spec(format_spec(rules)) == rules


@pytest.mark.parametrize(
    ("spec", "rule"),
    [
        ("reset_before=0.5", FaultRule("reset", 0.5)),
        ("slow=1:250ms", FaultRule("slow", 1.0, param=0.25)),
        ("429=1:3#2@lists.*", FaultRule("429", 1.0, "lists.*", 3.0, 2)),
        ("503=0.2", FaultRule("503", 0.2)),
    ],
)
def test_parse_variants(spec: str, rule: FaultRule) -> None:
    assert parse_spec(spec) == [rule]


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("boom=0.1", "unknown kind 'boom'"),
        ("429=1.5", "between 0 and 1"),
        ("429", "expected KIND=PROBABILITY"),
        ("reset=0.1:2s", "only 429 and slow take"),
        ("429=0.1@", "expected KIND=PROBABILITY"),
    ],
)
def test_bad_specs_name_the_reason(spec: str, reason: str) -> None:
    with pytest.raises(FaultSpecError, match=reason):
        parse_spec(spec)


def test_rules_from_json_objects() -> None:
    rules = rules_from_json([{"kind": "slow", "probability": 1, "param": 0.2, "routes": "a.*", "limit": 1}])
    assert rules == [FaultRule("slow", 1.0, "a.*", 0.2, 1)]
    with pytest.raises(FaultSpecError, match="unknown field"):
        rules_from_json([{"kind": "429", "probability": 1, "color": "red"}])


# ---- reproducibility ---------------------------------------------------------------------------


def _sequence(injector: FaultInjector, route: str, n: int) -> list[str | None]:
    return [(r.kind if (r := injector.choose(route)) else None) for _ in range(n)]


def test_same_seed_same_faults_per_route_whatever_else_happens() -> None:
    spec = "429=0.2,5xx=0.1,reset_after=0.1,slow=0.05@items.*"
    a = FaultInjector(make_app()[0], parse_spec(spec), seed=11)
    b = FaultInjector(make_app()[0], parse_spec(spec), seed=11)
    seq_a = _sequence(a, "items.create", 300)
    seq_b = []
    for _ in range(300):  # other routes interleaved on b
        seq_b += _sequence(b, "items.create", 1)
        _sequence(b, "items.list", 2)
        _sequence(b, "lists.get", 1)
    assert seq_a == seq_b
    assert {"429", "5xx", "reset_after", "slow", None} == set(seq_a)
    c = FaultInjector(make_app()[0], parse_spec(spec), seed=12)
    assert _sequence(c, "items.create", 300) != seq_a
    a.configure(parse_spec(spec))  # restarting the streams replays the sequence
    assert _sequence(a, "items.create", 300) == seq_a


def test_probabilities_and_globs() -> None:
    inj = FaultInjector(make_app()[0], parse_spec("429=0.3@items.*,slow=1@other"), seed=1)
    hits = _sequence(inj, "items.create", 4000)
    assert 0.27 < hits.count("429") / 4000 < 0.33
    assert _sequence(inj, "lists.get", 50) == [None] * 50
    assert _sequence(inj, "other", 3) == ["slow"] * 3
    assert inj.injected[("items.create", "429")] == hits.count("429")


def test_limit_stops_a_rule() -> None:
    inj = FaultInjector(make_app()[0], parse_spec("reset_after=1#2"), seed=0)
    assert _sequence(inj, "items.create", 5) == ["reset_after", "reset_after", None, None, None]


# ---- each kind through a real client ------------------------------------------------------------


def test_reset_before_does_not_apply_the_write(served: tuple[str, App, list[Any], FaultInjector]) -> None:
    url, _, items, injector = served
    injector.configure(parse_spec("reset=1#1@items.create"))
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{url}/items", json={"a": 1}, timeout=5)
    assert items == []
    assert requests.post(f"{url}/items", json={"a": 2}, timeout=5).status_code == 201
    assert items == [{"a": 2}]


def test_reset_after_applies_the_write_but_loses_the_answer(
    served: tuple[str, App, list[Any], FaultInjector],
) -> None:
    url, _, items, injector = served
    injector.configure(parse_spec("reset_after=1#1@items.create"))
    with requests.Session() as s, pytest.raises(requests.ConnectionError):
        s.post(f"{url}/items", json={"a": 1}, timeout=5)
    assert items == [{"a": 1}]
    log = requests.get(f"{url}/_sandbox/log", params={"route": "items.create"}, timeout=5).json()["entries"]
    assert [e["status"] for e in log] == [0]


def test_429_uses_the_apps_own_shape(served: tuple[str, App, list[Any], FaultInjector]) -> None:
    url, _, items, injector = served
    injector.configure(parse_spec("429=1:3@items.*"))
    r = requests.post(f"{url}/items", json={"a": 1}, timeout=5)
    assert (r.status_code, r.headers["Retry-After"]) == (429, "3")
    assert r.json() == {"error": "slow down", "retry_in": 3.0}
    assert items == []


@pytest.mark.parametrize("name", ["hubspot", "klaviyo"])
def test_default_429_is_the_providers_shape(name: str) -> None:
    r = default_rate_limited(name, 2)
    assert r.status == 429 and r.headers["Retry-After"] == "2"
    import json

    body = json.loads(r.body)
    if name == "hubspot":
        assert body["category"] == "RATE_LIMITS" and body["policyName"] == "TEN_SECONDLY_ROLLING"
        assert body["status"] == "error" and body["correlationId"]
    else:
        assert body["errors"][0]["status"] == 429 and body["errors"][0]["code"] == "throttled"


def test_5xx_in_the_apps_error_shape(served: tuple[str, App, list[Any], FaultInjector]) -> None:
    url, _, _, injector = served
    injector.configure(parse_spec("5xx=1@items.list"), seed=3)
    statuses = {requests.get(f"{url}/items", timeout=5).status_code for _ in range(30)}
    assert statuses == {500, 502, 503, 504}
    r = requests.get(f"{url}/items", timeout=5)
    assert r.json()["error"] == "internal"


def test_slow_delays_the_answer(served: tuple[str, App, list[Any], FaultInjector]) -> None:
    url, _, _, injector = served
    injector.configure(parse_spec("slow=1:300ms@items.list"))
    started = time.perf_counter()
    assert requests.get(f"{url}/items", timeout=5).status_code == 200
    assert time.perf_counter() - started >= 0.3


def test_partial_reaches_the_handler(served: tuple[str, App, list[Any], FaultInjector]) -> None:
    url, _, _, injector = served
    body = {"inputs": [{"id": 1}, {"id": 2}]}
    assert requests.post(f"{url}/items/batch/update", json=body, timeout=5).status_code == 200
    injector.configure(parse_spec("partial=1@items.batch.*"))
    r = requests.post(f"{url}/items/batch/update", json=body, timeout=5)
    assert r.status_code == 207 and r.json()["errors"] == [{"input": {"id": 1}}]


def test_control_routes_are_never_faulted(served: tuple[str, App, list[Any], FaultInjector]) -> None:
    url, _, _, injector = served
    injector.configure(parse_spec("429=1"))
    assert requests.get(f"{url}/items", timeout=5).status_code == 429
    assert requests.get(f"{url}/_sandbox/faults", timeout=5).status_code == 200


def test_install_puts_the_guard_first() -> None:
    app, _ = make_app()
    app.guards.append(lambda req, route: None)
    injector = install(app, "429=1", seed=4)
    assert app.guards[0] is injector and injector.seed == 4
