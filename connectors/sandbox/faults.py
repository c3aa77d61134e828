"""Seeded, reproducible fault injection for the sandbox stand-ins (an :class:`App` guard).

A fault *spec* is a comma-separated list of rules ``KIND=PROBABILITY[:PARAM][#LIMIT][@ROUTES]``:

=============  ===================================================================================
``429``        the provider's own rate-limit answer (``App.rate_limited_response`` when the app
               has one, else the provider shape known here), ``Retry-After: PARAM`` seconds
               (default 1)
``5xx``        a 500, 502, 503 or 504 in the provider's error shape (``500`` .. ``504`` pick one)
``reset``      connection reset *before* the handler: the request is **not** applied
``reset_after`` the handler runs (the write **is** applied), then the connection is reset: the
               response is lost — the ambiguous case retries must survive
``slow``       the response is delayed by PARAM (``0.5s``, ``250ms``; default 1 s)
``partial``    ``request.fault = "partial"``: batch handlers answer 207 with some inputs failed
=============  ===================================================================================

``#LIMIT`` stops the rule after that many hits (``reset_after=1#1@contacts.batch.update`` = the
next batch update only). ``@ROUTES`` is a glob over ``Route.name`` (``contacts.*``; default ``*``).
Example: ``429=0.10,5xx=0.05,reset_after=0.02,partial=0.01,slow=0.01:0.5s@contacts.batch.*``
(the ``@`` belongs to the rule it ends; every other rule there applies to all routes).

Reproducibility: each route name has its own random stream seeded by ``(seed, route name)``; every
request on that route draws one number and the matching rules, in spec order, claim consecutive
slices of ``[0, 1)`` (so at most one fault per request). The same seed and spec give the same
sequence of faults on each route, whatever the traffic on other routes. Control routes
(``auth=False``, e.g. ``/_sandbox/``) never get faults.
"""

from __future__ import annotations

import fnmatch
import random
import re
import threading
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from connectors.sandbox.server import App, Request, Response, Route

KINDS = ("429", "5xx", "500", "502", "503", "504", "reset", "reset_after", "slow", "partial")
_ALIASES = {"reset_before": "reset", "delay": "slow", "rate_limit": "429", "207": "partial"}
_RULE_RE = re.compile(
    r"^(?P<kind>[a-z0-9_]+)=(?P<p>[0-9.]+)(?::(?P<param>[0-9.]+(?:ms|s)?))?"
    r"(?:#(?P<limit>\d+))?(?:@(?P<glob>[A-Za-z0-9_.*?\[\]-]+))?$"
)


class FaultSpecError(ValueError):
    """A fault spec that cannot be parsed; the message names the rule and the reason."""


@dataclass(frozen=True)
class FaultRule:
    kind: str  # one of KINDS
    probability: float
    routes: str = "*"  # glob over Route.name
    param: float | None = None  # seconds: Retry-After for 429, delay for slow
    limit: int | None = None  # stop after this many hits

    def to_spec(self) -> str:
        out = f"{self.kind}={self.probability:g}"
        if self.param is not None:
            out += f":{self.param:g}s"
        if self.limit is not None:
            out += f"#{self.limit}"
        if self.routes != "*":
            out += f"@{self.routes}"
        return out

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "probability": self.probability, "routes": self.routes,
                "param": self.param, "limit": self.limit}  # fmt: skip


def parse_spec(spec: str) -> list[FaultRule]:
    """Parse ``"429=0.1,reset_after=0.02@contacts.*"``; raises :class:`FaultSpecError`."""
    rules = []
    for raw in (part.strip() for part in spec.split(",")):
        if not raw:
            continue
        m = _RULE_RE.match(raw)
        if not m:
            raise FaultSpecError(
                f"fault rule {raw!r}: expected KIND=PROBABILITY[:PARAM][#LIMIT][@ROUTES], "
                f"e.g. 429=0.1 or slow=0.05:0.5s@contacts.*"
            )
        kind = _ALIASES.get(m["kind"], m["kind"])
        if kind not in KINDS:
            known = ", ".join(KINDS)
            raise FaultSpecError(f"fault rule {raw!r}: unknown kind {m['kind']!r} (known: {known})")
        try:
            p = float(m["p"])
        except ValueError:
            raise FaultSpecError(f"fault rule {raw!r}: {m['p']!r} is not a probability") from None
        if not 0.0 <= p <= 1.0:
            raise FaultSpecError(f"fault rule {raw!r}: probability must be between 0 and 1")
        param = _seconds(m["param"]) if m["param"] else None
        if param is not None and kind not in ("429", "slow"):
            raise FaultSpecError(f"fault rule {raw!r}: only 429 and slow take a :PARAM")
        limit = int(m["limit"]) if m["limit"] else None
        rules.append(FaultRule(kind, p, m["glob"] or "*", param, limit))
    return rules


def format_spec(rules: list[FaultRule]) -> str:
    return ",".join(r.to_spec() for r in rules)


def rules_from_json(items: Any) -> list[FaultRule]:
    """Rules from a JSON list of rule objects (``to_json`` shape) or a spec string."""
    if isinstance(items, str):
        return parse_spec(items)
    if not isinstance(items, list):
        raise FaultSpecError("faults must be a spec string or a list of rule objects")
    rules = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "kind" not in item or "probability" not in item:
            raise FaultSpecError(f"faults[{i}]: an object with 'kind' and 'probability' is required")
        unknown = set(item) - {"kind", "probability", "routes", "param", "limit"}
        if unknown:
            raise FaultSpecError(f"faults[{i}]: unknown field(s) {', '.join(sorted(unknown))}")
        rule = parse_spec(f"{item['kind']}={item['probability']}")[0]
        try:
            rule = replace(
                rule, routes=str(item.get("routes") or "*"),
                param=None if item.get("param") is None else float(item["param"]),
                limit=None if item.get("limit") is None else int(item["limit"]),
            )  # fmt: skip
        except (TypeError, ValueError):
            raise FaultSpecError(f"faults[{i}]: param must be a number, limit an integer") from None
        rules.append(rule)
    return rules


def _seconds(text: str) -> float:
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    return float(text.rstrip("s"))


RateLimitedBuilder = Callable[[float], Response]


@dataclass
class FaultInjector:
    """The guard. Install with :func:`install`; change rules at runtime with :meth:`configure`."""

    app: App
    rules: list[FaultRule] = field(default_factory=list)
    seed: int = 0
    injected: Counter[tuple[str, str]] = field(default_factory=Counter)  # (route, kind) -> hits
    _streams: dict[str, random.Random] = field(default_factory=dict)
    _hits: Counter[int] = field(default_factory=Counter)  # rule position -> hits (for #LIMIT)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def configure(self, rules: list[FaultRule], seed: int | None = None) -> None:
        """Replace the rules and restart every route's random stream (same seed -> same faults)."""
        with self._lock:
            self.rules = list(rules)
            if seed is not None:
                self.seed = seed
            self._streams.clear()
            self._hits.clear()
            self.injected.clear()

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "seed": self.seed, "spec": format_spec(self.rules),
                "rules": [r.to_json() for r in self.rules],
                "injected": [{"route": r, "kind": k, "count": n}
                             for (r, k), n in sorted(self.injected.items())],
            }  # fmt: skip

    def choose(self, route_name: str) -> FaultRule | None:
        """Draw the next fault (or none) for one request on ``route_name``."""
        with self._lock:
            candidates = [
                (i, r) for i, r in enumerate(self.rules) if fnmatch.fnmatchcase(route_name, r.routes)
            ]
            if not candidates:
                return None
            stream = self._streams.get(route_name)
            if stream is None:
                stream = random.Random(zlib.crc32(f"{self.seed}:{route_name}".encode()))
                self._streams[route_name] = stream
            u = stream.random()
            edge = 0.0
            for i, rule in candidates:
                if rule.limit is not None and self._hits[i] >= rule.limit:
                    continue
                edge += rule.probability
                if u < edge:
                    self._hits[i] += 1
                    self.injected[(route_name, rule.kind)] += 1
                    return rule
            return None

    def __call__(self, req: Request, route: Route) -> Response | None:
        if not route.auth or not self.rules:
            return None
        rule = self.choose(route.name)
        if rule is None:
            return None
        kind = rule.kind
        if kind == "429":
            return self._rate_limited(rule.param if rule.param is not None else 1.0)
        if kind in ("5xx", "500", "502", "503", "504"):
            status = int(kind) if kind != "5xx" else (500, 502, 503, 504)[self._pick(route.name, 4)]
            resp = self.app.internal_error("injected fault")
            resp.status = status
            return resp
        if kind == "reset":
            req.after = "reset"
            return Response(0)  # never written: the server drops the connection instead
        if kind == "reset_after":
            req.after = "reset"
        elif kind == "slow":
            req.after = ("delay", rule.param if rule.param is not None else 1.0)
        elif kind == "partial":
            req.fault = "partial"
        return None

    def _pick(self, route_name: str, n: int) -> int:
        with self._lock:
            return self._streams[route_name].randrange(n)

    def _rate_limited(self, retry_after: float) -> Response:
        builder: RateLimitedBuilder | None = getattr(self.app, "rate_limited_response", None)
        if builder is not None:
            return builder(retry_after)
        return default_rate_limited(self.app.name, retry_after)


def default_rate_limited(app_name: str, retry_after: float) -> Response:
    """The provider's 429 when the app does not offer ``rate_limited_response``."""
    seconds = max(1, round(retry_after))
    headers = {"Retry-After": str(seconds)}
    if app_name == "klaviyo":
        from connectors.sandbox.klaviyo import errors as kerrors

        plural = "s" * (seconds != 1)
        detail = f"Request was throttled. Expected available in {seconds} second{plural}."
        return kerrors.error_response(429, "throttled", detail, pointer="/data/", headers=headers)
    if app_name == "hubspot":
        from connectors.sandbox.hubspot import errors as herrors

        body = herrors.error_body("You have reached your ten_secondly_rolling limit.", herrors.RATE_LIMITS)
        body.update(errorType="RATE_LIMIT", policyName="TEN_SECONDLY_ROLLING")
        return Response.json(429, body, headers=headers)
    return Response.json(429, {"error": "rate limited"}, headers=headers)


def install(app: App, rules: list[FaultRule] | str | None = None, seed: int = 0) -> FaultInjector:
    """Put a :class:`FaultInjector` first among ``app.guards`` (faults strike before the app)."""
    if isinstance(rules, str):
        rules = parse_spec(rules)
    injector = FaultInjector(app, list(rules or []), seed)
    app.guards.insert(0, injector)
    return injector


def injector_of(app: App) -> FaultInjector | None:
    return next((g for g in app.guards if isinstance(g, FaultInjector)), None)
